//! Health probes and the Prometheus endpoint.

use std::time::Duration;

use axum::{
    Json,
    extract::State,
    http::{StatusCode, header},
    response::IntoResponse,
};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
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

#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ready")]
    pub status: &'static str,
    /// Each dependency and `ok`.
    pub checks: std::collections::BTreeMap<&'static str, &'static str>,
}

const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness: the database and (when configured) Redis answer.
#[utoipa::path(
    get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready", body = Readiness),
        (status = 503, description = "A dependency is down; `detail` names it", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn ready(State(state): State<AppState>) -> Result<Json<Readiness>, ApiError> {
    let mut failures = Vec::new();
    let mut checks = std::collections::BTreeMap::new();
    match tokio::time::timeout(PROBE_TIMEOUT, state.db.ping()).await {
        Ok(Ok(())) => {
            checks.insert("database", "ok");
        }
        Ok(Err(e)) => failures.push(format!("database: {e}")),
        Err(_) => failures.push("database: no answer within 2 s".to_owned()),
    }
    if let Some(kv) = &state.kv {
        match tokio::time::timeout(PROBE_TIMEOUT, kv.ping()).await {
            Ok(Ok(())) => {
                checks.insert("redis", "ok");
            }
            Ok(Err(e)) => failures.push(format!("redis: {e}")),
            Err(_) => failures.push("redis: no answer within 2 s".to_owned()),
        }
    }
    if failures.is_empty() {
        Ok(Json(Readiness {
            status: "ready",
            checks,
        }))
    } else {
        tracing::warn!(failures = ?failures, "not ready");
        Err(ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "not_ready")
            .with("checks", failures.join("; ")))
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    record_queue_gauges(&state).await;
    render_metrics(&state)
}

/// Queue depth and oldest waiting age, read from the database at scrape
/// time so every process (api or worker) reports the same truth.
pub async fn record_queue_gauges(state: &AppState) {
    match crate::jobs::admin::queue_stats(state.db.conn()).await {
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
pub fn render_metrics(state: &AppState) -> impl IntoResponse + use<> {
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
