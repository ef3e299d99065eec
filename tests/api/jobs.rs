//! The durable job queue: transactional enqueue, exactly-once completion
//! across workers and processes, crash recovery, retries, compensation,
//! uniqueness, scheduling and draining.

use std::{collections::HashMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use dispatch::{
    db::Database,
    jobs::{
        self, Backoff, Enqueued, Job, JobContext, JobError, JobOptions, NewJob, Queue,
        diagnostics::{self, Probe},
        model::job::{self as job_row, Entity as Jobs, JobState},
        registry::{JobServices, Registry},
        scheduler::{self, Periodic},
        worker::{WorkerPool, WorkerSettings},
    },
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, spawn_app_with};

const WAIT: Duration = Duration::from_secs(60);

/// Fails every attempt (retryably), backing off an hour, then two (on the
/// app's clock, which the test advances).
#[derive(Debug, Default, Serialize, Deserialize)]
struct AlwaysFails {}

#[async_trait]
impl Job for AlwaysFails {
    const KIND: &'static str = "test.always_fails";
    const QUEUE: Queue = Queue::Orders;

    fn options() -> JobOptions {
        JobOptions {
            max_attempts: 3,
            backoff: Backoff::new(Duration::from_secs(3600), Duration::from_secs(4 * 3600)),
            ..JobOptions::default()
        }
    }

    async fn run(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Err(JobError::retryable("still broken"))
    }

    fn compensation(&self) -> Option<NewJob> {
        Some(NewJob::of(&Probe::default()))
    }
}

/// Fails permanently on its first attempt.
#[derive(Debug, Default, Serialize, Deserialize)]
struct RefusedForGood {}

#[async_trait]
impl Job for RefusedForGood {
    const KIND: &'static str = "test.refused_for_good";
    const QUEUE: Queue = Queue::Orders;

    async fn run(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Err(JobError::permanent("card declined"))
    }
}

fn registry() -> Registry {
    dispatch::startup::job_registry()
        .with::<AlwaysFails>()
        .with::<RefusedForGood>()
}

fn settings(app: &TestApp, concurrency: usize) -> WorkerSettings {
    let mut settings = WorkerSettings::from_config(&app.state.config);
    for queue in Queue::ALL {
        settings.concurrency.insert(queue, concurrency);
    }
    settings
}

fn start_pool(app: &TestApp, concurrency: usize) -> WorkerPool {
    WorkerPool::start(
        JobServices::from_state(&app.state),
        registry(),
        settings(app, concurrency),
    )
}

async fn enqueue_one(db: &Database, job: NewJob) -> Uuid {
    let txn = db.begin_write().await.unwrap();
    let Enqueued::Inserted(id) = jobs::enqueue(&txn, job).await.unwrap() else {
        panic!("expected a new job");
    };
    txn.commit().await.unwrap();
    id
}

async fn enqueue_probes(db: &Database, count: usize, hold_ms: u64) -> Vec<Uuid> {
    let mut ids = Vec::with_capacity(count);
    for chunk in (0..count).collect::<Vec<_>>().chunks(250) {
        let txn = db.begin_write().await.unwrap();
        for _ in chunk {
            match jobs::enqueue(&txn, NewJob::of(&Probe { hold_ms }))
                .await
                .unwrap()
            {
                Enqueued::Inserted(id) => ids.push(id),
                Enqueued::Duplicate => panic!("probes have no unique key"),
            }
        }
        txn.commit().await.unwrap();
    }
    ids
}

async fn job(db: &Database, id: Uuid) -> job_row::Model {
    Jobs::find_by_id(id)
        .one(db.conn())
        .await
        .unwrap()
        .expect("job row")
}

async fn count_in_state(db: &Database, state: JobState) -> u64 {
    Jobs::find()
        .filter(job_row::Column::State.eq(state))
        .count(db.conn())
        .await
        .unwrap()
}

async fn wait_for_state(db: &Database, id: Uuid, state: JobState) -> job_row::Model {
    eventually(&format!("job {id} to be {state:?}"), WAIT, || async {
        job(db, id).await.state == state
    })
    .await;
    job(db, id).await
}

fn fast_jobs() -> [(&'static str, &'static str); 2] {
    [("JOB_LEASE", "1s"), ("JOB_POLL_INTERVAL", "200ms")]
}

#[tokio::test]
async fn a_job_enqueued_in_a_rolled_back_transaction_never_runs() {
    let app = spawn_app_with(&fast_jobs()).await;
    let txn = app.state.db.begin_write().await.unwrap();
    jobs::enqueue(&txn, NewJob::of(&Probe::default()))
        .await
        .unwrap();
    drop(txn); // rolls back
    let committed = enqueue_one(&app.state.db, NewJob::of(&Probe::default())).await;

    let pool = start_pool(&app, 2);
    wait_for_state(&app.state.db, committed, JobState::Succeeded).await;
    pool.shutdown().await;

    assert_eq!(
        Jobs::find().count(app.state.db.conn()).await.unwrap(),
        1,
        "the rolled-back job left no row"
    );
    let runs = diagnostics::runs_per_job(app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(runs, HashMap::from([(committed, 1)]));
}

#[tokio::test]
async fn two_thousand_jobs_over_four_workers_each_run_exactly_once() {
    let app = spawn_app_with(&fast_jobs()).await;
    let ids = enqueue_probes(&app.state.db, 2000, 0).await;
    let pools: Vec<WorkerPool> = (0..4).map(|_| start_pool(&app, 2)).collect();
    eventually("all 2000 jobs to succeed", WAIT * 3, || async {
        count_in_state(&app.state.db, JobState::Succeeded).await == 2000
    })
    .await;
    for pool in pools {
        pool.shutdown().await;
    }
    let runs = diagnostics::runs_per_job(app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(runs.len(), 2000);
    assert!(
        ids.iter().all(|id| runs.get(id) == Some(&1)),
        "a job ran twice or not at all"
    );
    let workers: std::collections::HashSet<Uuid> = diagnostics::probe_run::Entity::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.worker)
        .collect();
    assert!(workers.len() > 1, "the work was shared between workers");
}

/// Starts `dispatch serve --role worker` against the test's database.
pub(crate) fn spawn_worker_process(app: &TestApp) -> tokio::process::Child {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_dispatch"));
    command.args(["serve", "--role", "worker"]);
    command.env_clear();
    for (name, value) in &app.settings {
        command.env(name, value);
    }
    command
        .env("LOG_LEVEL", "warn")
        .env("JOB_LEASE", "1s")
        .env("JOB_POLL_INTERVAL", "200ms")
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null());

    command.spawn().expect("start a worker process")
}

#[tokio::test]
async fn two_thousand_jobs_across_two_worker_processes_each_run_exactly_once() {
    // Several worker processes on one queue is the PostgreSQL topology, but
    // the claim is just as exclusive across processes on a SQLite file
    // (BEGIN IMMEDIATE), so the test runs on both.
    let app = spawn_app_with(&fast_jobs()).await;
    let ids = enqueue_probes(&app.state.db, 2000, 0).await;
    let mut children = [spawn_worker_process(&app), spawn_worker_process(&app)];
    // Count probes only: the processes' schedulers add their own periodic jobs.
    eventually("all 2000 probes to succeed", WAIT * 3, || async {
        Jobs::find()
            .filter(job_row::Column::Kind.eq(Probe::KIND))
            .filter(job_row::Column::State.eq(JobState::Succeeded))
            .count(app.state.db.conn())
            .await
            .unwrap()
            == 2000
    })
    .await;
    for child in &mut children {
        child.kill().await.unwrap();
    }
    let runs = diagnostics::runs_per_job(app.state.db.conn())
        .await
        .unwrap();
    assert!(
        ids.iter().all(|id| runs.get(id) == Some(&1)),
        "a job ran twice or not at all"
    );
    let workers: std::collections::HashSet<Uuid> = diagnostics::probe_run::Entity::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.worker)
        .collect();
    assert_eq!(workers.len(), 2, "both processes took part");
}

#[tokio::test]
async fn a_job_whose_worker_task_is_aborted_runs_again_after_its_lease_expires_and_completes_once()
{
    // The default lease: the test moves the clock past it instead of waiting.
    let app = spawn_app_with(&[("JOB_POLL_INTERVAL", "200ms")]).await;
    let id = enqueue_one(&app.state.db, NewJob::of(&Probe { hold_ms: 1_500 })).await;

    // The doomed worker runs on a runtime of its own, with its own pool, so
    // that shutting the runtime down kills it mid-job with no clean-up, as a
    // crash would.
    let config = app.state.config.clone();
    let gateway = Arc::clone(&app.state.gateway);
    let doomed = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let settings = settings(&app, 1);
    let cache = Arc::clone(&app.state.cache);
    let locks = Arc::clone(&app.state.locks);
    let notifications = app.state.notifications.clone();
    let first_owner = doomed
        .spawn(async move {
            let db = Database::connect(&config).await.unwrap();
            let services = JobServices {
                db,
                cache,
                config: Arc::new(config),
                gateway,
                locks,
                notifications,
            };
            let pool = WorkerPool::start(services, registry(), settings);
            let owner = pool.owner();
            std::mem::forget(pool); // never drained: the runtime dies under it
            owner
        })
        .await
        .unwrap();
    let running = wait_for_state(&app.state.db, id, JobState::Running).await;
    assert_eq!(running.lease_owner, Some(first_owner));
    doomed.shutdown_background();

    // Its lease runs out (on the app's clock) and a live pool rescues it.
    let rescuer = start_pool(&app, 1);
    app.advance_clock(app.state.config.job_lease + Duration::from_secs(1));
    let done = wait_for_state(&app.state.db, id, JobState::Succeeded).await;
    rescuer.shutdown().await;

    assert_eq!(
        done.attempt, 2,
        "the aborted attempt counted, the second finished"
    );
    let runs = diagnostics::runs_per_job(app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(runs.get(&id), Some(&1), "completed exactly once");
    assert!(
        done.errors.to_string().contains("lease expired"),
        "{}",
        done.errors
    );
}

#[tokio::test]
async fn a_job_whose_worker_process_is_killed_runs_again_and_completes_once() {
    let app = spawn_app_with(&fast_jobs()).await;
    let id = enqueue_one(&app.state.db, NewJob::of(&Probe { hold_ms: 3_000 })).await;
    let mut victim = spawn_worker_process(&app);
    wait_for_state(&app.state.db, id, JobState::Running).await;
    victim.kill().await.unwrap(); // SIGKILL: no drain, no clean-up
    victim.wait().await.unwrap();

    let mut survivor = spawn_worker_process(&app);
    let done = wait_for_state(&app.state.db, id, JobState::Succeeded).await;
    survivor.kill().await.unwrap();

    assert_eq!(done.attempt, 2);
    let runs = diagnostics::runs_per_job(app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(runs.get(&id), Some(&1), "completed exactly once");
}

#[tokio::test]
async fn failures_follow_the_backoff_schedule_up_to_max_attempts_then_compensate_once() {
    let app = spawn_app_with(&fast_jobs()).await;
    let db = &app.state.db;
    let id = enqueue_one(db, NewJob::of(&AlwaysFails::default())).await;
    let pool = start_pool(&app, 2);
    // Each retry waits for its backoff: move the clock to when it is due.
    eventually("the job to fail for good", WAIT, || async {
        let row = job(db, id).await;
        if matches!(row.state, JobState::Scheduled | JobState::Available)
            && let Ok(wait) = (row.run_at - db.now()).to_std()
        {
            app.advance_clock(wait);
        }
        row.state == JobState::Failed
    })
    .await;
    let failed = job(db, id).await;

    assert_eq!(failed.attempt, 3, "max attempts respected");
    let history = failed.errors.as_array().unwrap();
    assert_eq!(history.len(), 3, "one error per attempt: {history:?}");
    let times: Vec<chrono::DateTime<chrono::Utc>> = history
        .iter()
        .map(|e| e["at"].as_str().unwrap().parse().unwrap())
        .collect();
    // Attempt 2 waited at least an hour after attempt 1 failed, attempt 3 at least two.
    assert!(
        times[1] - times[0] >= chrono::Duration::hours(1),
        "{times:?}"
    );
    assert!(
        times[2] - times[1] >= chrono::Duration::hours(2),
        "{times:?}"
    );

    // The compensation (a probe) was enqueued with the failure and runs once.
    let compensation_key = format!("compensation:{id}");
    eventually("the compensation to run", WAIT, || async {
        Jobs::find()
            .filter(job_row::Column::UniqueKey.eq(compensation_key.as_str()))
            .filter(job_row::Column::State.eq(JobState::Succeeded))
            .count(app.state.db.conn())
            .await
            .unwrap()
            == 1
    })
    .await;
    pool.shutdown().await;
    let probes = diagnostics::runs_per_job(app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(
        probes.values().sum::<usize>(),
        1,
        "exactly one compensation ran"
    );
    app.allow_leftover_jobs();
}

#[tokio::test]
async fn a_job_due_later_waits_scheduled_out_of_the_claims_way_and_runs_when_due() {
    let app = spawn_app_with(&fast_jobs()).await;
    let db = &app.state.db;
    let due = db.now() + chrono::Duration::hours(1);
    let later = enqueue_one(db, NewJob::of(&Probe::default()).at(due)).await;
    let now = enqueue_one(db, NewJob::of(&Probe::default())).await;
    assert_eq!(job(db, later).await.state, JobState::Scheduled);
    assert_eq!(job(db, now).await.state, JobState::Available);

    let pool = start_pool(&app, 2);
    wait_for_state(db, now, JobState::Succeeded).await;
    // Made available a horizon ahead, claimed when due, not before.
    assert_eq!(job(db, later).await.state, JobState::Scheduled);
    app.advance_clock(Duration::from_secs(3600));
    let done = wait_for_state(db, later, JobState::Succeeded).await;
    pool.shutdown().await;
    assert_eq!(done.attempt, 1);
    let started = done.started_at.expect("started");
    assert!(started >= due, "started {started}, due {due}");
    assert!(
        started - due < chrono::Duration::seconds(5),
        "started {started}, due {due}: the stager or the fetch loop is late"
    );
}

#[tokio::test]
async fn a_permanent_failure_skips_the_remaining_retries() {
    let app = spawn_app_with(&fast_jobs()).await;
    let id = enqueue_one(&app.state.db, NewJob::of(&RefusedForGood::default())).await;
    let pool = start_pool(&app, 1);
    let failed = wait_for_state(&app.state.db, id, JobState::Failed).await;
    pool.shutdown().await;
    assert_eq!(failed.attempt, 1);
    assert_eq!(
        failed.last_error.as_deref(),
        Some("permanent: card declined")
    );
    app.allow_leftover_jobs();
}

#[tokio::test]
async fn a_uniqueness_key_dedupes_enqueues() {
    let app = spawn_app_with(&fast_jobs()).await;
    let txn = app.state.db.begin_write().await.unwrap();
    let first = jobs::enqueue(
        &txn,
        NewJob::of(&Probe::default()).unique("order:42:process"),
    )
    .await
    .unwrap();
    let second = jobs::enqueue(
        &txn,
        NewJob::of(&Probe::default()).unique("order:42:process"),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    let txn = app.state.db.begin_write().await.unwrap();
    let third = jobs::enqueue(
        &txn,
        NewJob::of(&Probe::default()).unique("order:42:process"),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    assert!(matches!(first, Enqueued::Inserted(_)));
    assert_eq!((second, third), (Enqueued::Duplicate, Enqueued::Duplicate));
    assert_eq!(Jobs::find().count(app.state.db.conn()).await.unwrap(), 1);
    app.allow_leftover_jobs();
}

#[tokio::test]
async fn enqueue_many_writes_a_transactions_jobs_together_dedupes_and_rolls_back_with_it() {
    let app = spawn_app_with(&fast_jobs()).await;
    let db = &app.state.db;
    let txn = db.begin_write().await.unwrap();
    jobs::enqueue_many(&txn, (0..3).map(|_| NewJob::of(&Probe::default())))
        .await
        .unwrap();
    drop(txn); // rolls back
    assert_eq!(Jobs::find().count(db.conn()).await.unwrap(), 0);

    let txn = db.begin_write().await.unwrap();
    let outcome = jobs::enqueue_many(
        &txn,
        [
            NewJob::of(&Probe::default()),
            NewJob::of(&Probe::default()).unique("order:7:process"),
            NewJob::of(&Probe::default()).unique("order:7:process"),
            NewJob::of(&Probe::default()),
        ],
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    assert!(matches!(
        outcome[..],
        [
            Enqueued::Inserted(_),
            Enqueued::Inserted(_),
            Enqueued::Duplicate,
            Enqueued::Inserted(_)
        ]
    ));
    let txn = db.begin_write().await.unwrap();
    let again = jobs::enqueue_many(
        &txn,
        [NewJob::of(&Probe::default()).unique("order:7:process")],
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    assert_eq!(again, vec![Enqueued::Duplicate]);

    let ids: Vec<Uuid> = outcome
        .iter()
        .filter_map(|o| match o {
            Enqueued::Inserted(id) => Some(*id),
            Enqueued::Duplicate => None,
        })
        .collect();
    let pool = start_pool(&app, 2);
    for id in &ids {
        wait_for_state(db, *id, JobState::Succeeded).await;
    }
    pool.shutdown().await;
    let runs = diagnostics::runs_per_job(db.conn()).await.unwrap();
    assert_eq!(runs, ids.iter().map(|id| (*id, 1)).collect());
}

#[tokio::test]
async fn a_batched_completion_writes_only_the_jobs_whose_lease_is_still_held() {
    use jobs::store::Commit::Durable;
    let app = spawn_app_with(&fast_jobs()).await;
    let db = &app.state.db;
    enqueue_probes(db, 3, 0).await;
    let lease = Duration::from_secs(30);
    let (first, second) = (Uuid::new_v4(), Uuid::new_v4());
    let claimed = jobs::store::claim(db, Queue::Maintenance, 3, first, lease)
        .await
        .unwrap()
        .jobs;
    assert_eq!(claimed.len(), 3);
    // The middle job's lease is lost (as the rescuer would take it) and
    // another worker claims its next attempt.
    let lost = &claimed[1];
    assert!(
        jobs::store::retry(db, lost, first, "lease expired", dispatch::db::now())
            .await
            .unwrap()
    );
    let retaken = jobs::store::claim(db, Queue::Maintenance, 3, second, lease)
        .await
        .unwrap()
        .jobs;
    assert_eq!(retaken.len(), 1);
    assert_eq!((retaken[0].id, retaken[0].attempt), (lost.id, 2));

    let batch: Vec<(Uuid, i32)> = claimed.iter().map(|j| (j.id, j.attempt)).collect();
    let done = jobs::store::complete_many(db, first, &batch, Durable)
        .await
        .unwrap();
    assert_eq!(
        done,
        [claimed[0].id, claimed[2].id].into_iter().collect(),
        "the stale worker completes only the jobs it still holds"
    );
    let held = job(db, lost.id).await;
    assert_eq!(
        (held.state, held.lease_owner, held.attempt),
        (JobState::Running, Some(second), 2)
    );
    // The new owner cannot complete with the old attempt either.
    let stale_attempt = jobs::store::complete_many(db, second, &[(lost.id, 1)], Durable)
        .await
        .unwrap();
    assert!(stale_attempt.is_empty());
    let done = jobs::store::complete_many(db, second, &[(lost.id, 2)], Durable)
        .await
        .unwrap();
    assert!(done.contains(&lost.id));
    assert_eq!(count_in_state(db, JobState::Succeeded).await, 3);

    // A job handed back at shutdown does not count the interrupted attempt,
    // so its next owner runs the same attempt number: the owner is part of
    // the fence as well.
    let [handed_back] = enqueue_probes(db, 1, 0).await[..] else {
        panic!("one probe");
    };
    jobs::store::claim(db, Queue::Maintenance, 1, first, lease)
        .await
        .unwrap();
    Jobs::update_many()
        .col_expr(
            job_row::Column::LeaseOwner,
            sea_orm::sea_query::Expr::value(second),
        )
        .filter(job_row::Column::Id.eq(handed_back))
        .exec(db.conn())
        .await
        .unwrap();
    let stale_owner = jobs::store::complete_many(db, first, &[(handed_back, 1)], Durable)
        .await
        .unwrap();
    assert!(stale_owner.is_empty());
    let done = jobs::store::complete_many(db, second, &[(handed_back, 1)], Durable)
        .await
        .unwrap();
    assert!(done.contains(&handed_back));
}

#[tokio::test]
async fn two_schedulers_never_double_fire_a_tick() {
    let app = spawn_app_with(&fast_jobs()).await;
    let periodic = Periodic {
        name: "test.tick",
        every: Duration::from_secs(3600),
        make: || NewJob::of(&Probe::default()),
    };
    let tick = scheduler::tick_of(dispatch::db::now(), periodic.every);
    let firings = (0..8).map(|_| {
        let db = app.state.db.clone();
        let periodic = periodic.clone();
        tokio::spawn(async move { scheduler::fire(&db, &periodic, tick).await.unwrap() })
    });
    let outcomes: Vec<Enqueued> = futures::future::join_all(firings)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    let inserted = outcomes
        .iter()
        .filter(|o| matches!(o, Enqueued::Inserted(_)))
        .count();
    assert_eq!(inserted, 1, "{outcomes:?}");
    assert_eq!(Jobs::find().count(app.state.db.conn()).await.unwrap(), 1);

    // And two running scheduler loops over several ticks write one job per tick.
    let fast = Periodic {
        name: "test.fast_tick",
        every: Duration::from_millis(100),
        make: || NewJob::of(&Probe::default()),
    };
    let stop = tokio_util::sync::CancellationToken::new();
    let loops: Vec<_> = (0..2)
        .map(|_| {
            tokio::spawn(scheduler::run(
                app.state.db.clone(),
                vec![fast.clone()],
                stop.clone(),
            ))
        })
        .collect();
    eventually("a few ticks to fire", WAIT, || async {
        Jobs::find().count(app.state.db.conn()).await.unwrap() >= 6
    })
    .await;
    stop.cancel();
    for handle in loops {
        handle.await.unwrap();
    }
    let keys: Vec<Option<String>> = Jobs::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.unique_key)
        .collect();
    let distinct: std::collections::HashSet<&Option<String>> = keys.iter().collect();
    assert_eq!(distinct.len(), keys.len(), "no tick was enqueued twice");
}

#[tokio::test]
async fn shutdown_drains_running_jobs_and_loses_none() {
    let app = spawn_app_with(&[
        ("JOB_LEASE", "1s"),
        ("JOB_POLL_INTERVAL", "200ms"),
        ("JOB_SHUTDOWN_GRACE", "10s"),
    ])
    .await;
    let ids = enqueue_probes(&app.state.db, 20, 300).await;
    let pool = start_pool(&app, 4);
    eventually("some jobs to start", WAIT, || async {
        count_in_state(&app.state.db, JobState::Running).await > 0
    })
    .await;
    pool.shutdown().await;

    // Nothing is left running: drained jobs succeeded, the rest wait.
    assert_eq!(count_in_state(&app.state.db, JobState::Running).await, 0);
    let succeeded = count_in_state(&app.state.db, JobState::Succeeded).await;
    assert!(succeeded > 0 && succeeded < 20, "drained {succeeded} of 20");

    let next = start_pool(&app, 4);
    eventually("every job to succeed", WAIT, || async {
        count_in_state(&app.state.db, JobState::Succeeded).await == 20
    })
    .await;
    next.shutdown().await;
    let runs = diagnostics::runs_per_job(app.state.db.conn())
        .await
        .unwrap();
    assert!(
        ids.iter().all(|id| runs.get(id) == Some(&1)),
        "each job ran exactly once"
    );
}

#[tokio::test]
async fn a_job_draining_at_shutdown_past_its_lease_keeps_it_and_runs_once() {
    // The grace period is longer than the lease: the draining pool must
    // keep renewing the lease, or another pool's rescuer takes the job
    // while it still runs here and it runs twice.
    let app = spawn_app_with(&[
        ("JOB_LEASE", "1s"),
        ("JOB_POLL_INTERVAL", "200ms"),
        ("JOB_SHUTDOWN_GRACE", "10s"),
    ])
    .await;
    let db = &app.state.db;
    let [id] = enqueue_probes(db, 1, 3_000).await[..] else {
        panic!("one probe");
    };
    let draining = start_pool(&app, 1);
    wait_for_state(db, id, JobState::Running).await;
    let other = start_pool(&app, 1);
    draining.shutdown().await;
    let done = wait_for_state(db, id, JobState::Succeeded).await;
    other.shutdown().await;

    assert_eq!(done.attempt, 1, "never rescued while it drained");
    let runs = diagnostics::runs_per_job(db.conn()).await.unwrap();
    assert_eq!(runs.get(&id), Some(&1), "ran once");
}

#[tokio::test]
async fn notifications_claimed_together_are_recorded_once_each_by_one_batch() {
    use dispatch::notifications::{deliver::Deliver, notification};
    let app = spawn_app_with(&fast_jobs()).await;
    let db = &app.state.db;
    let user = app.register_user().await;
    let deliveries = (0..50).map(|n| {
        NewJob::of(&Deliver {
            user_id: user.id,
            event: dispatch::notifications::event::NotificationEvent::OrderCreated(
                dispatch::notifications::event::OrderSummary {
                    order_id: Uuid::from_u128(n),
                    status: "PENDING".to_owned(),
                    total: dispatch::money::Money::new(
                        1_000,
                        dispatch::money::Currency::parse("usd").unwrap(),
                    ),
                },
            ),
        })
    });
    let txn = db.begin_write().await.unwrap();
    let ids: Vec<Uuid> = jobs::enqueue_many(&txn, deliveries)
        .await
        .unwrap()
        .into_iter()
        .map(|e| match e {
            Enqueued::Inserted(id) => id,
            Enqueued::Duplicate => panic!("no unique key"),
        })
        .collect();
    txn.commit().await.unwrap();

    // Enqueued before the pool starts, so its first claim takes many.
    let pool = start_pool(&app, 16);
    for id in &ids {
        wait_for_state(db, *id, JobState::Succeeded).await;
    }
    pool.shutdown().await;
    let recorded = notification::Entity::find()
        .filter(notification::Column::UserId.eq(user.id))
        .all(db.conn())
        .await
        .unwrap();
    // The registration's own notification may be there too.
    let mut batch: Vec<Uuid> = recorded
        .iter()
        .filter(|n| n.event == "order.created")
        .map(|n| n.id)
        .collect();
    batch.sort();
    let mut expected = ids.clone();
    expected.sort();
    assert_eq!(
        batch, expected,
        "one notification per job, its id the job's"
    );
    for id in &ids {
        assert_eq!(job(db, *id).await.attempt, 1);
    }
    let claims: std::collections::HashSet<_> = {
        let mut started = Vec::new();
        for id in &ids {
            started.push(job(db, *id).await.started_at);
        }
        started.into_iter().collect()
    };
    assert!(
        claims.len() < ids.len(),
        "some jobs were claimed together (one claim, one started_at)"
    );
}

#[tokio::test]
async fn a_job_carries_the_correlation_id_of_the_request_that_caused_it() {
    let app = spawn_app_with(&fast_jobs()).await;
    let id = dispatch::telemetry::CORRELATION_ID
        .scope(
            Arc::from("req-abc-123"),
            enqueue_one(&app.state.db, NewJob::of(&Probe::default())),
        )
        .await;
    assert_eq!(
        job(&app.state.db, id).await.correlation_id.as_deref(),
        Some("req-abc-123")
    );
    app.allow_leftover_jobs();
}

/// Fails for good until its switch is flipped, then succeeds: the shape of a
/// job an operator retries after fixing its cause.
#[derive(Debug, Serialize, Deserialize)]
struct BrokenUntilFixed {
    switch: Uuid,
}

static FIXED: std::sync::LazyLock<std::sync::RwLock<std::collections::HashSet<Uuid>>> =
    std::sync::LazyLock::new(Default::default);

#[async_trait]
impl Job for BrokenUntilFixed {
    const KIND: &'static str = "test.broken_until_fixed";
    const QUEUE: Queue = Queue::Orders;

    async fn run(&self, _ctx: &JobContext) -> Result<(), JobError> {
        if FIXED.read().unwrap().contains(&self.switch) {
            Ok(())
        } else {
            Err(JobError::permanent(
                "the downstream service is misconfigured",
            ))
        }
    }
}

#[tokio::test]
async fn an_admin_retries_a_failed_job_through_the_api_and_it_succeeds() {
    let app = spawn_app_with(&fast_jobs()).await;
    let switch = Uuid::new_v4();
    let id = enqueue_one(&app.state.db, NewJob::of(&BrokenUntilFixed { switch })).await;
    let pool = WorkerPool::start(
        JobServices::from_state(&app.state),
        registry().with::<BrokenUntilFixed>(),
        settings(&app, 2),
    );
    wait_for_state(&app.state.db, id, JobState::Failed).await;

    let admin = app
        .create_user_with_role(dispatch::users::role::Role::Admin)
        .await;
    let shopper = app.register_user().await;
    let listed: serde_json::Value = app
        .get("/api/v1/admin/jobs?state=failed&queue=orders")
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], id.to_string());
    assert_eq!(listed["items"][0]["errors"].as_array().unwrap().len(), 1);
    let refused = app
        .post(&format!("/api/v1/admin/jobs/{id}/retry"))
        .bearer_auth(&shopper.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);

    FIXED.write().unwrap().insert(switch);
    let retried = app
        .post(&format!("/api/v1/admin/jobs/{id}/retry"))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
    let done = wait_for_state(&app.state.db, id, JobState::Succeeded).await;
    assert_eq!(done.attempt, 1, "attempts start afresh");
    assert_eq!(
        done.errors.as_array().unwrap().len(),
        1,
        "the history is kept"
    );

    let again = app
        .post(&format!("/api/v1/admin/jobs/{id}/retry"))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409, "a succeeded job cannot be retried");
    pool.shutdown().await;
}

#[tokio::test]
async fn a_paused_queue_is_not_claimed_until_resumed_and_discarded_jobs_never_run() {
    let app = spawn_app_with(&fast_jobs()).await;
    let admin = app
        .create_user_with_role(dispatch::users::role::Role::Superadmin)
        .await;
    let pause = app
        .post("/api/v1/admin/jobs/queues/maintenance/pause")
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(pause.status(), 204);
    let kept = enqueue_one(&app.state.db, NewJob::of(&Probe::default())).await;
    let dropped = enqueue_one(&app.state.db, NewJob::of(&Probe::default())).await;
    let owner = Uuid::new_v4();
    let claimed = jobs::store::claim(
        &app.state.db,
        Queue::Maintenance,
        10,
        owner,
        Duration::from_secs(5),
    )
    .await
    .unwrap()
    .jobs;
    assert!(claimed.is_empty(), "a paused queue gives nothing");

    let discard = app
        .post(&format!("/api/v1/admin/jobs/{dropped}/discard"))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(discard.status(), 200);
    let stats: serde_json::Value = app
        .get("/api/v1/admin/jobs/queues")
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let maintenance = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["queue"] == "maintenance")
        .unwrap();
    assert_eq!(maintenance["paused"], true);
    assert_eq!(maintenance["counts"]["available"], 1);
    assert_eq!(maintenance["counts"]["discarded"], 1);

    let resume = app
        .post("/api/v1/admin/jobs/queues/maintenance/resume")
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resume.status(), 204);
    let pool = start_pool(&app, 2);
    wait_for_state(&app.state.db, kept, JobState::Succeeded).await;
    pool.shutdown().await;
    assert_eq!(job(&app.state.db, dropped).await.state, JobState::Discarded);
    let runs = diagnostics::runs_per_job(app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(runs, HashMap::from([(kept, 1)]));
}

#[tokio::test]
async fn cleanup_deletes_old_finished_jobs_and_expired_idempotency_records_but_keeps_failed_jobs() {
    use dispatch::jobs::maintenance::Cleanup;
    use sea_orm::sea_query::Expr;

    let app = spawn_app_with(&[("JOB_RETENTION", "1h")]).await;
    let old_done = enqueue_one(&app.state.db, NewJob::of(&Probe::default())).await;
    let old_failed = enqueue_one(&app.state.db, NewJob::of(&Probe::default())).await;
    let recent_done = enqueue_one(&app.state.db, NewJob::of(&Probe::default())).await;
    let finish = |id: Uuid, state: JobState| {
        let db = app.state.db.clone();
        async move {
            let txn = db.begin_write().await.unwrap();
            Jobs::update_many()
                .col_expr(job_row::Column::State, Expr::value(state))
                .col_expr(job_row::Column::FinishedAt, Expr::value(db.now()))
                .filter(job_row::Column::Id.eq(id))
                .exec(&*txn)
                .await
                .unwrap();
            txn.commit().await.unwrap();
        }
    };
    use dispatch::idempotency::record::Entity as Records;
    let admin = app
        .create_user_with_role(dispatch::users::role::Role::Admin)
        .await;

    // Finished jobs and an idempotency record, then a day passes (on the
    // app's clock): past the jobs' retention (1 h) and the record's (24 h).
    finish(old_done, JobState::Succeeded).await;
    finish(old_failed, JobState::Failed).await;
    app.create_item(&admin, "expired", 100, 1).await;
    let expired = Records::find().all(app.state.db.conn()).await.unwrap();
    assert_eq!(expired.len(), 1);
    app.advance_clock(Duration::from_secs(25 * 3600));
    // Then a job finishes and a request leaves a record.
    finish(recent_done, JobState::Succeeded).await;
    app.create_item(&admin, "kept", 100, 1).await;
    let records = Records::find().all(app.state.db.conn()).await.unwrap();
    assert_eq!(records.len(), 2);

    let services = JobServices::from_state(&app.state);
    let ctx = services.context(Uuid::new_v4(), 1, Uuid::new_v4());
    Cleanup::default().run(&ctx).await.unwrap();
    dispatch::idempotency::retention::Cleanup::default()
        .run(&ctx)
        .await
        .unwrap();

    let left: Vec<Uuid> = Jobs::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .map(|j| j.id)
        .collect();
    assert!(!left.contains(&old_done), "an old succeeded job is deleted");
    assert!(
        left.contains(&old_failed),
        "a failed job stays until an operator acts"
    );
    assert!(
        left.contains(&recent_done),
        "a recent succeeded job is kept"
    );
    let records_left: Vec<Uuid> = Records::find()
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let kept: Vec<Uuid> = records
        .iter()
        .map(|r| r.id)
        .filter(|id| *id != expired[0].id)
        .collect();
    assert_eq!(
        records_left, kept,
        "only the expired idempotency record is gone"
    );
    app.allow_leftover_jobs();
}
