//! The pool's completer: writes the successes of many jobs with one fenced
//! statement.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::pace;
use crate::{db::Database, jobs::store};

/// Most successes written by one statement.
const COMPLETION_BATCH: usize = 256;
/// Successes that may wait for the completer before handlers wait to hand
/// theirs over (back-pressure when the database falls behind).
pub(super) const COMPLETION_QUEUE: usize = 1024;

/// A job whose handler succeeded, waiting for its success to be written.
pub(super) struct Completion {
    pub(super) id: Uuid,
    pub(super) attempt: i32,
    /// A success forgotten by a server crash must lead to another run, not
    /// to the failure and compensation that follow a last attempt's lost
    /// lease, so such a success is written with a durable commit.
    pub(super) last_attempt: bool,
    /// Whether the fence held (false: the lease was lost meanwhile).
    pub(super) done: oneshot::Sender<Result<bool, String>>,
}

/// Writes the pool's successes in batches: it takes whatever has arrived
/// (at most [`COMPLETION_BATCH`]) and writes it with one fenced statement
/// ([`store::complete_many`]); what arrives meanwhile makes the next batch.
/// An idle pool's success is written at once; a busy pool's share commits.
pub(super) async fn complete_loop(
    db: Database,
    owner: Uuid,
    mut pending: mpsc::Receiver<Completion>,
    stop: CancellationToken,
) {
    let mut batch = Vec::with_capacity(COMPLETION_BATCH);
    let mut last_write: Option<Instant> = None;
    loop {
        let received = tokio::select! {
            received = pending.recv_many(&mut batch, COMPLETION_BATCH) => received,
            () = stop.cancelled() => {
                // Nothing new is accepted; what was handed over is written.
                pending.close();
                pending.recv_many(&mut batch, COMPLETION_BATCH).await
            }
        };
        if received == 0 {
            return;
        }
        if batch.len() < COMPLETION_BATCH && !stop.is_cancelled() {
            pace(last_write, &stop).await;
            while batch.len() < COMPLETION_BATCH {
                match pending.try_recv() {
                    Ok(completion) => batch.push(completion),
                    Err(_) => break,
                }
            }
        }
        write_completions(&db, owner, &mut batch).await;
        last_write = Some(Instant::now());
    }
}

/// Writes of a batch tried before its jobs are given up on.
const COMPLETION_TRIES: u32 = 3;

async fn write_completions(db: &Database, owner: Uuid, batch: &mut Vec<Completion>) {
    let pairs: Vec<(Uuid, i32)> = batch.iter().map(|c| (c.id, c.attempt)).collect();
    // See store::complete_many for why a deferred commit loses no job.
    let commit = if batch.iter().any(|c| c.last_attempt) {
        store::Commit::Durable
    } else {
        store::Commit::Deferred
    };
    // A failed write is tried again: one error concerns a whole batch, and a
    // success never written means running the job again once its lease runs
    // out. The fence makes a second try harmless; at worst, after a commit
    // whose answer was lost, jobs already written read as lost leases.
    let mut pause = Duration::from_millis(50);
    let mut tries = 1;
    let written = loop {
        match store::complete_many(db, owner, &pairs, commit).await {
            Err(e) if tries < COMPLETION_TRIES => {
                tracing::warn!(error = %e, jobs = pairs.len(), "writing job successes failed; trying again");
                tokio::time::sleep(pause).await;
                pause *= 4;
                tries += 1;
            }
            result => break result.map_err(|e| e.to_string()),
        }
    };
    for completion in batch.drain(..) {
        let outcome = written
            .as_ref()
            .map(|done| done.contains(&completion.id))
            .map_err(Clone::clone);
        // The handler may be gone (its runtime shut down); nothing to tell.
        let _ = completion.done.send(outcome);
    }
}
