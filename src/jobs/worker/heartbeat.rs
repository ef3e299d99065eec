//! The lease heartbeat: renews, every third of a lease, the leases of the
//! jobs this pool is still running.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::Shared;
use crate::jobs::store;

pub(super) async fn heartbeat_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let every = shared.settings.lease / 3;
    loop {
        tokio::select! {
            // Until shutdown has drained or handed back every running job.
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let in_flight: Vec<Uuid> = shared
            .in_flight
            .lock()
            .await
            .iter()
            .map(|(id, _)| *id)
            .collect();
        if let Err(e) =
            store::heartbeat(&shared.db, shared.owner, &in_flight, shared.settings.lease).await
        {
            tracing::warn!(error = %e, "lease heartbeat failed");
        }
    }
}
