//! Password hashing with argon2id, off the async runtime.

use argon2::{
    Algorithm, Argon2, Params, Version,
    password_hash::{PasswordHasher as _, PasswordVerifier as _, phc::PasswordHash},
};
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    #[error("password hashing failed: {0}")]
    Hashing(String),
    #[error("password hashing task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// Hashes and verifies passwords. Hashing costs tens of milliseconds of CPU
/// by design, so it runs on the blocking pool.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
    /// A hash of a random password, verified when the email is unknown so an
    /// unknown account takes as long to refuse as a wrong password.
    decoy: std::sync::Arc<tokio::sync::OnceCell<String>>,
}

impl PasswordHasher {
    pub fn new(memory_kib: u32) -> Result<Self, PasswordError> {
        let params = Params::new(memory_kib, 2, 1, None)
            .map_err(|e| PasswordError::Hashing(e.to_string()))?;
        Ok(Self {
            params,
            decoy: std::sync::Arc::default(),
        })
    }

    fn argon2(params: Params) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }

    pub async fn hash(&self, password: &SecretString) -> Result<String, PasswordError> {
        let params = self.params.clone();
        let password = password.clone();
        tokio::task::spawn_blocking(move || {
            Self::argon2(params)
                .hash_password(password.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| PasswordError::Hashing(e.to_string()))
        })
        .await?
    }

    /// Whether `password` matches `stored`. With no stored hash (unknown
    /// account) it checks a decoy and answers false, taking the same time.
    pub async fn verify(
        &self,
        password: &SecretString,
        stored: Option<String>,
    ) -> Result<bool, PasswordError> {
        let (stored, known) = match stored {
            Some(hash) => (hash, true),
            None => (self.decoy_hash().await?, false),
        };
        let params = self.params.clone();
        let password = password.clone();
        let matches = tokio::task::spawn_blocking(move || {
            PasswordHash::new(&stored).is_ok_and(|parsed| {
                Self::argon2(params)
                    .verify_password(password.expose_secret().as_bytes(), &parsed)
                    .is_ok()
            })
        })
        .await?;
        Ok(known && matches)
    }

    async fn decoy_hash(&self) -> Result<String, PasswordError> {
        self.decoy
            .get_or_try_init(|| async {
                let random = SecretString::from(crate::db::new_id().to_string());
                self.hash(&random).await
            })
            .await
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_only_its_own_password() {
        let hasher = PasswordHasher::new(64).unwrap();
        let hash = hasher
            .hash(&SecretString::from("correct horse"))
            .await
            .unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(
            hasher
                .verify(&SecretString::from("correct horse"), Some(hash.clone()))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&SecretString::from("wrong horse"), Some(hash))
                .await
                .unwrap()
        );
        assert!(
            !hasher
                .verify(&SecretString::from("correct horse"), None)
                .await
                .unwrap()
        );
    }
}
