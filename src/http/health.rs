//! Health probes and the Prometheus endpoint.
//!
//! Readiness is public, so it says only which dependency is `ok` or `down`;
//! why one is down (connection errors carry host names and ports) goes to the
//! log. Redis down leaves the service `degraded` but ready (200): the cache,
//! rate limits, locks and session checks all fall back to the database or
//! to the process. Only the database down makes it `down` (503).
//!
//! `/metrics` on the API listener is public network-wise, so it answers only
//! to `Authorization: Bearer <METRICS_TOKEN>` (404 when no token is
//! configured); `METRICS_ADDR` serves it without a token on a listener of its
//! own, meant for a private network. The queue gauges aggregate the job
//! table, so they are recomputed at most every [`QUEUE_GAUGES_MAX_AGE`]
//! whatever the scrape rate.

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    db::Database,
    http::error::{ApiError, Problem},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct HealthStatus {
    #[schema(example = "ok")]
    pub status: &'static str,
    pub version: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/health", tag = "operations", responses((status = 200, body = HealthStatus)))]
async fn health() -> Json<HealthStatus> {
    Json(HealthStatus {
        status: "ok",
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Liveness: the process answers (restart it if not).
#[utoipa::path(get, path = "/health/live", tag = "operations", responses((status = 200, body = HealthStatus)))]
async fn live() -> Json<HealthStatus> {
    health().await
}

/// One dependency's state, as the public may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Check {
    Ok,
    Down,
}

/// The service's state as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ReadyStatus {
    /// Every dependency answers.
    Ok,
    /// Redis does not answer; every request is still served (from the database).
    Degraded,
    /// The database does not answer.
    Down,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ok")]
    pub status: ReadyStatus,
    /// Each dependency: `ok` or `down` (`redis` only when configured).
    pub checks: BTreeMap<&'static str, Check>,
}

impl Readiness {
    /// What the answers of the database and (when configured) Redis make of the service.
    pub fn of(database: Check, redis: Option<Check>) -> Self {
        let status = match (database, redis) {
            (Check::Down, _) => ReadyStatus::Down,
            (Check::Ok, Some(Check::Down)) => ReadyStatus::Degraded,
            (Check::Ok, Some(Check::Ok) | None) => ReadyStatus::Ok,
        };
        let mut checks = BTreeMap::from([("database", database)]);
        if let Some(redis) = redis {
            checks.insert("redis", redis);
        }
        Self { status, checks }
    }

    /// The dependencies that are down, for the 503's detail.
    fn down(&self) -> String {
        let names: Vec<&str> = self
            .checks
            .iter()
            .filter(|(_, check)| **check == Check::Down)
            .map(|(name, _)| *name)
            .collect();
        names.join(", ")
    }
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: `ok`, `degraded` (Redis down, still serving) or `down` (the database).
#[utoipa::path(
    get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Serving: `ok`, or `degraded` when Redis is down", body = Readiness),
        (status = 503, description = "The database is down; `detail` names what is down (never why: that is in the logs)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn ready(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let database = probe("database", state.db.ping()).await;
    let redis = match &state.kv {
        Some(kv) => Some(probe("redis", kv.ping()).await),
        None => None,
    };
    let readiness = Readiness::of(database, redis);
    match readiness.status {
        ReadyStatus::Ok | ReadyStatus::Degraded => Ok(Json(readiness)),
        ReadyStatus::Down => Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready")
            .with("checks", readiness.down())),
    }
}

/// Runs one dependency's probe; its error, if any, is logged here and
/// nowhere else.
async fn probe<E: std::fmt::Display>(
    dependency: &'static str,
    ping: impl Future<Output = Result<(), E>>,
) -> Check {
    match tokio::time::timeout(PROBE_TIMEOUT, ping).await {
        Ok(Ok(())) => Check::Ok,
        Ok(Err(e)) => {
            tracing::warn!(dependency, error = %e, "readiness probe failed");
            Check::Down
        }
        Err(_) => {
            tracing::warn!(
                dependency,
                timeout_ms = PROBE_TIMEOUT.as_millis() as u64,
                "readiness probe got no answer"
            );
            Check::Down
        }
    }
}

/// Prometheus metrics (text exposition format), for the bearer of `METRICS_TOKEN`.
#[utoipa::path(
    get, path = "/metrics", tag = "operations",
    responses(
        (status = 200, description = "Prometheus text format", content_type = "text/plain"),
        (status = 401, description = "No or another bearer token than `METRICS_TOKEN`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`METRICS_TOKEN` is not set: metrics are only on `METRICS_ADDR`", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Result<Response, ApiError> {
    let Some(token) = &state.config.metrics_token else {
        return Err(ApiError::not_found());
    };
    if !bearer_matches(&headers, token) {
        return Err(ApiError::unauthorized()
            .with_header(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer")));
    }
    Ok(metrics_page(&state).await.into_response())
}

/// Whether the request's bearer token is `token`. Both sides are hashed
/// first, so the constant-time comparison also hides the token's length.
fn bearer_matches(headers: &HeaderMap, token: &SecretString) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    let Some(given) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let given = Sha256::digest(given.trim().as_bytes());
    let expected = Sha256::digest(token.expose_secret().as_bytes());
    given.ct_eq(&expected).into()
}

/// The metrics page with fresh pool gauges and queue gauges at most
/// [`QUEUE_GAUGES_MAX_AGE`] old: what both listeners serve.
pub async fn metrics_page(state: &AppState) -> impl IntoResponse + use<> {
    state.queue_gauges.refresh_if_stale(&state.db).await;
    render_metrics(state)
}

/// How old the queue gauges may be when scraped. Prometheus scrapes every
/// 15 s by default; several scrapers (or a scraper per replica hitting
/// every process) within this window share one aggregation of the job table.
pub const QUEUE_GAUGES_MAX_AGE: Duration = Duration::from_secs(5);

/// When the queue gauges were last computed. One per process (the metrics
/// recorder is process-wide too). Staleness is judged by the database's
/// clock, so tests with a manual clock decide when it has passed.
#[derive(Default)]
pub struct QueueGauges {
    refreshed_at: tokio::sync::Mutex<Option<DateTime<Utc>>>,
    /// How many times the gauges were computed (tests read it: the gauges
    /// themselves are process-wide, shared by every app a test binary runs).
    computed: AtomicU64,
}

impl QueueGauges {
    /// Recomputes the queue gauges if they are older than
    /// [`QUEUE_GAUGES_MAX_AGE`]. Concurrent scrapes wait for the one
    /// computing instead of running the aggregation again; a failed
    /// aggregation also counts as a refresh, so a struggling database is
    /// not asked again on every scrape.
    pub async fn refresh_if_stale(&self, db: &Database) {
        let mut refreshed_at = self.refreshed_at.lock().await;
        let now = db.now();
        let max_age =
            chrono::TimeDelta::from_std(QUEUE_GAUGES_MAX_AGE).unwrap_or(chrono::TimeDelta::MAX);
        if refreshed_at.is_some_and(|at| now - at < max_age) {
            return;
        }
        record_queue_gauges(db).await;
        self.computed.fetch_add(1, Ordering::Relaxed);
        *refreshed_at = Some(now);
    }

    /// How many times this process computed the queue gauges.
    pub fn times_computed(&self) -> u64 {
        self.computed.load(Ordering::Relaxed)
    }
}

/// Queue depth and oldest waiting age, read from the database so every
/// process (api or worker) reports the same truth.
async fn record_queue_gauges(db: &Database) {
    match crate::jobs::admin::queue_stats(db.conn()).await {
        Ok(stats) => {
            for queue in stats {
                for (job_state, count) in &queue.counts {
                    metrics::gauge!("job_queue_depth", "queue" => queue.queue.as_str(), "state" => job_state.clone())
                        .set(*count as f64);
                }
                metrics::gauge!("job_queue_oldest_waiting_seconds", "queue" => queue.queue.as_str())
                    .set(queue.oldest_waiting_seconds.unwrap_or(0.0));
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not read queue statistics for metrics"),
    }
}

/// The metrics page, with the database pool gauges read at scrape time.
fn render_metrics(state: &AppState) -> impl IntoResponse + use<> {
    let (open, idle) = state.db.pool_usage();
    metrics::gauge!("db_pool_connections", "state" => "open").set(f64::from(open));
    metrics::gauge!("db_pool_connections", "state" => "idle").set(idle as f64);
    metrics::gauge!("db_pool_connections", "state" => "max")
        .set(f64::from(state.config.db_max_connections));
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redis_down_degrades_and_only_the_database_down_is_down() {
        use Check::{Down, Ok};
        let cases = [
            (Ok, None, ReadyStatus::Ok),
            (Ok, Some(Ok), ReadyStatus::Ok),
            (Ok, Some(Down), ReadyStatus::Degraded),
            (Down, None, ReadyStatus::Down),
            (Down, Some(Ok), ReadyStatus::Down),
            (Down, Some(Down), ReadyStatus::Down),
        ];
        for (database, redis, status) in cases {
            assert_eq!(
                Readiness::of(database, redis).status,
                status,
                "{database:?} {redis:?}"
            );
        }
        assert_eq!(Readiness::of(Down, Some(Down)).down(), "database, redis");
    }

    #[test]
    fn only_the_exact_bearer_token_matches() {
        let token = SecretString::from("metrics-token-0123456789abcdef-0123");
        let with = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            headers
        };
        assert!(bearer_matches(
            &with("Bearer metrics-token-0123456789abcdef-0123"),
            &token
        ));
        assert!(!bearer_matches(
            &with("Bearer metrics-token-0123456789abcdef-012"),
            &token
        ));
        assert!(!bearer_matches(
            &with("Basic metrics-token-0123456789abcdef-0123"),
            &token
        ));
        assert!(!bearer_matches(
            &with("metrics-token-0123456789abcdef-0123"),
            &token
        ));
        assert!(!bearer_matches(&HeaderMap::new(), &token));
    }
}
