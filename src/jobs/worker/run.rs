//! Handler tasks: run a claimed job (or a batch of one batched kind) under
//! its kind's timeout, then record the outcome under the lease's fence:
//! success through the completer, retry with backoff, or failure with its
//! compensation.

use std::{panic::AssertUnwindSafe, sync::Arc, time::Duration};

use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tracing::Instrument;

use super::{Completion, Shared};
use crate::jobs::{JobError, model::job, store};

/// A claimed job's span, correlation id and metric labels; counts its start.
fn begin(job: &job::Model) -> (tracing::Span, Arc<str>, [(&'static str, String); 2]) {
    let correlation_id: Arc<str> = Arc::from(
        job.correlation_id
            .clone()
            .unwrap_or_else(|| job.id.to_string()),
    );
    let span = tracing::info_span!(
        "job",
        correlation_id = %correlation_id,
        job.id = %job.id,
        job.kind = %job.kind,
        job.attempt = job.attempt,
    );
    let labels = [("kind", job.kind.clone()), ("queue", job.queue.clone())];
    metrics::counter!("jobs_started_total", &labels).increment(1);
    let due = std::cmp::max(job.run_at, job.created_at);
    if let Some(started) = job.started_at {
        let waited = (started - due).to_std().unwrap_or_default();
        metrics::histogram!("job_enqueue_to_start_seconds", &labels[1..])
            .record(waited.as_secs_f64());
    }
    (span, correlation_id, labels)
}

/// Runs `attempt` under the kind's timeout, turning a timeout or a panic into
/// a retryable error for each of the `jobs` it covers.
async fn guarded<F>(attempt: F, timeout: Duration, jobs: usize) -> Vec<Result<(), JobError>>
where
    F: std::future::Future<Output = Vec<Result<(), JobError>>>,
{
    let failed = |why: String| {
        (0..jobs)
            .map(|_| Err(JobError::retryable(why.clone())))
            .collect()
    };
    match AssertUnwindSafe(tokio::time::timeout(timeout, attempt))
        .catch_unwind()
        .await
    {
        Ok(Ok(outcomes)) => outcomes,
        Ok(Err(_)) => failed(format!("timed out after {timeout:?}")),
        Err(_) => failed("the handler panicked".to_owned()),
    }
}

pub(super) async fn run_job(shared: Arc<Shared>, job: job::Model, slot: OwnedSemaphorePermit) {
    let (span, correlation_id, labels) = begin(&job);
    let work = async {
        let options = shared.registry.options(&job.kind);
        let ctx = shared.services.context(job.id, job.attempt, shared.owner);
        let attempt = async { vec![shared.registry.run(&job.kind, &job.payload, &ctx).await] };
        let outcome = guarded(attempt, options.timeout, 1)
            .await
            .pop()
            .unwrap_or_else(|| Err(JobError::retryable("the handler gave no outcome")));
        finish(&shared, &job, outcome, &labels, slot).await;
        shared.in_flight.lock().await.remove(&(job.id, job.attempt));
    };
    crate::telemetry::CORRELATION_ID
        .scope(correlation_id, work.instrument(span))
        .await;
}

/// Claimed jobs of one batched kind ([`crate::jobs::Job::BATCHED`]): one call to
/// the kind's `run_batch`, then each job's outcome recorded in its own span,
/// exactly as [`run_job`] records one.
pub(super) async fn run_batch(shared: Arc<Shared>, batch: Vec<(job::Model, OwnedSemaphorePermit)>) {
    let Some(kind) = batch.first().map(|(job, _)| job.kind.clone()) else {
        return;
    };
    let started: Vec<_> = batch.iter().map(|(job, _)| begin(job)).collect();
    let options = shared.registry.options(&kind);
    let inputs = batch
        .iter()
        .map(|(job, _)| {
            let ctx = shared.services.context(job.id, job.attempt, shared.owner);
            (&job.payload, ctx)
        })
        .collect();
    let outcomes = guarded(
        shared.registry.run_batch(&kind, inputs),
        options.timeout,
        batch.len(),
    )
    .await;
    let mut outcomes = outcomes.into_iter();
    let finishing =
        batch
            .into_iter()
            .zip(started)
            .map(|((job, slot), (span, correlation_id, labels))| {
                let outcome = outcomes
                    .next()
                    .unwrap_or_else(|| Err(JobError::retryable("the batch gave no outcome")));
                let shared = Arc::clone(&shared);
                let work = async move {
                    finish(&shared, &job, outcome, &labels, slot).await;
                    shared.in_flight.lock().await.remove(&(job.id, job.attempt));
                };
                crate::telemetry::CORRELATION_ID.scope(correlation_id, work.instrument(span))
            });
    futures::future::join_all(finishing).await;
}

/// Records the attempt's outcome under the lease's fence. A success goes to
/// the pool's completer, which writes the successes of many jobs at once; the
/// job's slot is given back as soon as the completer has it (the work is done;
/// only the write is pending), and this task waits for the write so that the
/// outcome is logged and counted in the job's span, and so that draining the
/// handlers at shutdown drains the completer too.
async fn finish(
    shared: &Shared,
    job: &job::Model,
    outcome: Result<(), JobError>,
    labels: &[(&'static str, String); 2],
    slot: OwnedSemaphorePermit,
) {
    let owner = shared.owner;
    let (result, counted) = match outcome {
        Ok(()) => {
            let (done, written) = oneshot::channel();
            let handed_over = shared
                .completions
                .send(Completion {
                    id: job.id,
                    attempt: job.attempt,
                    last_attempt: job.attempt >= job.max_attempts,
                    done,
                })
                .await;
            drop(slot);
            let result = match handed_over {
                Ok(()) => written
                    .await
                    .unwrap_or_else(|_| Err("the completer stopped before writing".into())),
                Err(_) => Err("the completer has stopped".into()),
            };
            (result, Outcome::Succeeded)
        }
        Err(JobError::Retryable(error)) if job.attempt < job.max_attempts => {
            let delay = shared
                .registry
                .options(&job.kind)
                .backoff
                .delay(job.attempt);
            let run_at = shared.db.now() + crate::duration::to_delta(delay);
            tracing::warn!(error = %error, retry_in_ms = delay.as_millis() as u64, "job attempt failed; will retry");
            let result = store::retry(&shared.db, job, owner, &error, run_at)
                .await
                .map_err(|e| e.to_string());
            (result, Outcome::Retried)
        }
        Err(error) => {
            tracing::error!(error = %error, "job failed for good");
            let compensation = shared.registry.compensation(&job.kind, &job.payload);
            let result = store::fail(&shared.db, job, owner, &error.to_string(), compensation)
                .await
                .map_err(|e| e.to_string());
            (result, Outcome::Failed)
        }
    };
    match result {
        // Counted once the outcome is written: an outcome discarded by the
        // fence is counted by the worker whose attempt does get written.
        Ok(true) => match counted {
            Outcome::Succeeded => metrics::counter!("jobs_succeeded_total", labels).increment(1),
            Outcome::Retried => metrics::counter!("jobs_retried_total", labels).increment(1),
            Outcome::Failed => metrics::counter!("jobs_failed_total", labels).increment(1),
        },
        Ok(false) => {
            tracing::warn!("the job's lease was lost before it finished; its outcome is discarded")
        }
        Err(e) => {
            tracing::error!(error = %e, "could not record the job's outcome; its lease will expire and it will run again")
        }
    }
}

/// What became of an attempt, for its counter.
enum Outcome {
    Succeeded,
    Retried,
    Failed,
}
