//! Middleware every request passes through.
//!
//! `request_context` is hand-written rather than assembled from tower-http's
//! request-id and trace layers because it does four things that must agree:
//! it accepts either `X-Correlation-Id` or `X-Request-Id` (tower-http's layer
//! reads one header), opens the span every log line of the request carries,
//! writes the single per-request log line with the route and the
//! authenticated user, and records the route-level metrics from the same
//! measurement.

use std::{sync::Arc, time::Instant};

use axum::{
    body::Body,
    extract::{MatchedPath, Request},
    http::{HeaderName, HeaderValue, Method, header},
    middleware::Next,
    response::Response,
};
use tracing::{Instrument, field::Empty};

use crate::{
    http::error::{ApiError, Problem, error_for_status},
    i18n::Lang,
};

pub const CORRELATION_ID: HeaderName = HeaderName::from_static("x-correlation-id");
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The id that ties a request's log lines, its error responses and the jobs it
/// causes together.
#[derive(Debug, Clone)]
pub struct CorrelationId(pub Arc<str>);

impl CorrelationId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Takes the caller's id when it is a sane token, otherwise makes one.
fn correlation_id_of(request: &Request) -> CorrelationId {
    let supplied = [CORRELATION_ID, REQUEST_ID].iter().find_map(|name| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 128
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            })
            .map(str::to_owned)
    });
    CorrelationId(Arc::from(
        supplied.unwrap_or_else(|| crate::db::new_id().to_string()),
    ))
}

/// Correlation id, request span, one log line and metrics per request.
/// The metric label of a request method: a standard method's name, or
/// `other`. HTTP lets a client send any token as a method, and each label
/// value is a series the metrics recorder keeps for the life of the
/// process, so raw methods would let a client grow it without bound.
fn method_label(method: &Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|known| *known == method.as_str())
        .unwrap_or("other")
}

pub async fn request_context(mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let correlation_id = correlation_id_of(&request);
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    request.extensions_mut().insert(correlation_id.clone());

    let span = tracing::info_span!(
        "request",
        correlation_id = %correlation_id.as_str(),
        http.method = %method,
        http.route = %route,
        user.id = Empty,
    );
    let mut response = crate::telemetry::CORRELATION_ID
        .scope(
            Arc::clone(&correlation_id.0),
            next.run(request).instrument(span.clone()),
        )
        .await;

    let status = response.status();
    let elapsed = started.elapsed();
    span.in_scope(|| {
        tracing::info!(
            http.status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1000.0,
            "request finished"
        );
    });
    let labels = [
        ("method", method_label(&method).to_owned()),
        ("route", route),
        ("status", status.as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels[..2])
        .record(elapsed.as_secs_f64());

    if let Ok(value) = HeaderValue::from_str(correlation_id.as_str()) {
        response.headers_mut().insert(CORRELATION_ID, value);
    }
    response
}

/// Turns every error response into a localised problem+json document.
pub async fn render_problems(request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let lang = Lang::of_request(&parts);
    let instance = parts.uri.path().to_owned();
    let correlation_id = parts
        .extensions
        .get::<CorrelationId>()
        .map(|c| c.as_str().to_owned())
        .unwrap_or_default();
    let response = next.run(Request::from_parts(parts, body)).await;

    let error = match response.extensions().get::<Arc<ApiError>>() {
        Some(error) => Arc::clone(error),
        None if response.status().is_client_error() || response.status().is_server_error() => {
            // Problems pass as they are, and so do the dashboard's HTML
            // error pages, which are meant for a person in a browser.
            let keep = response
                .headers()
                .get(header::CONTENT_TYPE)
                .is_some_and(|v| {
                    v.as_bytes().starts_with(b"application/problem+json")
                        || v.as_bytes().starts_with(b"text/html")
                });
            if keep {
                return response;
            }
            Arc::new(error_for_status(response.status()))
        }
        None => return response,
    };
    let problem = Problem::render(&error, lang, &instance, &correlation_id);
    let (mut parts, _) = response.into_parts();
    let body = serde_json::to_vec(&problem).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_LANGUAGE,
        HeaderValue::from_static(lang.as_str()),
    );
    Response::from_parts(parts, Body::from(body))
}

/// Security headers on every response (preflights included: this layer sits
/// outside CORS); a strict CSP except where Swagger UI and the dashboard need
/// their own styles and scripts.
///
/// `Cache-Control: no-store` goes on every response that does not set its
/// own, except Swagger UI's static files. Tokens (sign-in, refresh,
/// registration, the dashboard's staff cookie) and PaymentIntent client
/// secrets (checkout, its idempotent replays, order views) must never land in
/// a browser's or proxy's cache, and a default cannot be forgotten by the
/// next route that returns one; nothing in the API is meant to be cached by
/// HTTP caches (the catalogue is cached on the server).
pub async fn security_headers(
    axum::extract::State(hsts): axum::extract::State<bool>,
    request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        headers
            .entry(name)
            .or_insert_with(|| HeaderValue::from_static(value));
    };
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    let csp = if path.starts_with("/api/docs") || path.starts_with("/admin/queues") {
        "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'; form-action 'self'"
    } else {
        "default-src 'none'; frame-ancestors 'none'"
    };
    set(headers, header::CONTENT_SECURITY_POLICY, csp);
    if !path.starts_with("/api/docs") {
        set(headers, header::CACHE_CONTROL, "no-store");
    }
    if hsts {
        set(
            headers,
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=63072000; includeSubDomains",
        );
    }
    response
}

/// The CORS policy: the configured origins, the methods and headers the API uses.
pub fn cors(origins: &[String]) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::ACCEPT_LANGUAGE,
            HeaderName::from_static("idempotency-key"),
            CORRELATION_ID,
            REQUEST_ID,
            HeaderName::from_static("last-event-id"),
        ])
        .expose_headers([
            CORRELATION_ID,
            HeaderName::from_static("idempotent-replayed"),
            header::RETRY_AFTER,
        ])
        .max_age(std::time::Duration::from_secs(600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_labels_of_unknown_methods_are_one_value() {
        let invented = Method::from_bytes(b"FLOOD42").map(|m| method_label(&m));
        assert_eq!(invented.ok(), Some("other"));
        assert_eq!(method_label(&Method::PATCH), "PATCH");
    }
}
