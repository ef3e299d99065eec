//! The worker pool of one process: per-queue fetchers, handler tasks, the
//! lease heartbeat, the rescuer of dead workers' jobs, and the PostgreSQL
//! listener that wakes fetchers when another process commits a job.

use std::{
    collections::{HashMap, HashSet},
    panic::AssertUnwindSafe,
    sync::Arc,
    time::{Duration, Instant},
};

use futures::FutureExt;
use sea_orm::{
    ColumnTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use tokio::{
    sync::{Mutex, OwnedSemaphorePermit, Semaphore, mpsc, oneshot},
    task::JoinHandle,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tracing::Instrument;
use uuid::Uuid;

use super::{
    JobError, Queue,
    model::job::{self, Entity as Jobs, JobState},
    registry::{JobServices, Registry},
    store,
};
use crate::{config::Config, db::Database};

/// How the pool runs; from configuration.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub concurrency: HashMap<Queue, usize>,
    /// Fallback wake-up when no notification arrives.
    pub poll_interval: Duration,
    /// A claimed job is the worker's for this long, renewed by heartbeats.
    pub lease: Duration,
    /// How long running jobs may take to finish at shutdown.
    pub shutdown_grace: Duration,
}

impl WorkerSettings {
    pub fn from_config(config: &Config) -> Self {
        let concurrency = Queue::ALL
            .into_iter()
            .map(|q| {
                let n = config
                    .job_concurrency
                    .get(q.as_str())
                    .copied()
                    .unwrap_or_else(|| q.default_concurrency());
                (q, n)
            })
            .collect();
        Self {
            concurrency,
            poll_interval: config.job_poll_interval,
            lease: config.job_lease,
            shutdown_grace: config.job_shutdown_grace,
        }
    }
}

/// What every part of the pool shares.
struct Shared {
    owner: Uuid,
    db: Database,
    services: JobServices,
    registry: Registry,
    settings: WorkerSettings,
    /// Successes on their way to the pool's completer.
    completions: mpsc::Sender<Completion>,
    /// Jobs claimed by this pool whose outcome is not written yet: the only
    /// leases the heartbeat extends. A job whose outcome could not be written
    /// (or whose written success was lost, see [`store::complete_many`])
    /// leaves this set, so its lease runs out and the rescuer re-queues it.
    /// Keyed by attempt too: a retried job's next attempt may be claimed
    /// before the previous attempt's handler has left the set.
    in_flight: Mutex<HashSet<(Uuid, i32)>>,
}

/// A running pool. [`WorkerPool::shutdown`] drains it.
pub struct WorkerPool {
    shared: Arc<Shared>,
    stop_claiming: CancellationToken,
    loops: TaskTracker,
    handlers: TaskTracker,
    /// Told to stop once the handlers are done; flushes what it holds first.
    stop_completing: CancellationToken,
    completer: JoinHandle<()>,
    /// Renews the leases of running jobs until shutdown has drained or
    /// handed back every one of them (it outlives the fetch loops, so a
    /// `JOB_SHUTDOWN_GRACE` longer than `JOB_LEASE` cannot let the rescuer
    /// of another process take a job that is still draining here).
    stop_heartbeat: CancellationToken,
    heartbeat: JoinHandle<()>,
}

impl WorkerPool {
    /// Starts fetchers for every queue with a concurrency above zero.
    pub fn start(services: JobServices, registry: Registry, settings: WorkerSettings) -> Self {
        let owner = crate::db::new_id();
        let (completions, pending) = mpsc::channel(COMPLETION_QUEUE);
        let stop_completing = CancellationToken::new();
        let completer = tokio::spawn(complete_loop(
            services.db.clone(),
            owner,
            pending,
            stop_completing.clone(),
        ));
        let shared = Arc::new(Shared {
            owner,
            db: services.db.clone(),
            services,
            registry,
            settings,
            completions,
            in_flight: Mutex::default(),
        });
        let stop_heartbeat = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat_loop(Arc::clone(&shared), stop_heartbeat.clone()));
        let pool = Self {
            shared,
            stop_claiming: CancellationToken::new(),
            loops: TaskTracker::new(),
            handlers: TaskTracker::new(),
            stop_completing,
            completer,
            stop_heartbeat,
            heartbeat,
        };
        for (queue, concurrency) in &pool.shared.settings.concurrency {
            if *concurrency > 0 {
                pool.loops.spawn(fetch_loop(
                    Arc::clone(&pool.shared),
                    *queue,
                    Arc::new(Semaphore::new(*concurrency)),
                    pool.handlers.clone(),
                    pool.stop_claiming.clone(),
                ));
            }
        }
        pool.loops.spawn(rescue_loop(
            Arc::clone(&pool.shared),
            pool.stop_claiming.clone(),
        ));
        pool.loops.spawn(stage_loop(
            pool.shared.db.clone(),
            pool.stop_claiming.clone(),
        ));
        if pool.shared.db.is_postgres() {
            pool.loops.spawn(listen_loop(
                pool.shared.db.clone(),
                pool.stop_claiming.clone(),
            ));
        }
        tracing::info!(worker.id = %pool.shared.owner, "job workers started");
        pool
    }

    /// This pool's lease owner id.
    pub fn owner(&self) -> Uuid {
        self.shared.owner
    }

    /// Stops claiming, lets running jobs finish within the grace period,
    /// writes the successes still waiting in the completer, then hands any
    /// job still running back to the queue (without counting the interrupted
    /// attempt) so another worker picks it up at once.
    pub async fn shutdown(self) {
        self.stop_claiming.cancel();
        self.loops.close();
        self.loops.wait().await;
        self.handlers.close();
        let drained =
            tokio::time::timeout(self.shared.settings.shutdown_grace, self.handlers.wait())
                .await
                .is_ok();
        // Handlers wait for their success to be written, so once they are
        // done the completer holds nothing; after a timeout it may, and what
        // it holds is written before the remaining leases are handed back.
        self.stop_completing.cancel();
        if let Err(e) = self.completer.await {
            tracing::error!(error = %e, "the job completer failed; unwritten successes will run again");
        }
        if !drained {
            match release_all(&self.shared.db, self.shared.owner).await {
                Ok(n) => tracing::warn!(
                    jobs = n,
                    "jobs still running at shutdown were handed back to the queue"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "could not hand back running jobs; their leases will expire")
                }
            }
        }
        self.stop_heartbeat.cancel();
        if let Err(e) = self.heartbeat.await {
            tracing::error!(error = %e, "the lease heartbeat failed");
        }
        tracing::info!(worker.id = %self.shared.owner, "job workers stopped");
    }
}

async fn release_all(db: &Database, owner: Uuid) -> Result<u64, DbErr> {
    let txn = db.begin_write().await?;
    let result = Jobs::update_many()
        .col_expr(job::Column::State, Expr::value(JobState::Available))
        .col_expr(job::Column::Attempt, Expr::col(job::Column::Attempt).sub(1))
        .col_expr(job::Column::LeaseOwner, Expr::value(Option::<Uuid>::None))
        .col_expr(
            job::Column::LeaseExpiresAt,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .col_expr(job::Column::RunAt, Expr::value(crate::db::now()))
        .filter(job::Column::State.eq(JobState::Running))
        .filter(job::Column::LeaseOwner.eq(owner))
        .exec(&*txn)
        .await?;
    txn.commit().await?;
    Ok(result.rows_affected)
}

/// Most jobs claimed in one statement.
const CLAIM_BATCH: usize = 64;

/// Least time between two claims of a queue's fetch loop, or two writes of
/// a pool's completer, when woken by new work. Under load, wake-ups arrive
/// faster than a statement per job is worth (at 500 orders/s every checkout
/// woke the notifications queue to claim one job, then wrote one success):
/// waiting out the rest of this after the previous statement lets one
/// statement take everything that arrived meanwhile. An idle queue is not
/// delayed (its previous claim is older than this), and a busy one by at
/// most this.
const PACE: Duration = Duration::from_millis(5);

/// Waits until [`PACE`] has passed since `last` (or `stop`).
async fn pace(last: Option<Instant>, stop: &CancellationToken) {
    let Some(wait) = last.and_then(|last| PACE.checked_sub(last.elapsed())) else {
        return;
    };
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(wait) => {}
    }
}

async fn fetch_loop(
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
        Ok(Some(at)) => (at - crate::db::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .min(poll),
        _ => poll,
    }
}

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

async fn run_job(shared: Arc<Shared>, job: job::Model, slot: OwnedSemaphorePermit) {
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

/// Claimed jobs of one batched kind ([`super::Job::BATCHED`]): one call to
/// the kind's `run_batch`, then each job's outcome recorded in its own span,
/// exactly as [`run_job`] records one.
async fn run_batch(shared: Arc<Shared>, batch: Vec<(job::Model, OwnedSemaphorePermit)>) {
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
            let run_at = crate::db::now() + crate::duration::to_delta(delay);
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

/// Most successes written by one statement.
const COMPLETION_BATCH: usize = 256;
/// Successes that may wait for the completer before handlers wait to hand
/// theirs over (back-pressure when the database falls behind).
const COMPLETION_QUEUE: usize = 1024;

/// A job whose handler succeeded, waiting for its success to be written.
struct Completion {
    id: Uuid,
    attempt: i32,
    /// A success forgotten by a server crash must lead to another run, not
    /// to the failure and compensation that follow a last attempt's lost
    /// lease, so such a success is written with a durable commit.
    last_attempt: bool,
    /// Whether the fence held (false: the lease was lost meanwhile).
    done: oneshot::Sender<Result<bool, String>>,
}

/// Writes the pool's successes in batches: it takes whatever has arrived
/// (at most [`COMPLETION_BATCH`]) and writes it with one fenced statement
/// ([`store::complete_many`]); what arrives meanwhile makes the next batch.
/// An idle pool's success is written at once; a busy pool's share commits.
async fn complete_loop(
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

async fn heartbeat_loop(shared: Arc<Shared>, stop: CancellationToken) {
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

/// Re-queues (or fails, when out of attempts) jobs whose worker stopped
/// renewing its lease.
/// Makes scheduled jobs available a horizon before they are due (see
/// [`super::WAKE_HORIZON`]), checking every half horizon, so a job is
/// available (and its queue's fetch loop timing it) before its `run_at`.
async fn stage_loop(db: Database, stop: CancellationToken) {
    let every = super::WAKE_HORIZON / 2;
    loop {
        if let Err(e) = store::promote_scheduled(&db).await {
            tracing::warn!(error = %e, "making scheduled jobs available failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn rescue_loop(shared: Arc<Shared>, stop: CancellationToken) {
    let every = (shared.settings.lease / 2).max(Duration::from_millis(200));
    loop {
        if let Err(e) = rescue_expired(&shared).await {
            tracing::warn!(error = %e, "rescuing expired jobs failed");
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}

async fn rescue_expired(shared: &Shared) -> Result<(), DbErr> {
    for job in store::expired_leases(shared.db.conn(), 100).await? {
        let Some(owner) = job.lease_owner else {
            continue;
        };
        let error = "lease expired: the worker stopped responding";
        let rescued = if job.attempt < job.max_attempts {
            store::retry(&shared.db, &job, owner, error, crate::db::now()).await?
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

/// Turns PostgreSQL notifications from any process's commits (this one's
/// included) into wake-ups of the queue each names.
async fn listen_loop(db: Database, stop: CancellationToken) {
    use crate::db::listen::Heard;
    let Some(mut subscription) = db.listen(super::NOTIFY_CHANNEL).await else {
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
