//! `/api/v1/auth/*`: login, refresh, logout, logout-all.

use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::{
    Attempt, Audience, AuthError, SignInError, SignInServices, extract::AuthUser, sessions,
    sign_in, tokens,
};
use crate::{
    http::{
        error::{ApiError, Problem},
        extract::{ClientIp, ValidJson, parse_json},
    },
    state::AppState,
    users::{language::Language, queries as users},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(logout_all))
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LoginRequest {
    #[validate(length(min = 1, max = 254, code = "length"))]
    #[schema(min_length = 1, max_length = 254)]
    #[schema(example = "shopper@example.com")]
    pub email: String,
    #[validate(length(min = 1, max = 128, code = "length"))]
    #[schema(min_length = 1, max_length = 128)]
    #[schema(format = Password)]
    pub password: String,
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefreshRequest {
    #[validate(length(min = 1, max = 2048, code = "length"))]
    #[schema(min_length = 1, max_length = 2048)]
    pub refresh_token: String,
}

/// A signed-in session's tokens.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenPair {
    pub access_token: String,
    pub refresh_token: String,
    pub user_id: Uuid,
    pub language: Language,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

/// Signs in and starts a new session (one per device).
#[utoipa::path(
    post, path = "/api/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown email or wrong password (indistinguishable)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid values", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts from this address, or for this account from this address; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many password checks at once (`server_busy`); see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn login(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    headers: HeaderMap,
    ValidJson { value: body, .. }: ValidJson<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let attempt = Attempt {
        email: &body.email,
        password: SecretString::from(body.password),
        ip,
        user_agent: headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    };
    let signed_in = sign_in(SignInServices::from(&*state), attempt, Audience::Api)
        .await
        .map_err(|e| match e {
            SignInError::RateLimited(retry) => ApiError::from(retry),
            SignInError::InvalidCredentials | SignInError::NotAllowed(_) => {
                AuthError::InvalidCredentials.into()
            }
            SignInError::Database(e) => ApiError::internal(&e),
            SignInError::Password(e) => e.into(),
            SignInError::Token(e) => ApiError::internal(&e),
        })?;
    tracing::info!(user.id = %signed_in.user_id, session.id = %signed_in.session_id, "signed in");

    Ok(Json(TokenPair {
        access_token: signed_in.access_token,
        refresh_token: signed_in.refresh_token,
        user_id: signed_in.user_id,
        language: signed_in.language,
        expires_in: state.tokens.access_ttl.as_secs(),
    }))
}

fn refresh_expiry(state: &AppState) -> chrono::DateTime<chrono::Utc> {
    crate::db::now() + crate::duration::to_delta(state.tokens.refresh_ttl)
}

/// Exchanges a refresh token for a new pair. The old refresh token stops
/// working; presenting it again revokes the whole session.
#[utoipa::path(
    post, path = "/api/v1/auth/refresh", tag = "auth",
    request_body(content = Option<RefreshRequest>, description = "The refresh token, here or as a Bearer token"),
    responses(
        (status = 200, description = "New token pair", body = TokenPair),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Invalid, expired, revoked or reused refresh token", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn refresh(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<TokenPair>, ApiError> {
    // No body, or a JSON `null` (the document's `oneOf [RefreshRequest,
    // null]`), means the token comes as a Bearer token.
    let in_body = if body.iter().all(u8::is_ascii_whitespace) || body.trim_ascii() == b"null" {
        None
    } else {
        Some(parse_json::<RefreshRequest>(&body)?.0)
    };
    let presented = match in_body {
        Some(request) => request.refresh_token,
        None => headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
            .ok_or(AuthError::InvalidToken)?,
    };
    let claims = state
        .tokens
        .verify_refresh(&presented)
        .map_err(|_| AuthError::InvalidToken)?;

    let next_generation = claims.generation + 1;
    let new_refresh = state
        .tokens
        .issue_refresh(claims.sub, claims.sid, next_generation)
        .map_err(|e| ApiError::internal(&e))?;

    let txn = state.db.begin_write().await?;
    let session = sessions::find(&*txn, claims.sid)
        .await?
        .filter(|s| s.user_id == claims.sub)
        .ok_or(AuthError::InvalidToken)?;
    if session.revoked_at.is_some() {
        return Err(AuthError::SessionRevoked.into());
    }
    let is_current = session.refresh_generation == claims.generation
        && session.refresh_token_hash == tokens::fingerprint(&presented);
    let rotated = is_current
        && sessions::rotate(
            &*txn,
            claims.sid,
            claims.generation,
            tokens::fingerprint(&new_refresh),
            refresh_expiry(&state),
        )
        .await?;
    if !rotated {
        // A signed token of an earlier generation (or one that lost a race
        // with another refresh) has been used before: assume it was stolen.
        sessions::revoke(&*txn, claims.sid).await?;
        txn.commit().await?;
        state.sessions.invalidate_user(claims.sub).await;
        tracing::warn!(user.id = %claims.sub, session.id = %claims.sid, "refresh token reuse; session revoked");
        return Err(AuthError::RefreshTokenReused.into());
    }
    let user = users::find_live(&*txn, claims.sub)
        .await?
        .ok_or(AuthError::SessionRevoked)?;
    txn.commit().await?;

    let access_token = state
        .tokens
        .issue_access(user.id, user.role, user.language, claims.sid)
        .map_err(|e| ApiError::internal(&e))?;
    Ok(Json(TokenPair {
        access_token,
        refresh_token: new_refresh,
        user_id: user.id,
        language: user.language,
        expires_in: state.tokens.access_ttl.as_secs(),
    }))
}

/// Ends the caller's session: its access and refresh tokens stop working at once.
#[utoipa::path(
    post, path = "/api/v1/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Signed out"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn logout(State(state): State<AppState>, user: AuthUser) -> Result<StatusCode, ApiError> {
    let txn = state.db.begin_write().await?;
    sessions::revoke(&*txn, user.session_id).await?;
    txn.commit().await?;
    state.sessions.invalidate_user(user.id).await;
    Ok(StatusCode::NO_CONTENT)
}

/// Ends every session of the caller, on every device.
#[utoipa::path(
    post, path = "/api/v1/auth/logout-all", tag = "auth",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Every session ended"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn logout_all(State(state): State<AppState>, user: AuthUser) -> Result<StatusCode, ApiError> {
    let txn = state.db.begin_write().await?;
    sessions::revoke_all_of_user(&*txn, user.id, None).await?;
    txn.commit().await?;
    state.sessions.invalidate_user(user.id).await;
    Ok(StatusCode::NO_CONTENT)
}
