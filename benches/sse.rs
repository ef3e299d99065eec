//! Notification stream benchmark (issue 5): one API process holding
//! `BENCH_CONNECTIONS` (default 1 000) concurrent Server-Sent Events streams,
//! its memory, and the time one notification takes to reach all of them.
//!
//! ```sh
//! cargo bench --bench sse                                                              # SQLite
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench sse  # PostgreSQL
//! ```
//!
//! The server runs as a child process (the `dispatch` binary), so its RSS is
//! its own:
//! - SQLite: one `dispatch serve` (role `all`), a temporary database file.
//!   The job that records a notification runs in that same process, as it
//!   must on SQLite (one process; its hub hears of the notification after
//!   the job commits);
//! - PostgreSQL: a database `dispatch_bench_<uuid>` on that server (dropped
//!   afterwards), one `dispatch serve --role api` holding the streams and
//!   one `dispatch serve --role worker` running the job, so the notification
//!   crosses processes through `pg_notify`, as in production.
//!
//! `BENCH_REDIS_URL` gives both processes Redis (sessions, caches).
//!
//! It registers one user, signs in, and opens `BENCH_CONNECTIONS` streams
//! of that user from this process (one HTTP/1.1 connection and one task
//! each, `BENCH_OPEN_CONCURRENCY` (default 64) being opened at a time); a
//! stream counts as open when its `200 text/event-stream` headers arrive
//! (the server subscribes it before answering). It reads the API process's
//! VmRSS before and after, then `BENCH_NOTIFICATIONS` times (default 5),
//! `BENCH_INTERVAL_MS` (default 1 000) apart: enqueues a
//! `notification.deliver` job for the user from this process's own database
//! connection, notes the time just before the commit, and records when each
//! stream receives the event. Figures are taken from the notification's
//! `created_at` (set by the job just before it inserts and commits the row:
//! the fan-out) and from the enqueuing commit (adds the job's pick-up: on
//! SQLite the worker polls, `JOB_POLL_INTERVAL` 1 s, since this process's
//! commit cannot wake it). At the end every stream must have received every
//! notification exactly once.
//!
//! Needs a file-descriptor limit above the number of streams (the server
//! inherits this process's): `ulimit -n 4096` if `ulimit -n` says 1024.
//! `BENCH_DB_MAX_CONNECTIONS` sets the server's pool (default 16, the
//! service's default).

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use dispatch::{
    config::Config,
    db::Database,
    jobs::{
        self, Enqueued, Job, NewJob,
        model::job::{self as job_row, Entity as Jobs, JobState},
    },
    notifications::{
        deliver::Deliver,
        event::{NotificationEvent, OrderSummary},
        notification,
    },
};
use reqwest::Client;
use sea_orm::{
    ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
    sqlx::{AssertSqlSafe, Connection, Executor, postgres::PgConnection},
};
use serde_json::{Value, json};
use tokio::{
    process::{Child, Command},
    sync::{Semaphore, mpsc},
};
use uuid::Uuid;

const PASSWORD: &str = "bench-password-0123";
/// How long one notification may take to reach every stream.
const DELIVERY_LIMIT: Duration = Duration::from_secs(60);
/// Linux's `USER_HZ`: the unit of utime/stime in `/proc/<pid>/stat`.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Settings::from_env();
    check_file_limit(settings.connections)?;
    let data_dir = tempfile::tempdir()?;
    let server = std::env::var("BENCH_DATABASE_URL")
        .ok()
        .filter(|u| u.starts_with("postgres"));
    let redis = std::env::var("BENCH_REDIS_URL")
        .ok()
        .filter(|u| !u.is_empty());
    let redis_prefix = format!("bench:{}:", Uuid::new_v4().simple());
    let (url, bench_db) = match &server {
        Some(server) => {
            let name = format!("dispatch_bench_{}", Uuid::new_v4().simple());
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
    let setup = Setup {
        settings,
        url,
        data_dir: data_dir.path().to_owned(),
        postgres: server.is_some(),
        redis: redis.clone().map(|url| (url, redis_prefix.clone())),
    };
    let result = run(&setup).await;

    if let (Some(server), Some(name)) = (&server, &bench_db) {
        let mut admin = PgConnection::connect(server).await?;
        admin
            .execute(AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .await?;
    }
    if let Some(url) = &redis
        && let Err(e) = clear_redis(url, &redis_prefix).await
    {
        eprintln!("could not remove the bench's Redis keys ({redis_prefix}*): {e}");
    }
    result
}

struct Settings {
    connections: usize,
    notifications: usize,
    interval: Duration,
    open_concurrency: usize,
    db_max_connections: usize,
}

impl Settings {
    fn from_env() -> Self {
        Self {
            connections: env_or("BENCH_CONNECTIONS", 1_000).max(1),
            notifications: env_or("BENCH_NOTIFICATIONS", 5).max(1),
            interval: Duration::from_millis(env_or("BENCH_INTERVAL_MS", 1_000) as u64),
            open_concurrency: env_or("BENCH_OPEN_CONCURRENCY", 64).max(1),
            db_max_connections: env_or("BENCH_DB_MAX_CONNECTIONS", 16).max(1),
        }
    }
}

struct Setup {
    settings: Settings,
    url: String,
    data_dir: PathBuf,
    postgres: bool,
    redis: Option<(String, String)>,
}

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Refuses to start when this process (and so the server, which inherits
/// the limit) cannot open a socket per stream.
fn check_file_limit(connections: usize) -> anyhow::Result<()> {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(soft) = soft
        && soft < connections + 200
    {
        bail!(
            "the open-file limit is {soft}, too low for {connections} streams: run `ulimit -n {}` first",
            (connections + 200).next_power_of_two()
        );
    }
    Ok(())
}

async fn run(setup: &Setup) -> anyhow::Result<()> {
    let port = free_port()?;
    let base = format!("http://127.0.0.1:{port}");
    let http = Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()?;

    let mut api = spawn_server(setup, if setup.postgres { "api" } else { "all" }, port)?;
    let api_pid = api.id().context("the API process has no pid")?;
    let ready = wait_ready(&http, &base, &mut api).await;
    let mut worker = match (&ready, setup.postgres) {
        (Ok(()), true) => Some(spawn_server(setup, "worker", free_port()?)?),
        _ => None,
    };
    let result = match ready {
        Ok(()) => measure(setup, &http, &base, api_pid).await,
        Err(e) => Err(e),
    };
    let _ = api.kill().await;
    if let Some(worker) = &mut worker {
        let _ = worker.kill().await;
    }
    report_logs(&setup.data_dir);
    result
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?.port())
}

fn spawn_server(setup: &Setup, role: &str, port: u16) -> anyhow::Result<Child> {
    let log = std::fs::File::create(setup.data_dir.join(format!("{role}.log")))?;
    let mut command = Command::new(env!("CARGO_BIN_EXE_dispatch"));
    command
        .args(["serve", "--role", role])
        .env_clear()
        .current_dir(&setup.data_dir)
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &setup.url)
        .env("DATA_DIR", &setup.data_dir)
        .env("BIND_ADDR", format!("127.0.0.1:{port}"))
        .env("JWT_ACCESS_SECRET", "bench-access-secret-0123456789abcdef")
        .env(
            "JWT_REFRESH_SECRET",
            "bench-refresh-secret-0123456789abcdef",
        )
        .env("ADMIN_PASSWORD", "bench")
        .env("SEED_DEMO_DATA", "false")
        // One user's streams are the point here: the per-user and
        // per-process stream caps (and the connection cap) make room for
        // them, as a deployment sized for this load would.
        .env("SSE_MAX_PER_USER", setup.settings.connections.to_string())
        .env("SSE_MAX_STREAMS", setup.settings.connections.to_string())
        .env(
            "HTTP_MAX_CONNECTIONS",
            (setup.settings.connections + 256).to_string(),
        )
        .env("RATE_LIMIT_LOGIN", "off")
        .env("RATE_LIMIT_LOGIN_ADDRESS", "off")
        .env("RATE_LIMIT_REGISTER", "off")
        .env("RATE_LIMIT_ORDERS", "off")
        .env("PASSWORD_HASH_MEMORY_KIB", "64")
        .env(
            "DB_MAX_CONNECTIONS",
            setup.settings.db_max_connections.to_string(),
        )
        .env("LOG_LEVEL", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::from(log.try_clone()?))
        .stderr(Stdio::from(log))
        .kill_on_drop(true);
    if let Some((url, prefix)) = &setup.redis {
        command
            .env("REDIS_URL", url)
            .env("REDIS_KEY_PREFIX", prefix);
    }
    command
        .spawn()
        .with_context(|| format!("starting `dispatch serve --role {role}`"))
}

async fn wait_ready(http: &Client, base: &str, api: &mut Child) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(status) = api.try_wait()? {
            bail!("the API process exited ({status}) before it was ready");
        }
        if let Ok(response) = http.get(format!("{base}/health/ready")).send().await
            && response.status().is_success()
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("the API process was not ready within 2 minutes");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Prints the warnings and errors the servers logged (none is expected).
fn report_logs(dir: &Path) {
    for role in ["all", "api", "worker"] {
        let Ok(text) = std::fs::read_to_string(dir.join(format!("{role}.log"))) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        if lines.is_empty() {
            continue;
        }
        eprintln!(
            "\n`{role}` process logged {} line(s) at warn or above; the first ones:",
            lines.len()
        );
        for line in lines.iter().take(10) {
            eprintln!("  {line}");
        }
    }
}

struct User {
    id: Uuid,
    token: String,
}

async fn sign_up(http: &Client, base: &str) -> anyhow::Result<User> {
    let email = format!("sse-bench-{}@example.com", Uuid::new_v4().simple());
    let response = http
        .post(format!("{base}/api/v1/users"))
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&json!({"name": "Stream Bench", "email": email, "password": PASSWORD}))
        .send()
        .await?;
    if response.status() != 201 {
        bail!(
            "registration: {} {}",
            response.status(),
            response.text().await.unwrap_or_default()
        );
    }
    let response = http
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await?;
    if response.status() != 200 {
        bail!("login: {}", response.status());
    }
    let body: Value = response.json().await?;
    Ok(User {
        id: body["userId"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .context("userId")?,
        token: body["accessToken"]
            .as_str()
            .context("accessToken")?
            .to_owned(),
    })
}

/// What a stream task tells the collector.
enum Report {
    Opened,
    Refused(String),
    Notification {
        stream: usize,
        id: Uuid,
        at: Instant,
        wall: DateTime<Utc>,
    },
    Ended(String),
}

/// Deliveries of one notification.
struct Delivery {
    /// Times received, per stream.
    received: Vec<u32>,
    /// The first arrival on each stream.
    first: Vec<Option<(Instant, DateTime<Utc>)>>,
    /// Streams that received it at least once.
    reached: usize,
}

#[derive(Default)]
struct Tally {
    opened: usize,
    refused: Vec<String>,
    ended: Vec<String>,
    deliveries: HashMap<Uuid, Delivery>,
    unexpected: usize,
}

impl Tally {
    fn expect(&mut self, id: Uuid, streams: usize) {
        self.deliveries.insert(
            id,
            Delivery {
                received: vec![0; streams],
                first: vec![None; streams],
                reached: 0,
            },
        );
    }

    fn absorb(&mut self, report: Report) {
        match report {
            Report::Opened => self.opened += 1,
            Report::Refused(why) => self.refused.push(why),
            Report::Ended(why) => self.ended.push(why),
            Report::Notification {
                stream,
                id,
                at,
                wall,
            } => match self.deliveries.get_mut(&id) {
                Some(delivery) => {
                    delivery.received[stream] += 1;
                    if delivery.first[stream].is_none() {
                        delivery.first[stream] = Some((at, wall));
                        delivery.reached += 1;
                    }
                }
                None => self.unexpected += 1,
            },
        }
    }
}

/// One stream: opens it, then reports every notification it reads until
/// it ends.
async fn stream_task(
    client: Client,
    url: String,
    token: Arc<str>,
    stream: usize,
    gate: Arc<Semaphore>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let permit = gate.acquire_owned().await;
    let response = client.get(&url).bearer_auth(&*token).send().await;
    drop(permit);
    let mut response = match response {
        Ok(r)
            if r.status() == 200
                && r.headers()
                    .get("content-type")
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.starts_with("text/event-stream")) =>
        {
            r
        }
        Ok(r) => {
            let _ = reports.send(Report::Refused(format!("HTTP {}", r.status())));
            return;
        }
        Err(e) => {
            let _ = reports.send(Report::Refused(e.to_string()));
            return;
        }
    };
    let _ = reports.send(Report::Opened);
    let mut buffer = String::new();
    loop {
        let chunk = response.chunk().await;
        let (at, wall) = (Instant::now(), dispatch::db::now());
        match chunk {
            Ok(Some(bytes)) => buffer.push_str(&String::from_utf8_lossy(&bytes)),
            Ok(None) => {
                let _ = reports.send(Report::Ended("closed by the server".into()));
                return;
            }
            Err(e) => {
                let _ = reports.send(Report::Ended(e.to_string()));
                return;
            }
        }
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut notification = false;
            let mut id = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event:") {
                    notification = v.trim() == "notification";
                } else if let Some(v) = line.strip_prefix("id:") {
                    id = Uuid::parse_str(v.trim()).ok();
                }
            }
            if notification && let Some(id) = id {
                let _ = reports.send(Report::Notification {
                    stream,
                    id,
                    at,
                    wall,
                });
            }
        }
    }
}

/// One notification's figures, in milliseconds.
struct Fanout {
    commit_to_all: f64,
    first: f64,
    p50: f64,
    p99: f64,
    all: f64,
    reached: usize,
    cpu_ms: f64,
}

async fn measure(setup: &Setup, http: &Client, base: &str, api_pid: u32) -> anyhow::Result<()> {
    let settings = &setup.settings;
    let n = settings.connections;
    let rss_started = rss_kib(api_pid)?;
    let user = sign_up(http, base).await?;

    let config = Config::from_pairs([
        ("DATABASE_URL", setup.url.clone()),
        ("DATA_DIR", setup.data_dir.display().to_string()),
        (
            "JWT_ACCESS_SECRET",
            "bench-access-secret-0123456789abcdef".into(),
        ),
        (
            "JWT_REFRESH_SECRET",
            "bench-refresh-secret-0123456789abcdef".into(),
        ),
        ("ADMIN_PASSWORD", "bench".into()),
        ("DB_MAX_CONNECTIONS", "2".into()),
    ])?;
    let db = Database::connect(&config).await?;
    // The sign-in's own notification (and, on PostgreSQL, proof that the
    // worker process runs): wait until no delivery is pending.
    wait_deliveries_done(&db).await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_kib(api_pid)?;
    let fds_idle = open_files(api_pid);

    // Open the streams.
    let (reports, mut inbox) = mpsc::unbounded_channel();
    let client = Client::builder()
        .connect_timeout(Duration::from_secs(10))
        // Keep-alive comments come every 15 s (SSE_KEEP_ALIVE); no total
        // timeout, the streams last the whole run.
        .read_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(0)
        .build()?;
    let url = format!("{base}/api/v1/notifications/stream");
    let token: Arc<str> = Arc::from(user.token.as_str());
    let gate = Arc::new(Semaphore::new(settings.open_concurrency));
    let mut tally = Tally::default();
    let opening = Instant::now();
    let mut tasks = Vec::with_capacity(n);
    for stream in 0..n {
        tasks.push(tokio::spawn(stream_task(
            client.clone(),
            url.clone(),
            Arc::clone(&token),
            stream,
            Arc::clone(&gate),
            reports.clone(),
        )));
    }
    drop(reports);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tally.opened + tally.refused.len() < n {
        match tokio::time::timeout_at(deadline, inbox.recv()).await {
            Ok(Some(report)) => tally.absorb(report),
            Ok(None) | Err(_) => break,
        }
    }
    let open_time = opening.elapsed();
    if tally.opened < n {
        bail!(
            "only {} of {n} streams opened in {open_time:?}; first refusals: {:?}",
            tally.opened,
            tally.refused.iter().take(5).collect::<Vec<_>>()
        );
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_open = rss_kib(api_pid)?;
    let fds_open = open_files(api_pid);

    // Notifications, one at a time.
    let usd = dispatch::money::Currency::parse("usd")?;
    let mut fanouts = Vec::new();
    let mut ids = Vec::new();
    for round in 0..settings.notifications {
        let deliver = Deliver {
            user_id: user.id,
            event: NotificationEvent::OrderShipped(OrderSummary {
                order_id: Uuid::new_v4(),
                status: "SHIPPED".to_owned(),
                total: dispatch::money::Money::new(1_000, usd),
            }),
        };
        let txn = db.begin_write().await?;
        let Enqueued::Inserted(id) = jobs::enqueue(&txn, NewJob::of(&deliver)).await? else {
            bail!("the delivery job was not enqueued");
        };
        tally.expect(id, n);
        ids.push(id);
        let cpu_before = cpu_ticks(api_pid)?;
        let committed = Instant::now();
        txn.commit().await?;
        let deadline = tokio::time::Instant::now() + DELIVERY_LIMIT;
        while tally.deliveries.get(&id).is_some_and(|d| d.reached < n) {
            match tokio::time::timeout_at(deadline, inbox.recv()).await {
                Ok(Some(report)) => tally.absorb(report),
                Ok(None) | Err(_) => break,
            }
        }
        let cpu_ms = (cpu_ticks(api_pid)? - cpu_before) as f64 * 1000.0 / CLOCK_TICKS_PER_SECOND;
        let row = notification::Entity::find_by_id(id)
            .one(db.conn())
            .await?
            .with_context(|| format!("notification {round} was not recorded"))?;
        let delivery = &tally.deliveries[&id];
        fanouts.push(fanout(delivery, committed, row.created_at, cpu_ms));
        if delivery.reached < n {
            eprintln!(
                "notification {round} reached {} of {n} streams within {DELIVERY_LIMIT:?}",
                delivery.reached
            );
        }
        tokio::time::sleep(settings.interval).await;
    }
    // Anything late or twice arrives now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    while let Ok(report) = inbox.try_recv() {
        tally.absorb(report);
    }
    let rss_after = rss_kib(api_pid)?;
    let (session_hits, session_misses) = session_cache(http, base).await;
    let streamed_for = opening.elapsed();
    for task in &tasks {
        task.abort();
    }

    let (mut once, mut missing, mut duplicates) = (0_usize, 0_usize, 0_usize);
    for id in &ids {
        for &count in &tally.deliveries[id].received {
            match count {
                0 => missing += 1,
                1 => once += 1,
                more => duplicates += (more - 1) as usize,
            }
        }
    }
    let backend = if setup.postgres {
        "PostgreSQL, `--role api` + `--role worker`"
    } else {
        "SQLite, one `--role all` process"
    };
    let redis = if setup.redis.is_some() { ", Redis" } else { "" };
    let k = settings.notifications;
    let mib = |kib: u64| kib as f64 / 1024.0;
    let median = |pick: fn(&Fanout) -> f64| {
        let mut values: Vec<f64> = fanouts.iter().map(pick).collect();
        percentile(&mut values, 0.5)
    };

    println!(
        "\n### Notification stream on {backend}{redis}: {n} streams of one user, {k} notifications\n"
    );
    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| API process RSS: started / signed in, idle / {n} streams open / after the notifications | {:.1} / {:.1} / **{:.1}** / {:.1} MiB |",
        mib(rss_started),
        mib(rss_idle),
        mib(rss_open),
        mib(rss_after)
    );
    println!(
        "| RSS per open stream | **{:.1} KiB** |",
        rss_open.saturating_sub(rss_idle) as f64 / n as f64
    );
    println!(
        "| open file descriptors of the API process, idle / streams open | {} / {} |",
        show(fds_idle),
        show(fds_open)
    );
    println!(
        "| time to open the {n} streams ({} at a time) | {:.2} s |",
        settings.open_concurrency,
        open_time.as_secs_f64()
    );
    println!(
        "| recorded → first / p50 / p99 / **all** streams (median of {k}) | {:.1} / {:.1} / {:.1} / **{:.1} ms** |",
        median(|f| f.first),
        median(|f| f.p50),
        median(|f| f.p99),
        median(|f| f.all)
    );
    println!(
        "| recorded → all streams, slowest of {k} | {:.1} ms |",
        fanouts.iter().map(|f| f.all).fold(0.0, f64::max)
    );
    println!(
        "| enqueue commit → all streams (median of {k}; includes the job's pick-up) | {:.1} ms |",
        median(|f| f.commit_to_all)
    );
    println!(
        "| API process CPU per notification (median of {k}; 10 ms ticks) | {:.0} ms |",
        median(|f| f.cpu_ms)
    );
    println!(
        "| session checks of the streams over {:.0} s (one per stream per `SSE_KEEP_ALIVE`, 15 s), session cache hits / misses | {} / {} |",
        streamed_for.as_secs_f64(),
        show(session_hits),
        show(session_misses)
    );
    println!(
        "| deliveries | {once} of {} exactly once; {missing} missing, {duplicates} duplicated, {} other events, {} streams ended early |",
        n * k,
        tally.unexpected,
        tally.ended.len()
    );
    println!("\nPer notification (ms):\n");
    println!(
        "| # | enqueue commit → all | recorded → first | p50 | p99 | all | reached | API CPU |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (i, f) in fanouts.iter().enumerate() {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {}/{n} | {:.0} |",
            i + 1,
            f.commit_to_all,
            f.first,
            f.p50,
            f.p99,
            f.all,
            f.reached,
            f.cpu_ms
        );
    }
    if let Some(why) = tally.ended.first() {
        eprintln!("{} stream(s) ended early, e.g.: {why}", tally.ended.len());
    }
    db.close().await;
    if missing > 0 || duplicates > 0 || !tally.ended.is_empty() {
        bail!("delivery check failed: {missing} missing, {duplicates} duplicated");
    }
    Ok(())
}

fn fanout(
    delivery: &Delivery,
    committed: Instant,
    created_at: DateTime<Utc>,
    cpu_ms: f64,
) -> Fanout {
    let arrived: Vec<(Instant, DateTime<Utc>)> = delivery.first.iter().flatten().copied().collect();
    let mut from_record: Vec<f64> = arrived
        .iter()
        .map(|(_, wall)| (*wall - created_at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        .collect();
    let commit_to_all = arrived
        .iter()
        .map(|(at, _)| at.saturating_duration_since(committed).as_secs_f64() * 1000.0)
        .fold(0.0, f64::max);
    Fanout {
        commit_to_all,
        first: percentile(&mut from_record, 0.0),
        p50: percentile(&mut from_record, 0.5),
        p99: percentile(&mut from_record, 0.99),
        all: percentile(&mut from_record, 1.0),
        reached: delivery.reached,
        cpu_ms,
    }
}

fn percentile(values: &mut [f64], q: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values
        .get(((values.len() as f64 - 1.0) * q).round() as usize)
        .copied()
        .unwrap_or(f64::NAN)
}

/// Hits and misses of the session cache, from the API's `/metrics`
/// (counts every authentication: the sign-in, each stream's opening and
/// its periodic session checks).
async fn session_cache(http: &Client, base: &str) -> (Option<usize>, Option<usize>) {
    let Ok(response) = http.get(format!("{base}/metrics")).send().await else {
        return (None, None);
    };
    let Ok(text) = response.text().await else {
        return (None, None);
    };
    let count = |result: &str| -> Option<usize> {
        let lines: Vec<f64> = text
            .lines()
            .filter(|l| {
                l.starts_with("cache_requests_total{")
                    && l.contains("namespace=\"sessions:")
                    && l.contains(&format!("result=\"{result}\""))
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
            .collect();
        Some(lines.iter().sum::<f64>() as usize)
    };
    (count("hit"), count("miss"))
}

fn show(value: Option<usize>) -> String {
    value.map_or_else(|| "?".into(), |v| v.to_string())
}

/// Waits until no `notification.deliver` job is waiting or running.
async fn wait_deliveries_done(db: &Database) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let pending = Jobs::find()
            .filter(job_row::Column::Kind.eq(Deliver::KIND))
            .filter(job_row::Column::State.is_in([
                JobState::Scheduled,
                JobState::Available,
                JobState::Running,
            ]))
            .count(db.conn())
            .await?;
        if pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{pending} notification job(s) still pending after a minute: is a worker running?"
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// VmRSS of `pid`, in KiB.
fn rss_kib(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS line")
}

/// utime + stime of `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    // After the command name: state is field 3, utime 14, stime 15.
    let field = |i: usize| -> anyhow::Result<u64> {
        Ok(fields.get(i).context("short /proc/<pid>/stat")?.parse()?)
    };
    Ok(field(11)? + field(12)?)
}

fn open_files(pid: u32) -> Option<usize> {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()
        .map(Iterator::count)
}

/// Removes the keys the servers wrote under `prefix`.
async fn clear_redis(url: &str, prefix: &str) -> anyhow::Result<()> {
    let client = redis::Client::open(url)?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await?;
    if !keys.is_empty() {
        let _: () = redis::cmd("DEL").arg(keys).query_async(&mut conn).await?;
    }
    Ok(())
}
