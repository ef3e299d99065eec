//! Job queue benchmark: no-op job throughput (enqueue + run) and
//! commit-to-start latency, idle and under load.
//!
//! ```sh
//! cargo bench --bench jobs                                   # SQLite (temporary file)
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench jobs
//! ```
//! With a PostgreSQL URL it creates a database `dispatch_bench_<uuid>` on
//! that server and drops it afterwards. `BENCH_JOBS` (default 20000) and
//! `BENCH_CONCURRENCY` (default 32) tune the run; `BENCH_ENQUEUE=each` makes
//! the producers call `jobs::enqueue` once per job instead of
//! `jobs::enqueue_many` once per transaction. Results are printed as a
//! Markdown table for `docs/benchmarks.md`.

use std::time::{Duration, Instant};

use dispatch::{
    config::Config,
    db::Database,
    jobs::{
        self, NewJob, Queue,
        diagnostics::Noop,
        model::job::{self, Entity as Jobs, JobState},
        registry::JobServices,
        worker::{WorkerPool, WorkerSettings},
    },
};
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    sqlx::{AssertSqlSafe, Connection, Executor, postgres::PgConnection},
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let jobs_total: usize = env_or("BENCH_JOBS", 20_000);
    let concurrency: usize = env_or("BENCH_CONCURRENCY", 32);
    let data_dir = tempfile::tempdir()?;
    let server = std::env::var("BENCH_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"));
    let (url, bench_db) = match &server {
        Some(server) => {
            let name = format!("dispatch_bench_{}", uuid::Uuid::new_v4().simple());
            let mut admin = PgConnection::connect(server).await?;
            admin
                .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await?;
            (
                format!(
                    "{}/{name}",
                    server
                        .rsplit_once('/')
                        .map_or(server.as_str(), |(base, _)| base)
                ),
                Some(name),
            )
        }
        None => (
            format!("sqlite://{}/bench.db", data_dir.path().display()),
            None,
        ),
    };
    let config = Config::from_pairs([
        ("DATABASE_URL", url.clone()),
        ("DATA_DIR", data_dir.path().display().to_string()),
        (
            "JWT_ACCESS_SECRET",
            "bench-access-secret-0123456789abcdef".into(),
        ),
        (
            "JWT_REFRESH_SECRET",
            "bench-refresh-secret-0123456789abcdef".into(),
        ),
        ("ADMIN_PASSWORD", "bench".into()),
        ("DB_MAX_CONNECTIONS", "40".into()),
        ("JOB_POLL_INTERVAL", "1s".into()),
    ])?;
    let backend = if server.is_some() {
        "PostgreSQL 15"
    } else {
        "SQLite (WAL)"
    };
    let state = dispatch::startup::build_state(config.clone()).await?;
    let db = state.db.clone();

    // 1. Throughput: producers enqueue while the workers drain.
    let pool = start_pool(&state, concurrency);
    let started = Instant::now();
    let producers = 4;
    let per_producer = jobs_total / producers;
    let mut tasks = Vec::new();
    for _ in 0..producers {
        let db = db.clone();
        tasks.push(tokio::spawn(async move {
            enqueue_batches(&db, per_producer, 100).await
        }));
    }
    for task in tasks {
        task.await??;
    }
    let enqueued_after = started.elapsed();
    let total = (per_producer * producers) as u64;
    wait_until_succeeded(&db, total).await?;
    let drained_after = started.elapsed();
    let throughput = total as f64 / drained_after.as_secs_f64();
    let enqueue_rate = total as f64 / enqueued_after.as_secs_f64();
    let loaded = latencies(&db).await?;
    pool.shutdown().await;
    clear(&db).await?;

    // 2. Idle latency: one job at a time, the workers waiting.
    let pool = start_pool(&state, concurrency);
    tokio::time::sleep(Duration::from_millis(500)).await;
    for _ in 0..300 {
        enqueue_batches(&db, 1, 1).await?;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    wait_until_succeeded(&db, 300).await?;
    let idle = latencies(&db).await?;
    pool.shutdown().await;
    clear(&db).await?;

    // 3. Latency under a steady load of ~half the measured throughput.
    let pool = start_pool(&state, concurrency);
    let rate = (throughput / 2.0).max(100.0);
    let per_tick = ((rate / 100.0).round() as usize).max(1);
    let ticks = 500; // 5 s of 10 ms ticks
    let mut interval = tokio::time::interval(Duration::from_millis(10));
    for _ in 0..ticks {
        interval.tick().await;
        enqueue_batches(&db, per_tick, per_tick).await?;
    }
    wait_until_succeeded(&db, (per_tick * ticks) as u64).await?;
    let steady = latencies(&db).await?;
    pool.shutdown().await;

    println!("\n### Job queue on {backend} ({concurrency} workers, {total} no-op jobs)\n");
    println!("| measure | value |");
    println!("|---|---|");
    let enqueue_call = if one_by_one() {
        "`enqueue` per job"
    } else {
        "`enqueue_many`"
    };
    println!(
        "| enqueue rate (4 producers, 100 per transaction, {enqueue_call}) | {enqueue_rate:.0} jobs/s |"
    );
    println!("| throughput, enqueue + run, end to end | {throughput:.0} jobs/s |");
    println!(
        "| commit-to-start p50 / p99, idle | {:.1} ms / {:.1} ms |",
        idle.0, idle.1
    );
    println!(
        "| commit-to-start p50 / p99, steady load of {:.0} jobs/s | {:.1} ms / {:.1} ms |",
        per_tick as f64 * 100.0,
        steady.0,
        steady.1
    );
    println!(
        "| enqueue-to-start p50 / p99 during the throughput run (includes queueing) | {:.1} ms / {:.1} ms |",
        loaded.0, loaded.1
    );

    state.db.clone().close().await;
    if let (Some(server), Some(name)) = (server, bench_db) {
        let mut admin = PgConnection::connect(&server).await?;
        admin
            .execute(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await?;
    }
    Ok(())
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `BENCH_ENQUEUE=each` enqueues with one `jobs::enqueue` call per job (the
/// path of handlers that enqueue one job); by default a transaction's jobs go
/// through one `jobs::enqueue_many` call.
fn one_by_one() -> bool {
    std::env::var("BENCH_ENQUEUE").is_ok_and(|v| v == "each")
}

fn start_pool(state: &dispatch::state::AppState, concurrency: usize) -> WorkerPool {
    let mut settings = WorkerSettings::from_config(&state.config);
    for queue in Queue::ALL {
        settings.concurrency.insert(
            queue,
            if queue == Queue::Maintenance {
                concurrency
            } else {
                0
            },
        );
    }
    WorkerPool::start(
        JobServices::from_state(state),
        dispatch::startup::job_registry(),
        settings,
    )
}

async fn enqueue_batches(
    db: &Database,
    count: usize,
    per_transaction: usize,
) -> anyhow::Result<()> {
    let mut left = count;
    while left > 0 {
        let batch = left.min(per_transaction);
        let txn = db.begin_write().await?;
        if one_by_one() {
            for _ in 0..batch {
                jobs::enqueue(&txn, NewJob::of(&Noop::default())).await?;
            }
        } else {
            jobs::enqueue_many(&txn, (0..batch).map(|_| NewJob::of(&Noop::default()))).await?;
        }
        txn.commit().await?;
        left -= batch;
    }
    Ok(())
}

async fn wait_until_succeeded(db: &Database, expected: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = Jobs::find()
            .filter(job::Column::State.eq(JobState::Succeeded))
            .count(db.conn())
            .await?;
        if done >= expected {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "only {done} of {expected} jobs finished"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// p50 and p99 of `started_at - created_at`, in milliseconds. `created_at`
/// is taken just before the enqueuing transaction commits, so this is
/// commit-to-start plus the commit itself.
async fn latencies(db: &Database) -> anyhow::Result<(f64, f64)> {
    let rows = Jobs::find()
        .filter(job::Column::State.eq(JobState::Succeeded))
        .all(db.conn())
        .await?;
    let mut millis: Vec<f64> = rows
        .iter()
        .filter_map(|j| {
            j.started_at
                .map(|s| (s - j.created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        })
        .collect();
    millis.sort_by(f64::total_cmp);
    let at = |q: f64| {
        millis
            .get(((millis.len() as f64 - 1.0) * q).round() as usize)
            .copied()
            .unwrap_or(0.0)
    };
    Ok((at(0.5), at(0.99)))
}

async fn clear(db: &Database) -> anyhow::Result<()> {
    let txn = db.begin_write().await?;
    Jobs::delete_many().exec(&*txn).await?;
    txn.commit().await?;
    Ok(())
}
