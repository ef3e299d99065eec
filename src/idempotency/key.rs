//! The `Idempotency-Key` extractor.

use axum::{
    extract::{FromRequestParts, MatchedPath},
    http::{Method, request::Parts},
};
use uuid::Uuid;

use super::IDEMPOTENCY_KEY;
use crate::http::error::{ApiError, FieldIssue};

/// The `Idempotency-Key` header (required) with the method and route it came
/// with.
#[derive(Debug, Clone)]
pub struct IdempotencyKey {
    pub key: String,
    method: Method,
    route: String,
}

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get(IDEMPOTENCY_KEY).ok_or_else(|| {
            ApiError::bad_request("Idempotency-Key", FieldIssue::new("required"))
                .with_code("idempotency_key_required")
        })?;
        let key = value
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ApiError::bad_request(
                    "Idempotency-Key",
                    FieldIssue::new("invalid_idempotency_key"),
                )
            })?;
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or_else(|| parts.uri.path().to_owned(), |p| p.as_str().to_owned());
        Ok(Self {
            key: key.to_owned(),
            method: parts.method.clone(),
            route,
        })
    }
}

impl IdempotencyKey {
    pub(super) fn scope(&self, caller: Option<Uuid>) -> String {
        let caller = caller.map_or_else(|| "anonymous".to_owned(), |id| id.to_string());
        format!("{caller} {} {}", self.method, self.route)
    }
}
