//! The stager: makes scheduled jobs available shortly before they are due.

use tokio_util::sync::CancellationToken;

use crate::{db::Database, jobs::store};

/// Makes scheduled jobs available a horizon before they are due (see
/// [`crate::jobs::WAKE_HORIZON`]), checking every half horizon, so a job is
/// available (and its queue's fetch loop timing it) before its `run_at`.
pub(super) async fn stage_loop(db: Database, stop: CancellationToken) {
    let every = crate::jobs::WAKE_HORIZON / 2;
    loop {
        if let Err(e) = store::promote_scheduled(&db).await {
            tracing::warn!(error = %e, "making scheduled jobs available failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
            // A test moved the clock: jobs may have come within the horizon.
            () = db.clock().advanced() => {}
        }
    }
}
