//! `AuthUser`: the authenticated caller, checked on every request.

use axum::{
    extract::{FromRequestParts, OptionalFromRequestParts},
    http::{HeaderValue, StatusCode, header, request::Parts},
};
use uuid::Uuid;

use crate::{
    http::error::ApiError,
    state::AppState,
    users::{language::Language, role::Role},
};

/// The caller, from a valid access token whose session is live. Role and
/// language are the account's current ones (not the token's), so a role
/// change applies at once.
#[derive(Debug, Clone, Copy)]
pub struct AuthUser {
    pub id: Uuid,
    pub role: Role,
    pub language: Language,
    pub session_id: Uuid,
}

impl AuthUser {
    /// 403 unless the caller's role passes `allowed`.
    pub fn require(&self, allowed: impl FnOnce(Role) -> bool) -> Result<(), ApiError> {
        if allowed(self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }

    /// 403 unless the caller is an admin or superadmin: the guard of the
    /// operator surfaces (job queue API), which need no other role rule.
    pub fn require_admin(&self) -> Result<(), ApiError> {
        self.require(Role::is_admin)
    }
}

fn unauthorized(code: &'static str) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, code)
        .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
}

/// The 401 of a request without credentials.
pub fn missing_token() -> ApiError {
    unauthorized("unauthorized")
}

/// The bearer token of a request, if it has one.
pub fn bearer_token(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
}

/// Checks an access token and its session (also used by the notification
/// stream, which checks again while it lasts).
pub async fn authenticate(token: &str, state: &AppState) -> Result<AuthUser, ApiError> {
    let claims = state
        .tokens
        .verify_access(token)
        .map_err(|_| unauthorized("invalid_token"))?;
    let session = state
        .sessions
        .current(&state.db, claims.sub, claims.sid)
        .await?
        .filter(|s| s.live && s.user_id == claims.sub)
        .ok_or_else(|| unauthorized("session_revoked"))?;
    tracing::Span::current().record("user.id", tracing::field::display(claims.sub));
    Ok(AuthUser {
        id: claims.sub,
        role: session.role,
        language: session.language,
        session_id: claims.sid,
    })
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts).ok_or_else(missing_token)?;
        authenticate(token, state).await
    }
}

/// An optional caller: no `Authorization` header is anonymous, but a bad
/// token is still refused rather than silently ignored.
impl OptionalFromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, Self::Rejection> {
        match bearer_token(parts) {
            Some(token) => authenticate(token, state).await.map(Some),
            None => Ok(None),
        }
    }
}
