//! Error policy: every error that leaves the service is an RFC 9457
//! `application/problem+json` document with a stable machine `code`.
//!
//! Domain modules return their own `thiserror` enums; each has one
//! `From<…> for ApiError` that picks the status and code, so the mapping lives
//! in one place per domain and nowhere else. An [`ApiError`] does not render
//! itself: it travels as a response extension to the `render_problems`
//! middleware, which knows the request's language and correlation id and
//! writes the localised body. Framework rejections (unknown route, wrong
//! method, body too large, timeout) pass through the same middleware, so no
//! error ever leaves in another shape.
//!
//! Internal errors say only "internal error" and the correlation id; their
//! cause is logged once, here, with its source chain.

use std::{borrow::Cow, collections::BTreeMap, sync::Arc};

use axum::{
    http::{HeaderName, HeaderValue, StatusCode},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use crate::i18n::Lang;

/// One problem with one input field: a message code and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldIssue {
    pub code: Cow<'static, str>,
    pub params: Vec<(String, String)>,
}

impl FieldIssue {
    pub fn new(code: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code: code.into(),
            params: Vec::new(),
        }
    }

    pub fn with(mut self, name: &str, value: impl std::fmt::Display) -> Self {
        self.params.push((name.to_owned(), value.to_string()));
        self
    }
}

/// Field path (`items[0].quantity`) → its problems.
pub type FieldIssues = BTreeMap<String, Vec<FieldIssue>>;

/// An error on its way to the client.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    /// Stable snake_case code; also the key of its localised texts.
    pub code: &'static str,
    pub params: Vec<(&'static str, String)>,
    pub fields: FieldIssues,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

/// `wait` as a `Retry-After` value: whole seconds rounded up (a client that
/// waits that long finds the reason gone), at least 1.
pub fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str) -> Self {
        Self {
            status,
            code,
            params: Vec::new(),
            fields: FieldIssues::new(),
            headers: Vec::new(),
        }
    }

    /// Adds a parameter of the localised detail (`%{name}` in the text).
    pub fn with(mut self, name: &'static str, value: impl std::fmt::Display) -> Self {
        self.params.push((name, value.to_string()));
        self
    }

    /// Replaces the machine code (and so the localised texts).
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.push((name, value));
        self
    }

    /// Tells the client to come back after `wait`: `Retry-After` in whole
    /// seconds, rounded up (a client that waits that long finds the reason
    /// gone) and at least 1, also given to the localised detail as
    /// `%{seconds}`.
    pub fn with_retry_after(self, wait: std::time::Duration) -> Self {
        let seconds = retry_after_seconds(wait);
        self.with("seconds", seconds)
            .with_header(axum::http::header::RETRY_AFTER, HeaderValue::from(seconds))
    }

    pub fn with_field(mut self, field: impl Into<String>, issue: FieldIssue) -> Self {
        self.fields.entry(field.into()).or_default().push(issue);
        self
    }

    /// 400: the request could not be read (malformed JSON, unknown field, wrong type).
    pub fn bad_request(field: impl Into<String>, issue: FieldIssue) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request").with_field(field, issue)
    }

    /// 422: the request was read but its values break the rules.
    pub fn validation(fields: FieldIssues) -> Self {
        let mut error = Self::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
        error.fields = fields;
        error
    }

    pub fn unauthorized() -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized")
    }

    pub fn forbidden() -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden")
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found")
    }

    /// An internal error (500). The cause is logged here, once, with its
    /// chain; the client sees only the correlation id.
    pub fn internal(cause: &(dyn std::error::Error + 'static)) -> Self {
        let mut chain = cause.to_string();
        let mut source = cause.source();
        while let Some(inner) = source {
            chain.push_str(": ");
            chain.push_str(&inner.to_string());
            source = inner.source();
        }
        tracing::error!(error.chain = %chain, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error")
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        Self::internal(&err)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        for (name, value) in &self.headers {
            response.headers_mut().insert(name.clone(), value.clone());
        }
        response.extensions_mut().insert(Arc::new(self));
        response
    }
}

/// The body of every error response (RFC 9457 plus Dispatch's fields).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Problem {
    /// URI reference naming the problem type; stable per `code`.
    #[serde(rename = "type")]
    #[schema(example = "urn:dispatch:problem:not_found")]
    pub problem_type: String,
    /// Short localised summary of the problem type.
    pub title: String,
    pub status: u16,
    /// Localised explanation of this occurrence.
    pub detail: String,
    /// The request path.
    pub instance: String,
    /// Stable snake_case machine code.
    #[schema(example = "not_found")]
    pub code: String,
    /// Field path → localised messages (validation problems only).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub errors: BTreeMap<String, Vec<String>>,
    /// Quote it when reporting a problem; it finds the request's log lines.
    pub correlation_id: String,
    /// Same as `status` (clients of the earlier API).
    pub status_code: u16,
    /// Same as `detail` (clients of the earlier API).
    pub message: String,
}

impl Problem {
    /// Renders an error in the request's language.
    pub fn render(error: &ApiError, lang: Lang, instance: &str, correlation_id: &str) -> Self {
        let params: Vec<(&str, String)> =
            error.params.iter().map(|(k, v)| (*k, v.clone())).collect();
        let detail = crate::i18n::text(lang, &format!("problems.{}.detail", error.code), &params);
        let title = crate::i18n::text(lang, &format!("problems.{}.title", error.code), &[]);
        let errors = error
            .fields
            .iter()
            .map(|(field, issues)| {
                let messages = issues
                    .iter()
                    .map(|issue| {
                        let params: Vec<(&str, String)> = issue
                            .params
                            .iter()
                            .map(|(k, v)| (k.as_str(), v.clone()))
                            .collect();
                        crate::i18n::text(lang, &format!("validation.{}", issue.code), &params)
                    })
                    .collect();
                (field.clone(), messages)
            })
            .collect();
        Self {
            problem_type: format!("urn:dispatch:problem:{}", error.code),
            title,
            status: error.status.as_u16(),
            detail: detail.clone(),
            instance: instance.to_owned(),
            code: error.code.to_owned(),
            errors,
            correlation_id: correlation_id.to_owned(),
            status_code: error.status.as_u16(),
            message: detail,
        }
    }
}

/// The error a bare framework response stands for (a 404 from the router, a
/// 413 from the body limit, a 408 from the timeout layer…).
pub fn error_for_status(status: StatusCode) -> ApiError {
    let code = match status {
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => "request_timeout",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::SERVICE_UNAVAILABLE => "service_unavailable",
        s if s.is_server_error() => "internal_error",
        _ => "invalid_request",
    };
    ApiError::new(status, code)
}
