//! Authentication: sign-in, token refresh with rotation and reuse detection,
//! sign-out, and the [`extract::AuthUser`] extractor every protected route uses.

pub mod extract;
pub mod password;
pub mod routes;
pub mod session;
pub mod sessions;
pub mod sign_in;
pub mod throttle;
pub mod tokens;

use axum::http::{HeaderValue, StatusCode, header};

pub use self::sign_in::{Attempt, Audience, SignInError, SignInServices, SignedIn, sign_in};

use crate::http::error::ApiError;

/// What can go wrong while authenticating.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Unknown email or wrong password; the two are indistinguishable on purpose.
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("invalid or expired token")]
    InvalidToken,
    /// An already-rotated refresh token came back: the session family is revoked.
    #[error("refresh token reused")]
    RefreshTokenReused,
    #[error("session revoked")]
    SessionRevoked,
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        let code = match err {
            AuthError::InvalidCredentials => "invalid_credentials",
            AuthError::InvalidToken => "invalid_token",
            AuthError::RefreshTokenReused => "refresh_token_reused",
            AuthError::SessionRevoked => "session_revoked",
        };
        ApiError::new(StatusCode::UNAUTHORIZED, code)
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    }
}
