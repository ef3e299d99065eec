//! Logging (tracing) and metrics (Prometheus) set-up.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tracing_subscriber::{EnvFilter, fmt, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Installs the global subscriber. Later calls (tests start many apps in one
/// process) keep the first.
pub fn init_tracing(format: LogFormat, level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(true)
                    .with_span_list(false),
            )
            .try_init(),
        LogFormat::Pretty => registry.with(fmt::layer().compact()).try_init(),
    };
}

tokio::task_local! {
    /// The correlation id of the request (or job) this task works for; jobs
    /// enqueued from it inherit it.
    pub static CORRELATION_ID: std::sync::Arc<str>;
}

/// The current task's correlation id, if it has one.
pub fn current_correlation_id() -> Option<String> {
    CORRELATION_ID.try_with(|id| id.to_string()).ok()
}

static RECORDER: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder (installed once; the `metrics` facade
/// allows one global recorder per process).
pub fn metrics_handle() -> PrometheusHandle {
    RECORDER
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".to_owned()),
                    &[
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0,
                    ],
                )
                .and_then(|builder| {
                    // A histogram (not a summary) so quantiles combine across
                    // worker processes.
                    builder.set_buckets_for_metric(
                        Matcher::Full("job_enqueue_to_start_seconds".to_owned()),
                        &[
                            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                            10.0, 30.0, 60.0, 300.0,
                        ],
                    )
                })
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            if metrics::set_global_recorder(recorder).is_err() {
                tracing::warn!("a metrics recorder was already installed; /metrics will be empty");
            }
            handle
        })
        .clone()
}
