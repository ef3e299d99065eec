//! A queue's fetch loop: claims due jobs in batches as slots free up and
//! hands them to handler tasks; and the PostgreSQL listener that wakes the
//! fetch loops when any process commits a job.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::FutureExt;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    Shared, pace,
    run::{run_batch, run_job},
};
use crate::{
    db::Database,
    jobs::{Queue, model::job, store},
};

/// Most jobs claimed in one statement.
const CLAIM_BATCH: usize = 64;

pub(super) async fn fetch_loop(
    shared: Arc<Shared>,
    queue: Queue,
    slots: Arc<Semaphore>,
    handlers: TaskTracker,
    stop: CancellationToken,
) {
    let signals = Arc::clone(shared.db.commit_signals());
    let signal = signals.topic(queue.commit_topic());
    let mut last_claim: Option<Instant> = None;
    let mut more_waiting = false;
    loop {
        if !more_waiting {
            pace(last_claim, &stop).await;
        }
        // Wait for a free slot before claiming, so a claimed job never waits.
        let first = tokio::select! {
            _ = stop.cancelled() => return,
            permit = Arc::clone(&slots).acquire_owned() => match permit { Ok(p) => p, Err(_) => return },
        };
        let mut permits = vec![first];
        while permits.len() < CLAIM_BATCH {
            match Arc::clone(&slots).try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        // Listen before looking, so a commit between the claim and the wait
        // is not missed.
        let notified = signal.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();

        let wanted = permits.len();
        let store::Claimed {
            jobs: claimed,
            next_due,
        } = match store::claim(
            &shared.db,
            queue,
            wanted as u64,
            shared.owner,
            shared.settings.lease,
        )
        .await
        {
            Ok(jobs) => jobs,
            Err(e) => {
                tracing::warn!(error = %e, queue = queue.as_str(), "claiming jobs failed");
                drop(permits);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(shared.settings.poll_interval) => continue,
                }
            }
        };
        last_claim = Some(Instant::now());
        let got = claimed.len();
        more_waiting = got == wanted;
        shared
            .in_flight
            .lock()
            .await
            .extend(claimed.iter().map(|job| (job.id, job.attempt)));
        let mut batches: HashMap<String, Vec<(job::Model, OwnedSemaphorePermit)>> = HashMap::new();
        for (job, permit) in claimed.into_iter().zip(permits.drain(..)) {
            if shared.registry.batched(&job.kind) {
                batches
                    .entry(job.kind.clone())
                    .or_default()
                    .push((job, permit));
            } else {
                handlers.spawn(run_job(Arc::clone(&shared), job, permit));
            }
        }
        for batch in batches.into_values() {
            handlers.spawn(run_batch(Arc::clone(&shared), batch));
        }
        drop(permits);
        if more_waiting {
            continue;
        }
        if notified.as_mut().now_or_never().is_some() {
            // New work was committed during the claim: claim again at once,
            // without asking when the next delayed job is due (under load,
            // that query would follow nearly every claim).
            continue;
        }
        let wait = until_next_due(&shared, queue, next_due).await;
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = &mut notified => {}
            _ = tokio::time::sleep(wait) => {}
            // A test moved the clock: what was not due may be now.
            () = shared.db.clock().advanced() => {}
        }
    }
}

/// How long to sleep: until the next job not yet due is due, at most the
/// poll interval.
async fn until_next_due(shared: &Shared, queue: Queue, known: store::NextDue) -> Duration {
    let poll = shared.settings.poll_interval;
    let next = match known {
        store::NextDue::Known(next) => Ok(next),
        store::NextDue::Unknown => store::next_due(shared.db.conn(), queue).await,
    };
    match next {
        Ok(Some(at)) => (at - shared.db.now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(poll),
        _ => poll,
    }
}

/// Turns PostgreSQL notifications from any process's commits (this one's
/// included) into wake-ups of the queue each names.
pub(super) async fn listen_loop(db: Database, stop: CancellationToken) {
    use crate::db::listen::Heard;
    let Some(mut subscription) = db.listen(crate::jobs::NOTIFY_CHANNEL).await else {
        return;
    };
    loop {
        let heard = tokio::select! {
            _ = stop.cancelled() => return,
            heard = subscription.recv() => heard,
        };
        match heard {
            Heard::Payload(payload) => match Queue::parse(&payload) {
                Some(queue) => store::wake(&db, &[queue]),
                None => store::wake(&db, &Queue::ALL),
            },
            // Anything committed while nobody listened is picked up now.
            Heard::Listening => store::wake(&db, &Queue::ALL),
        }
    }
}
