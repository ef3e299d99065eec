//! Signing in with an email and a password: the one path behind
//! `POST /api/v1/auth/login` and the queue dashboard's login form, so both
//! count attempts against the same throttle ([`super::throttle`]), fail the
//! same indistinguishable way and start the same kind of session.

use std::net::IpAddr;

use sea_orm::DbErr;
use secrecy::SecretString;
use uuid::Uuid;

use super::{
    password::{PasswordError, PasswordHasher},
    sessions::{self, NewSession},
    throttle::{Account, SignInThrottle},
    tokens::{self, TokenError, TokenKeys},
};
use crate::{
    db::Database,
    jobs::{self, NewJob},
    notifications::{
        deliver::Deliver,
        event::{NotificationEvent, SignIn},
    },
    rate_limit::RetryAfter,
    state::Services,
    users::{email::Email, language::Language, queries as users, role::Role},
};

/// What signing in touches, borrowed from the process's services.
#[derive(Clone, Copy)]
pub struct SignInServices<'a> {
    pub db: &'a Database,
    pub throttle: &'a SignInThrottle,
    pub passwords: &'a PasswordHasher,
    pub tokens: &'a TokenKeys,
}

impl<'a> From<&'a Services> for SignInServices<'a> {
    fn from(services: &'a Services) -> Self {
        Self {
            db: &services.db,
            throttle: &services.sign_in_throttle,
            passwords: &services.passwords,
            tokens: &services.tokens,
        }
    }
}

/// Who the new session is for. It decides who may start one, how long it
/// lives and whether the user is told about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// An API client: any live user. The client gets the refresh token, so
    /// the session lives as long as it does, and the user is notified
    /// (`auth.login`) so that a sign-in they did not make stands out.
    Api,
    /// The queue dashboard: admins only. The refresh token is never handed
    /// out (the dashboard keeps only the access token, in a cookie), so the
    /// session ends when the access token expires.
    Dashboard,
}

/// One attempt, as the client sent it.
pub struct Attempt<'a> {
    /// As typed; parsed here.
    pub email: &'a str,
    pub password: SecretString,
    pub ip: Option<IpAddr>,
    /// The `User-Agent` header, if any; the first 256 characters are kept.
    pub user_agent: Option<&'a str>,
}

/// A started session.
#[derive(Debug)]
pub struct SignedIn {
    pub user_id: Uuid,
    pub language: Language,
    pub session_id: Uuid,
    pub access_token: String,
    pub refresh_token: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// Too many attempts from this address or for this account.
    #[error("too many sign-in attempts")]
    RateLimited(RetryAfter),
    /// Unknown email or wrong password; the two are indistinguishable on purpose.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The password was right but the audience does not admit this role.
    #[error("user {0} may not sign in here")]
    NotAllowed(Uuid),
    #[error(transparent)]
    Database(#[from] DbErr),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Token(#[from] TokenError),
}

/// Checks `attempt` and, if it holds, starts a session for `audience`.
///
/// The throttle counts the attempt first (whether or not the account
/// exists) and may delay it; the password is always checked, against a decoy
/// for an unknown email, so a miss takes as long as a wrong password.
pub async fn sign_in(
    services: SignInServices<'_>,
    attempt: Attempt<'_>,
    audience: Audience,
) -> Result<SignedIn, SignInError> {
    // Spaces around a typed address are forgiven at sign-in. Attempts count
    // against the text as an address would be stored (trimmed, lower-cased),
    // whether or not it is one.
    let typed = attempt.email.trim();
    let pending = services
        .throttle
        .begin(Account::Email(typed), attempt.ip)
        .await
        .map_err(SignInError::RateLimited)?;

    // Text that is no address names no account: it gets the unknown
    // account's answer, decoy password check included.
    let checked = async {
        let user = match Email::parse(typed) {
            Ok(email) => users::find_live_by_email(services.db.conn(), &email).await?,
            Err(_) => None,
        };
        let stored_hash = user.as_ref().map(|u| u.password_hash.clone());
        let matches = services
            .passwords
            .verify(&attempt.password, stored_hash)
            .await?;
        Ok::<_, SignInError>(user.filter(|_| matches))
    };
    let user = match checked.await {
        Ok(Some(user)) => {
            pending.succeeded().await;
            user
        }
        Ok(None) => {
            pending.failed().await;
            return Err(SignInError::InvalidCredentials);
        }
        Err(e) => {
            pending.unchecked().await;
            return Err(e);
        }
    };
    if audience == Audience::Dashboard && !Role::is_admin(user.role) {
        return Err(SignInError::NotAllowed(user.id));
    }

    let session_id = crate::db::new_id();
    let refresh_token = services.tokens.issue_refresh(user.id, session_id, 0)?;
    let access_token =
        services
            .tokens
            .issue_access(user.id, user.role, user.language, session_id)?;
    let user_agent: Option<String> = attempt.user_agent.map(|v| v.chars().take(256).collect());
    let ip = attempt.ip.map(|ip| ip.to_string());
    let expires_at = crate::db::now()
        + match audience {
            Audience::Api => crate::duration::to_delta(services.tokens.refresh_ttl),
            Audience::Dashboard => crate::duration::to_delta(services.tokens.access_ttl),
        };

    let txn = services.db.begin_write().await?;
    sessions::insert(
        &*txn,
        NewSession {
            id: session_id,
            user_id: user.id,
            // Only the fingerprint is stored: the token itself is the client's.
            refresh_token_hash: tokens::fingerprint(&refresh_token),
            user_agent: user_agent.clone(),
            ip: ip.clone(),
            expires_at,
        },
    )
    .await?;
    if audience == Audience::Api {
        let login = Deliver {
            user_id: user.id,
            event: NotificationEvent::SignedIn(SignIn {
                session_id,
                ip,
                user_agent,
            }),
        };
        jobs::enqueue(&txn, NewJob::of(&login)).await?;
    }
    txn.commit().await?;

    Ok(SignedIn {
        user_id: user.id,
        language: user.language,
        session_id,
        access_token,
        refresh_token,
    })
}
