//! Access and refresh tokens.
//!
//! Both are HS256 JWTs with their own keys. The access token is short-lived
//! and carries the session id (`sid`) so every request can check the session
//! is still live. The refresh token carries the session id and a generation
//! number: each refresh moves the session to the next generation, so a token
//! of an earlier generation, still correctly signed, can only be one that was
//! already used, which is how reuse (token theft) is detected.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::users::{language::Language, role::Role};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccessClaims {
    pub sub: Uuid,
    pub role: Role,
    pub language: Language,
    pub sid: Uuid,
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RefreshClaims {
    pub sub: Uuid,
    pub sid: Uuid,
    pub generation: i64,
    pub jti: Uuid,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("token is invalid or expired")]
    Invalid,
    #[error("token could not be signed: {0}")]
    Signing(#[from] jsonwebtoken::errors::Error),
}

#[derive(Clone)]
pub struct TokenKeys {
    access_encoding: EncodingKey,
    access_decoding: DecodingKey,
    refresh_encoding: EncodingKey,
    refresh_decoding: DecodingKey,
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

impl std::fmt::Debug for TokenKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenKeys").finish_non_exhaustive()
    }
}

/// The hash stored for the session's current refresh token.
pub fn fingerprint(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl TokenKeys {
    pub fn new(
        access: &SecretString,
        refresh: &SecretString,
        access_ttl: Duration,
        refresh_ttl: Duration,
    ) -> Self {
        let access = access.expose_secret().as_bytes();
        let refresh = refresh.expose_secret().as_bytes();
        Self {
            access_encoding: EncodingKey::from_secret(access),
            access_decoding: DecodingKey::from_secret(access),
            refresh_encoding: EncodingKey::from_secret(refresh),
            refresh_decoding: DecodingKey::from_secret(refresh),
            access_ttl,
            refresh_ttl,
        }
    }

    fn validation() -> Validation {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation
    }

    pub fn issue_access(
        &self,
        user: Uuid,
        role: Role,
        language: Language,
        session: Uuid,
    ) -> Result<String, TokenError> {
        let now = crate::db::now().timestamp();
        let claims = AccessClaims {
            sub: user,
            role,
            language,
            sid: session,
            jti: crate::db::new_id(),
            iat: now,
            exp: now + seconds(self.access_ttl),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.access_encoding,
        )?)
    }

    pub fn issue_refresh(
        &self,
        user: Uuid,
        session: Uuid,
        generation: i64,
    ) -> Result<String, TokenError> {
        let now = crate::db::now().timestamp();
        let claims = RefreshClaims {
            sub: user,
            sid: session,
            generation,
            jti: crate::db::new_id(),
            iat: now,
            exp: now + seconds(self.refresh_ttl),
        };
        Ok(jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &self.refresh_encoding,
        )?)
    }

    pub fn verify_access(&self, token: &str) -> Result<AccessClaims, TokenError> {
        jsonwebtoken::decode::<AccessClaims>(token, &self.access_decoding, &Self::validation())
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)
    }

    pub fn verify_refresh(&self, token: &str) -> Result<RefreshClaims, TokenError> {
        jsonwebtoken::decode::<RefreshClaims>(token, &self.refresh_decoding, &Self::validation())
            .map(|data| data.claims)
            .map_err(|_| TokenError::Invalid)
    }
}

fn seconds(duration: Duration) -> i64 {
    i64::try_from(duration.as_secs()).unwrap_or(i64::MAX / 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(
            &SecretString::from("a".repeat(32)),
            &SecretString::from("b".repeat(32)),
            Duration::from_secs(60),
            Duration::from_secs(600),
        )
    }

    #[test]
    fn access_and_refresh_tokens_are_not_interchangeable() {
        let keys = keys();
        let (user, session) = (Uuid::now_v7(), Uuid::now_v7());
        let access = keys
            .issue_access(user, Role::User, Language::En, session)
            .unwrap();
        let refresh = keys.issue_refresh(user, session, 0).unwrap();
        assert_eq!(keys.verify_access(&access).unwrap().sid, session);
        assert_eq!(keys.verify_refresh(&refresh).unwrap().generation, 0);
        assert!(keys.verify_access(&refresh).is_err());
        assert!(keys.verify_refresh(&access).is_err());
    }

    #[test]
    fn a_tampered_token_is_refused() {
        let keys = keys();
        let token = keys
            .issue_access(Uuid::now_v7(), Role::User, Language::En, Uuid::now_v7())
            .unwrap();
        let mut tampered = token.into_bytes();
        let last = tampered.len() - 2;
        tampered[last] = if tampered[last] == b'A' { b'B' } else { b'A' };
        assert!(
            keys.verify_access(&String::from_utf8(tampered).unwrap())
                .is_err()
        );
    }
}
