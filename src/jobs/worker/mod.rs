//! The worker pool of one process. Each role has its file:
//! - [`fetch`]: a loop per queue claiming jobs (woken by commits, by the
//!   PostgreSQL listener for other processes' commits, or by polling);
//! - [`run`]: handler tasks running claimed jobs and recording each outcome;
//! - [`completer`]: writes the handlers' successes in batches;
//! - [`heartbeat`]: renews the leases of running jobs;
//! - [`stager`]: makes scheduled jobs available shortly before they are due;
//! - [`rescue`]: re-queues jobs whose worker stopped renewing its lease.

mod completer;
mod fetch;
mod heartbeat;
mod rescue;
mod run;
mod stager;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::{Duration, Instant},
};

use sea_orm::{
    ColumnTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use tokio::{
    sync::{Mutex, Semaphore, mpsc},
    task::JoinHandle,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use uuid::Uuid;

use self::completer::{COMPLETION_QUEUE, Completion, complete_loop};
use super::{
    Queue,
    model::job::{self, Entity as Jobs, JobState},
    registry::{JobServices, Registry},
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
        let heartbeat = tokio::spawn(heartbeat::heartbeat_loop(
            Arc::clone(&shared),
            stop_heartbeat.clone(),
        ));
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
                pool.loops.spawn(fetch::fetch_loop(
                    Arc::clone(&pool.shared),
                    *queue,
                    Arc::new(Semaphore::new(*concurrency)),
                    pool.handlers.clone(),
                    pool.stop_claiming.clone(),
                ));
            }
        }
        pool.loops.spawn(rescue::rescue_loop(
            Arc::clone(&pool.shared),
            pool.stop_claiming.clone(),
        ));
        pool.loops.spawn(stager::stage_loop(
            pool.shared.db.clone(),
            pool.stop_claiming.clone(),
        ));
        if pool.shared.db.is_postgres() {
            pool.loops.spawn(fetch::listen_loop(
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
        .col_expr(job::Column::RunAt, Expr::value(db.now()))
        .filter(job::Column::State.eq(JobState::Running))
        .filter(job::Column::LeaseOwner.eq(owner))
        .exec(&*txn)
        .await?;
    txn.commit().await?;
    Ok(result.rows_affected)
}

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
