//! The rescuer: re-queues (or fails, when out of attempts) jobs whose worker
//! stopped renewing its lease.

use std::{sync::Arc, time::Duration};

use sea_orm::DbErr;
use tokio_util::sync::CancellationToken;

use super::Shared;
use crate::jobs::store;

pub(super) async fn rescue_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let every = (shared.settings.lease / 2).max(Duration::from_millis(200));
    loop {
        if let Err(e) = rescue_expired(&shared).await {
            tracing::warn!(error = %e, "rescuing expired jobs failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            // A test moved the clock: leases may have run out.
            () = shared.db.clock().advanced() => {}
        }
    }
}

async fn rescue_expired(shared: &Shared) -> Result<(), DbErr> {
    for job in store::expired_leases(shared.db.conn(), shared.db.now(), 100).await? {
        let Some(owner) = job.lease_owner else {
            continue;
        };
        let error = "lease expired: the worker stopped responding";
        let rescued = if job.attempt < job.max_attempts {
            store::retry(&shared.db, &job, owner, error, shared.db.now()).await?
        } else {
            let compensation = shared.registry.compensation(&job.kind, &job.payload);
            store::fail(&shared.db, &job, owner, error, compensation).await?
        };
        if rescued {
            tracing::warn!(job.id = %job.id, job.kind = %job.kind, "rescued a job from a lost worker");
            metrics::counter!("jobs_rescued_total", "kind" => job.kind.clone()).increment(1);
        }
    }
    Ok(())
}
