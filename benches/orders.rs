//! Checkout benchmark (issue 4): `POST /api/v1/orders` throughput and
//! latency on PostgreSQL with the simulated gateway, beside `pgbench`
//! running the same SQL on the same database (the ceiling), and the
//! webhook-to-PROCESSED latency at a moderate rate.
//!
//! ```sh
//! BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench --bench orders
//! ```
//!
//! It creates a database `dispatch_bench_<uuid>` on that server (dropped at
//! the end, also after an error), starts Dispatch in-process on
//! 127.0.0.1:0 with its job workers, creates `BENCH_USERS` shoppers and
//! `BENCH_ITEMS` items with stock that never runs out, then for each
//! concurrency of `BENCH_CONCURRENCY`:
//!
//! 1. N HTTP clients (one keep-alive connection and one shopper each) place
//!    orders back to back for `BENCH_WARMUP` + `BENCH_DURATION`; only the
//!    answers that arrive in the measured window count;
//! 2. with the workers stopped, `pgbench -c N` runs `benches/pgbench/checkout.sql`
//!    (the statements one checkout sends, same order, same transactions)
//!    for `BENCH_DURATION`: its orders per second are the ceiling.
//!
//! Then it places `BENCH_WEBHOOK_RATE × BENCH_WEBHOOK_SECONDS` orders, sends
//! each its signed `payment_intent.succeeded` at that rate, and measures
//! from just before the send to the `order_events` row that records
//! PROCESSED.
//!
//! Orders have 1 to 3 lines (equally likely) of 1 to 3 units each. Items
//! are numbered 1..=3·S (S = `BENCH_ITEMS` / 3): the first line's item is
//! uniform in 1..=S, each next one is the previous plus 1..=S, so the lines
//! are distinct and spread over the catalogue (no single hot row); pgbench
//! draws them the same way.
//!
//! Other settings: `BENCH_DB_MAX_CONNECTIONS` (pool size, default 32),
//! `BENCH_WORKERS=off` (no job workers during the checkout runs, to see
//! their share; the webhook part is then skipped), `BENCH_PGBENCH` (path,
//! default `pgbench`), `BENCH_PGBENCH_SCRIPT` (another script for the
//! ceiling, e.g. to price an extra round trip), `BENCH_REDIS_URL` (use Redis for cache and limits),
//! `BENCH_LOG_STATEMENTS=1` (log every statement of this database in the
//! server log, place one order, then 20 with the workers running, and stop:
//! how the pgbench script was written).

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use dispatch::{
    catalog::item,
    config::Config,
    jobs::model::job::{self, JobState},
    orders::{model::order_event, status::OrderStatus},
    payments::model::payment,
    startup::{self, Workers},
    state::AppState,
    users::{email::Email, language::Language, role::Role, user},
};
use futures::FutureExt;
use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::Client;
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, PaginatorTrait, QueryFilter, Statement,
    sqlx::{AssertSqlSafe, Connection, Executor, postgres::PgConnection},
};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

const PASSWORD: &str = "bench password 0123";
const WEBHOOK_SECRET: &str = "whsec_bench_0123456789abcdef";
/// The pgbench script of one checkout, next to this file.
const PGBENCH_SCRIPT: &str = "benches/pgbench/checkout.sql";
/// First part of the ids of the rows the bench creates itself, so that the
/// pgbench script can name them from numbers (see `bench_id`).
const KIND_ITEM: u32 = 0xa;
const KIND_USER: u32 = 0xb;

struct Settings {
    server: String,
    duration: Duration,
    warmup: Duration,
    concurrencies: Vec<usize>,
    users: usize,
    span: usize,
    pool: u32,
    workers: bool,
    webhook_rate: u32,
    webhook_seconds: u32,
    pgbench: String,
    pgbench_script: PathBuf,
    redis: Option<String>,
    log_statements: bool,
}

impl Settings {
    fn from_env() -> anyhow::Result<Self> {
        let Some(server) = std::env::var("BENCH_DATABASE_URL")
            .ok()
            .filter(|u| u.starts_with("postgres"))
        else {
            bail!(
                "this benchmark needs PostgreSQL: BENCH_DATABASE_URL=postgres://postgres@127.0.0.1:5432/postgres"
            );
        };
        let concurrencies = std::env::var("BENCH_CONCURRENCY")
            .unwrap_or_else(|_| "16,64".into())
            .split(',')
            .map(|c| c.trim().parse::<usize>())
            .collect::<Result<Vec<_>, _>>()
            .context("BENCH_CONCURRENCY: comma-separated numbers")?;
        let max_clients = concurrencies.iter().copied().max().unwrap_or(1);
        Ok(Self {
            server,
            duration: Duration::from_secs(env_or("BENCH_DURATION", 15)),
            warmup: Duration::from_secs(env_or("BENCH_WARMUP", 3)),
            users: env_or("BENCH_USERS", 64).max(max_clients),
            span: (env_or("BENCH_ITEMS", 300) / 3).max(1),
            pool: env_or("BENCH_DB_MAX_CONNECTIONS", 32),
            concurrencies,
            workers: std::env::var("BENCH_WORKERS").map_or(true, |v| v != "off"),
            webhook_rate: env_or("BENCH_WEBHOOK_RATE", 50),
            webhook_seconds: env_or("BENCH_WEBHOOK_SECONDS", 10),
            pgbench: std::env::var("BENCH_PGBENCH").unwrap_or_else(|_| "pgbench".into()),
            pgbench_script: std::env::var_os("BENCH_PGBENCH_SCRIPT").map_or_else(
                || Path::new(env!("CARGO_MANIFEST_DIR")).join(PGBENCH_SCRIPT),
                PathBuf::from,
            ),
            redis: std::env::var("BENCH_REDIS_URL")
                .ok()
                .filter(|u| !u.is_empty()),
            log_statements: std::env::var("BENCH_LOG_STATEMENTS").is_ok_and(|v| v == "1"),
        })
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let settings = Settings::from_env()?;
    let name = format!("dispatch_bench_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&settings.server).await?;
    admin
        .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .await?;
    if settings.log_statements {
        admin
            .execute(AssertSqlSafe(format!(
                "ALTER DATABASE {name} SET log_statement = 'all'"
            )))
            .await?;
    }
    admin.close().await?;
    let url = database_url(&settings.server, &name);
    let redis_prefix = format!("bench:{}:", Uuid::new_v4().simple());
    let outcome = std::panic::AssertUnwindSafe(run(&settings, &url, &name, &redis_prefix))
        .catch_unwind()
        .await;
    // Clean up whatever happened.
    let mut admin = PgConnection::connect(&settings.server).await?;
    admin
        .execute(AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
        )))
        .await?;
    if let Some(redis) = &settings.redis {
        clear_redis(redis, &redis_prefix).await;
    }
    match outcome {
        Ok(result) => result,
        Err(_) => bail!("the benchmark panicked (database {name} dropped)"),
    }
}

fn database_url(server: &str, name: &str) -> String {
    let (base, query) = match server.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (server, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let server = base[authority_end..]
        .find('/')
        .map_or(base, |i| &base[..i + authority_end]);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

async fn clear_redis(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut connection) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut connection)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: Result<(), _> = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut connection)
            .await;
    }
}

/// The running application.
struct App {
    state: AppState,
    db_name: String,
    address: String,
    shutdown: CancellationToken,
    workers: Option<Workers>,
    _data_dir: tempfile::TempDir,
}

impl App {
    fn start_workers(&mut self) {
        if self.workers.is_none() {
            self.workers = Some(Workers::start_standard(&self.state));
        }
    }

    /// Stops the workers, the server and the pool.
    async fn stop(mut self) {
        if let Some(workers) = self.workers.take() {
            workers.shutdown().await;
        }
        self.shutdown.cancel();
        self.state.db.clone().close().await;
    }
}

async fn start_app(
    settings: &Settings,
    url: &str,
    db_name: &str,
    redis_prefix: &str,
) -> anyhow::Result<App> {
    let data_dir = tempfile::tempdir()?;
    let mut pairs: Vec<(&str, String)> = vec![
        ("DATABASE_URL", url.to_owned()),
        ("DATA_DIR", data_dir.path().display().to_string()),
        (
            "JWT_ACCESS_SECRET",
            "bench-access-secret-0123456789abcdef".into(),
        ),
        (
            "JWT_REFRESH_SECRET",
            "bench-refresh-secret-0123456789abcdef".into(),
        ),
        ("JWT_ACCESS_TTL", "2h".into()),
        ("ADMIN_PASSWORD", "bench".into()),
        ("SEED_DEMO_DATA", "false".into()),
        ("RATE_LIMIT_LOGIN", "off".into()),
        ("RATE_LIMIT_LOGIN_ADDRESS", "off".into()),
        ("RATE_LIMIT_REGISTER", "off".into()),
        ("RATE_LIMIT_ORDERS", "off".into()),
        ("PASSWORD_HASH_MEMORY_KIB", "64".into()),
        ("DB_MAX_CONNECTIONS", settings.pool.to_string()),
        ("PAYMENT_GATEWAY", "simulated".into()),
        ("SIMULATED_PAYMENT_DELAY", "off".into()),
        ("STRIPE_WEBHOOK_SECRETS", WEBHOOK_SECRET.into()),
        ("REDIS_KEY_PREFIX", redis_prefix.to_owned()),
    ];
    if let Some(redis) = &settings.redis {
        pairs.push(("REDIS_URL", redis.clone()));
    }
    let config = Config::from_pairs(pairs)?;
    let state = startup::build_state(config).await?;
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let shutdown = CancellationToken::new();
    tokio::spawn(startup::serve(state.clone(), listener, shutdown.clone()));
    Ok(App {
        state,
        db_name: db_name.to_owned(),
        address,
        shutdown,
        workers: None,
        _data_dir: data_dir,
    })
}

/// The id of the `n`-th row of a kind the bench numbers itself; the pgbench
/// script builds the same ids with its SQL function `bench_id`.
fn bench_id(kind: u32, run: u32, client: u32, n: u64) -> Uuid {
    let text = format!("{kind:04x}{run:04x}-0000-7{client:03x}-8000-{n:012x}");
    Uuid::parse_str(&text).unwrap_or_default()
}

/// A shopper with a session.
#[derive(Clone)]
struct Shopper {
    token: String,
}

async fn setup(app: &App, settings: &Settings) -> anyhow::Result<Vec<Shopper>> {
    let db = &app.state.db;
    let txn = db.begin_write().await?;
    let now = dispatch::db::now();
    let mut rng = StdRng::seed_from_u64(7);
    for n in 1..=(settings.span * 3) {
        let name = format!("Bench item {n}");
        item::ActiveModel {
            id: Set(bench_id(KIND_ITEM, 0, 0, n as u64)),
            name_search: Set(dispatch::db::fold_for_search(&name)),
            name: Set(name),
            description: Set("An item of the checkout benchmark".into()),
            price: Set(rng.random_range(100..10_000)),
            currency: Set(dispatch::money::Currency::parse("usd")?),
            stock: Set(1_000_000_000_000),
            price_payment_id: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
        }
        .insert(&*txn)
        .await?;
    }
    let hash = app
        .state
        .passwords
        .hash(&SecretString::from(PASSWORD))
        .await?;
    let mut emails = Vec::new();
    for n in 1..=settings.users {
        let name = format!("Bench shopper {n}");
        let email = format!("shopper-{n}@bench.example");
        user::ActiveModel {
            id: Set(bench_id(KIND_USER, 0, 0, n as u64)),
            name_search: Set(dispatch::db::fold_for_search(&name)),
            name: Set(name),
            email: Set(Email::parse(&email)?.into_string()),
            password_hash: Set(hash.clone()),
            role: Set(Role::User),
            language: Set(Language::En),
            stripe_customer_id: Set(None),
            created_at: Set(now),
            updated_at: Set(now),
            deleted_at: Set(None),
        }
        .insert(&*txn)
        .await?;
        emails.push(email);
    }
    txn.commit().await?;
    let client = http_client()?;
    let mut shoppers = Vec::new();
    for email in emails {
        let response = client
            .post(format!("{}/api/v1/auth/login", app.address))
            .json(&json!({"email": email, "password": PASSWORD}))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 200, "login: {}", response.status());
        let body: Value = response.json().await?;
        shoppers.push(Shopper {
            token: body["accessToken"]
                .as_str()
                .context("accessToken")?
                .to_owned(),
        });
    }
    Ok(shoppers)
}

/// A client with timeouts (a stuck request fails the run instead of hanging it).
fn http_client() -> reqwest::Result<Client> {
    Client::builder().timeout(Duration::from_secs(60)).build()
}

/// One order's lines, drawn as the pgbench script draws them.
fn order_body(rng: &mut StdRng, span: usize) -> Value {
    let lines = rng.random_range(1..=3);
    let mut item = 0;
    let mut items = Vec::with_capacity(lines);
    for _ in 0..lines {
        item += rng.random_range(1..=span);
        items.push(json!({
            "itemId": bench_id(KIND_ITEM, 0, 0, item as u64),
            "quantity": rng.random_range(1..=3),
        }));
    }
    json!({ "items": items })
}

/// One answered request.
struct Sample {
    done: Instant,
    latency: Duration,
    created: bool,
    order_id: Option<Uuid>,
}

/// Places orders back to back until `end`, on one keep-alive connection.
async fn client_loop(
    address: String,
    shopper: Shopper,
    span: usize,
    seed: u64,
    end: Instant,
    keep_ids: bool,
) -> anyhow::Result<Vec<Sample>> {
    let http = Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()?;
    let url = format!("{address}/api/v1/orders");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut samples = Vec::new();
    while Instant::now() < end {
        let body = order_body(&mut rng, span);
        let started = Instant::now();
        let response = http
            .post(&url)
            .bearer_auth(&shopper.token)
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(&body)
            .send()
            .await;
        let (created, order_id) = match response {
            Ok(response) => {
                let created = response.status() == 201;
                let bytes = response.bytes().await.unwrap_or_default();
                let order_id = if created && keep_ids {
                    serde_json::from_slice::<Value>(&bytes)
                        .ok()
                        .and_then(|v| v["id"].as_str().and_then(|s| s.parse().ok()))
                } else {
                    None
                };
                (created, order_id)
            }
            Err(_) => (false, None),
        };
        let done = Instant::now();
        samples.push(Sample {
            done,
            latency: done - started,
            created,
            order_id,
        });
    }
    Ok(samples)
}

/// Threads of the runtime the HTTP clients run on (apart from the service's,
/// so their CPU can be told apart).
const GENERATOR_THREADS: &str = "bench-client";

/// The load generator's runtime, two threads, made on first use and kept
/// until the process exits.
fn generator() -> &'static tokio::runtime::Handle {
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    static CURRENT: std::sync::OnceLock<tokio::runtime::Handle> = std::sync::OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name(GENERATOR_THREADS)
            .enable_all()
            .build()
            .ok()
    });
    match runtime {
        Some(runtime) => runtime.handle(),
        None => CURRENT.get_or_init(tokio::runtime::Handle::current),
    }
}

/// Runs `clients` clients until `end`; every answer, in no particular order.
async fn load(
    app: &App,
    shoppers: &[Shopper],
    span: usize,
    clients: usize,
    end: Instant,
    keep_ids: bool,
) -> anyhow::Result<Vec<Sample>> {
    let mut tasks = Vec::new();
    for i in 0..clients {
        tasks.push(generator().spawn(client_loop(
            app.address.clone(),
            shoppers[i % shoppers.len()].clone(),
            span,
            (clients * 1000 + i) as u64,
            end,
            keep_ids,
        )));
    }
    let mut samples = Vec::new();
    for task in tasks {
        samples.extend(task.await??);
    }
    Ok(samples)
}

struct HttpRun {
    cpu_per_order: CpuPerOrder,
    orders_per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    backlog: u64,
    drain: Duration,
}

async fn measure_http(
    app: &App,
    settings: &Settings,
    shoppers: &[Shopper],
    clients: usize,
) -> anyhow::Result<HttpRun> {
    let start = Instant::now();
    let from = start + settings.warmup;
    let to = from + settings.duration;
    let db_name = app.db_name.clone();
    let server = settings.server.clone();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(from.into()).await;
        let first = Cpu::sample("self", &db_name, &server).await;
        tokio::time::sleep_until(to.into()).await;
        Cpu::sample("self", &db_name, &server).await.since(first)
    });
    let samples = load(app, shoppers, settings.span, clients, to, false).await?;
    let cpu = sampler.await?;
    let backlog = due_jobs(app).await?;
    let drain_start = Instant::now();
    wait_for_jobs_idle(app).await?;
    let drain = drain_start.elapsed();
    let window: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.done >= from && s.done < to)
        .collect();
    let mut latencies: Vec<f64> = window
        .iter()
        .filter(|s| s.created)
        .map(|s| s.latency.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    Ok(HttpRun {
        cpu_per_order: cpu.per(latencies.len() as f64),
        orders_per_second: latencies.len() as f64 / settings.duration.as_secs_f64(),
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        errors: samples.iter().filter(|s| !s.created).count(),
        backlog,
        drain,
    })
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// CPU seconds (user + system) of process `pid` (`self` for this one), from
/// `/proc/<pid>/stat` (clock ticks of 1/100 s).
fn process_cpu(pid: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
            let user: f64 = fields.get(11)?.parse().ok()?;
            let system: f64 = fields.get(12)?.parse().ok()?;
            Some((user + system) / 100.0)
        })
        .unwrap_or(0.0)
}

/// CPU seconds of the PostgreSQL backends connected to database `name`
/// (server on this machine only; 0 otherwise).
fn backends_cpu(name: &str) -> f64 {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return 0.0;
    };
    entries
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter(|e| {
            std::fs::read(e.path().join("cmdline")).is_ok_and(|c| {
                let title = String::from_utf8_lossy(&c);
                title.starts_with("postgres: ") && title.contains(name)
            })
        })
        .map(|e| process_cpu(&e.file_name().to_string_lossy()))
        .sum()
}

/// Transactions committed so far in database `name` (from another database
/// of the server, so the question does not count itself).
async fn commits(server: &str, name: &str) -> anyhow::Result<f64> {
    let mut admin = PgConnection::connect(server).await?;
    let (commits,): (i64,) =
        sea_orm::sqlx::query_as("SELECT xact_commit FROM pg_stat_database WHERE datname = $1")
            .bind(name)
            .fetch_one(&mut admin)
            .await?;
    admin.close().await?;
    Ok(commits as f64)
}

/// CPU seconds of this process's load-generator threads.
fn generator_cpu() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0.0;
    };
    tasks
        .filter_map(Result::ok)
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm"))
                .is_ok_and(|name| name.starts_with(GENERATOR_THREADS))
        })
        .map(|t| process_cpu(&format!("self/task/{}", t.file_name().to_string_lossy())))
        .sum()
}

/// CPU used between two instants: one process (and, when it is this one,
/// its load-generator threads), the database's backends.
#[derive(Clone, Copy, Default)]
struct Cpu {
    process: f64,
    generator: f64,
    backends: f64,
    /// Transactions committed in the bench database (`pg_stat_database`).
    commits: f64,
}

/// CPU microseconds per order.
#[derive(Clone, Copy, Default)]
struct CpuPerOrder {
    /// Dispatch (the service and its workers) or pgbench.
    client: f64,
    /// The HTTP load generator (0 for pgbench).
    generator: f64,
    /// The PostgreSQL backends of the bench database.
    backends: f64,
    /// Transactions committed in the bench database per order (not CPU).
    commits: f64,
}

impl Cpu {
    async fn sample(pid: &str, db_name: &str, server: &str) -> Self {
        Self {
            process: process_cpu(pid),
            generator: if pid == "self" { generator_cpu() } else { 0.0 },
            backends: backends_cpu(db_name),
            commits: commits(server, db_name).await.unwrap_or(f64::NAN),
        }
    }

    fn since(self, earlier: Self) -> Self {
        Self {
            process: self.process - earlier.process,
            generator: self.generator - earlier.generator,
            backends: self.backends - earlier.backends,
            commits: self.commits - earlier.commits,
        }
    }

    /// Microseconds per unit of work, `count` units.
    fn per(self, count: f64) -> CpuPerOrder {
        CpuPerOrder {
            client: (self.process - self.generator) * 1e6 / count,
            generator: self.generator * 1e6 / count,
            backends: self.backends * 1e6 / count,
            commits: self.commits / count,
        }
    }
}

/// Jobs due now and not finished.
async fn due_jobs(app: &App) -> anyhow::Result<u64> {
    Ok(job::Entity::find()
        .filter(job::Column::State.is_in([
            JobState::Scheduled,
            JobState::Available,
            JobState::Running,
        ]))
        .filter(job::Column::RunAt.lte(dispatch::db::now()))
        .count(app.state.db.conn())
        .await?)
}

async fn wait_for_jobs_idle(app: &App) -> anyhow::Result<()> {
    if app.workers.is_none() {
        return Ok(());
    }
    let deadline = Instant::now() + Duration::from_secs(300);
    while due_jobs(app).await? > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the job backlog did not drain in 5 min"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}

struct PgbenchRun {
    cpu_per_order: CpuPerOrder,
    tps: f64,
    transactions: u64,
    p50_ms: f64,
    p99_ms: f64,
    failed: String,
}

/// The helper the script names its rows with (ids like `bench_id` above).
const BENCH_ID_FUNCTION: &str = "CREATE OR REPLACE FUNCTION bench_id(kind int, run int, client int, n bigint) \
     RETURNS uuid LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ \
     SELECT (lpad(to_hex(kind), 4, '0') || lpad(to_hex(run), 4, '0') || '-0000-7' \
     || lpad(to_hex(client), 3, '0') || '-8000-' || lpad(to_hex(n), 12, '0'))::uuid $$";

async fn run_pgbench(
    settings: &Settings,
    db_name: &str,
    url: &str,
    clients: usize,
    run: u32,
) -> anyhow::Result<PgbenchRun> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        match pgbench_once(settings, db_name, url, clients, run).await {
            Err(e) if attempt < 6 && format!("{e:#}").contains("too many clients") => {
                eprintln!(
                    "pgbench: the server has no connections left (other users); retrying in 20 s"
                );
                tokio::time::sleep(Duration::from_secs(20)).await;
            }
            other => return other,
        }
    }
}

async fn pgbench_once(
    settings: &Settings,
    db_name: &str,
    url: &str,
    clients: usize,
    run: u32,
) -> anyhow::Result<PgbenchRun> {
    let logs = tempfile::tempdir()?;
    let prefix = logs.path().join("tx");
    let script = settings.pgbench_script.clone();
    let child = tokio::process::Command::new(&settings.pgbench)
        .arg("-n")
        .arg("-M")
        .arg("prepared")
        .arg("-f")
        .arg(&script)
        .arg("-c")
        .arg(clients.to_string())
        .arg("-j")
        .arg("2")
        .arg("-T")
        .arg(settings.duration.as_secs().to_string())
        .arg("-D")
        .arg(format!("run={run}"))
        .arg("-D")
        .arg("seq=0")
        .arg("-D")
        .arg(format!("span={}", settings.span))
        .arg("-D")
        .arg(format!("users={}", settings.users))
        .arg("-l")
        .arg("--log-prefix")
        .arg(&prefix)
        .arg(url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("running {}", settings.pgbench))?;
    // CPU over the middle of the run (connections made, not yet closed).
    let pid = child.id().map(|p| p.to_string()).unwrap_or_default();
    let margin = Duration::from_secs(1).min(settings.duration / 4);
    let window = settings.duration.saturating_sub(margin * 2);
    tokio::time::sleep(margin).await;
    let first = Cpu::sample(&pid, db_name, &settings.server).await;
    tokio::time::sleep(window).await;
    let cpu = Cpu::sample(&pid, db_name, &settings.server)
        .await
        .since(first);
    let output = child.wait_with_output().await?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("pgbench failed ({}):\n{stdout}\n{stderr}", output.status);
    }
    let tps = stdout
        .lines()
        .find(|l| l.starts_with("tps = "))
        .and_then(|l| l.trim_start_matches("tps = ").split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("no tps in pgbench's output:\n{stdout}\n{stderr}"))?;
    let transactions = stdout
        .lines()
        .find(|l| l.starts_with("number of transactions actually processed: "))
        .and_then(|l| l.rsplit(": ").next())
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let failed = stdout
        .lines()
        .find(|l| l.starts_with("number of failed transactions"))
        .and_then(|l| l.split(": ").nth(1))
        .unwrap_or("?")
        .to_owned();
    let mut latencies = pgbench_latencies(logs.path())?;
    latencies.sort_by(f64::total_cmp);
    Ok(PgbenchRun {
        cpu_per_order: cpu.per(tps * window.as_secs_f64()),
        tps,
        transactions,
        p50_ms: percentile(&latencies, 0.50),
        p99_ms: percentile(&latencies, 0.99),
        failed,
    })
}

/// Per-transaction latencies (ms) from pgbench's `-l` logs
/// (`client transaction latency_us script epoch epoch_us`).
fn pgbench_latencies(folder: &Path) -> anyhow::Result<Vec<f64>> {
    let mut latencies = Vec::new();
    for entry in std::fs::read_dir(folder)? {
        let path: PathBuf = entry?.path();
        for line in std::fs::read_to_string(&path)?.lines() {
            if let Some(us) = line
                .split_whitespace()
                .nth(2)
                .and_then(|v| v.parse::<f64>().ok())
            {
                latencies.push(us / 1000.0);
            }
        }
    }
    Ok(latencies)
}

/// What a pgbench run wrote, to check that each of its transactions was a
/// whole checkout: orders, lines, attached payments, completed keys, jobs.
async fn pgbench_rows(app: &App, run: u32) -> anyhow::Result<String> {
    let sql = format!(
        "SELECT (SELECT count(*) FROM orders o WHERE o.id BETWEEN bench_id(3, {run}, 0, 0) AND bench_id(3, {run}, 4095, 281474976710655))::bigint AS orders, \
         (SELECT count(*) FROM order_lines l WHERE l.order_id BETWEEN bench_id(3, {run}, 0, 0) AND bench_id(3, {run}, 4095, 281474976710655))::bigint AS lines, \
         (SELECT count(*) FROM payments p WHERE p.order_id BETWEEN bench_id(3, {run}, 0, 0) AND bench_id(3, {run}, 4095, 281474976710655) AND p.provider_payment_id IS NOT NULL)::bigint AS attached, \
         (SELECT count(*) FROM idempotency_records r WHERE r.key LIKE 'pgbench-{run}-%' AND r.state = 'completed')::bigint AS completed, \
         (SELECT count(*) FROM jobs j WHERE j.correlation_id LIKE lpad(to_hex(12), 4, '0') || lpad(to_hex({run}), 4, '0') || '-%')::bigint AS jobs"
    );
    let row = app
        .state
        .db
        .conn()
        .query_one_raw(Statement::from_string(DbBackend::Postgres, sql))
        .await?
        .context("no row")?;
    let get = |name: &str| row.try_get::<i64>("", name).unwrap_or(-1);
    Ok(format!(
        "{} orders, {} lines, {} payments attached, {} keys completed, {} jobs",
        get("orders"),
        get("lines"),
        get("attached"),
        get("completed"),
        get("jobs")
    ))
}

/// Leftovers of a pgbench run that the application's workers must not run:
/// its `notification.deliver` jobs (the expiry jobs are not due).
async fn forget_pgbench_jobs(app: &App) -> anyhow::Result<()> {
    let txn = app.state.db.begin_write().await?;
    job::Entity::delete_many()
        .filter(job::Column::State.eq(JobState::Available))
        .filter(job::Column::Kind.eq("notification.deliver"))
        .exec(&*txn)
        .await?;
    txn.commit().await?;
    Ok(())
}

struct WebhookRun {
    sent: usize,
    rate: f64,
    paid: (f64, f64, f64),
    processed: (f64, f64, f64),
    missing: usize,
}

async fn measure_webhooks(
    app: &App,
    settings: &Settings,
    shoppers: &[Shopper],
) -> anyhow::Result<WebhookRun> {
    let wanted = (settings.webhook_rate * settings.webhook_seconds) as usize;
    // Orders to pay: placed first, by 16 clients, until there are enough.
    let mut orders: Vec<Uuid> = Vec::new();
    while orders.len() < wanted {
        let end = Instant::now() + Duration::from_secs(1);
        let samples = load(app, shoppers, settings.span, 16, end, true).await?;
        orders.extend(samples.iter().filter_map(|s| s.order_id));
    }
    orders.truncate(wanted);
    wait_for_jobs_idle(app).await?;
    let payments = payment::Entity::find()
        .filter(payment::Column::OrderId.is_in(orders.iter().copied()))
        .all(app.state.db.conn())
        .await?;
    let events: Vec<(Uuid, String)> = payments
        .iter()
        .filter_map(|p| {
            p.provider_payment_id.as_ref().map(|intent| {
                let event = json!({
                    "id": format!("evt_bench_{}", Uuid::new_v4().simple()),
                    "object": "event",
                    "type": "payment_intent.succeeded",
                    "created": dispatch::db::now().timestamp(),
                    "data": {"object": {
                        "id": intent,
                        "object": "payment_intent",
                        "amount": p.amount,
                        "currency": p.currency,
                        "status": "succeeded",
                        "metadata": {"order_id": p.order_id},
                    }},
                });
                (p.order_id, event.to_string())
            })
        })
        .collect();
    anyhow::ensure!(events.len() == wanted, "some orders have no PaymentIntent");

    // Send them at the rate, each from its own task.
    let http = Client::builder().timeout(Duration::from_secs(30)).build()?;
    let url = format!("{}/api/v1/payments/webhook", app.address);
    let period = Duration::from_secs_f64(1.0 / f64::from(settings.webhook_rate.max(1)));
    let mut ticker = tokio::time::interval(period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (order_id, body) in events {
        ticker.tick().await;
        let (http, url) = (http.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            let signature = dispatch::payments::signature::sign(
                body.as_bytes(),
                WEBHOOK_SECRET,
                dispatch::db::now().timestamp(),
            );
            let sent_at: DateTime<Utc> = dispatch::db::now();
            let response = http
                .post(&url)
                .header("Stripe-Signature", signature)
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await?;
            anyhow::ensure!(response.status() == 200, "webhook: {}", response.status());
            Ok((order_id, sent_at))
        }));
    }
    let mut sent = Vec::new();
    for task in tasks {
        sent.push(task.await??);
    }
    let sending = started.elapsed();
    wait_for_jobs_idle(app).await?;
    let steps = order_event::Entity::find()
        .filter(order_event::Column::OrderId.is_in(sent.iter().map(|(id, _)| *id)))
        .filter(order_event::Column::ToStatus.is_in([OrderStatus::Paid, OrderStatus::Processed]))
        .all(app.state.db.conn())
        .await?;
    let mut paid = Vec::new();
    let mut processed = Vec::new();
    let mut missing = 0;
    for (order_id, sent_at) in &sent {
        let at = |status| {
            steps
                .iter()
                .find(|e| e.order_id == *order_id && e.to_status == status)
                .map(|e| (e.at - *sent_at).num_microseconds().unwrap_or(0) as f64 / 1000.0)
        };
        match (at(OrderStatus::Paid), at(OrderStatus::Processed)) {
            (Some(p), Some(d)) => {
                paid.push(p);
                processed.push(d);
            }
            _ => missing += 1,
        }
    }
    let summary = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (
            percentile(v, 0.50),
            percentile(v, 0.99),
            v.last().copied().unwrap_or(f64::NAN),
        )
    };
    Ok(WebhookRun {
        sent: sent.len(),
        rate: sent.len() as f64 / sending.as_secs_f64(),
        paid: summary(&mut paid),
        processed: summary(&mut processed),
        missing,
    })
}

/// One order placed with every statement logged by the server.
async fn log_one_checkout(app: &mut App, shoppers: &[Shopper], span: usize) -> anyhow::Result<()> {
    let key = format!("bench-log-{}", Uuid::new_v4().simple());
    let mut rng = StdRng::seed_from_u64(1);
    let response = http_client()?
        .post(format!("{}/api/v1/orders", app.address))
        .bearer_auth(&shoppers[0].token)
        .header("Idempotency-Key", &key)
        .json(&order_body(&mut rng, span))
        .send()
        .await?;
    let status = response.status();
    let body = response.text().await?;
    println!(
        "order with Idempotency-Key {key}: {status}, response {} bytes:\n{body}",
        body.len()
    );
    // Then 20 more, one at a time, with the workers running, between two
    // markers, to see what the workers add per order.
    app.start_workers();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let db = app.state.db.conn();
    db.execute_unprepared("SELECT 'bench: 20 orders with workers, begin'")
        .await?;
    let http = http_client()?;
    for _ in 0..20 {
        let response = http
            .post(format!("{}/api/v1/orders", app.address))
            .bearer_auth(&shoppers[0].token)
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(&order_body(&mut rng, span))
            .send()
            .await?;
        anyhow::ensure!(response.status() == 201, "order: {}", response.status());
    }
    wait_for_jobs_idle(app).await?;
    db.execute_unprepared("SELECT 'bench: 20 orders with workers, end'")
        .await?;
    println!(
        "the statements are in the PostgreSQL server log (log_statement = 'all'): the first order's \
         after its Idempotency-Key, then 20 orders with the workers running between the markers \
         'bench: 20 orders with workers, begin' and '…, end'"
    );
    Ok(())
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

async fn run(
    settings: &Settings,
    url: &str,
    db_name: &str,
    redis_prefix: &str,
) -> anyhow::Result<()> {
    let start = || start_app(settings, url, db_name, redis_prefix);
    let mut app = start().await?;
    let shoppers = setup(&app, settings).await?;
    if settings.log_statements {
        let result = log_one_checkout(&mut app, &shoppers, settings.span).await;
        app.stop().await;
        return result;
    }
    app.state
        .db
        .conn()
        .execute_unprepared(BENCH_ID_FUNCTION)
        .await?;
    // The service runs only while it is measured: pgbench then has the
    // server's connections (and the CPU) to itself.
    let mut first = Some(app);
    let mut rows = Vec::new();
    for (run, &clients) in settings.concurrencies.iter().enumerate() {
        let mut app = match first.take() {
            Some(app) => app,
            None => start().await?,
        };
        if settings.workers {
            app.start_workers();
        }
        let load_before = load_average();
        let http = measure_http(&app, settings, &shoppers, clients).await;
        app.stop().await;
        let http = http?;
        let run = run as u32 + 1;
        let pgbench = run_pgbench(settings, db_name, url, clients, run).await?;
        let load_after = load_average();
        let app = start().await?;
        let wrote = pgbench_rows(&app, run).await;
        let forgot = forget_pgbench_jobs(&app).await;
        app.stop().await;
        eprintln!(
            "pgbench -c {clients}: {} transactions; wrote {}",
            pgbench.transactions, wrote?
        );
        forgot?;
        eprintln!(
            "c={clients}: {:.0} orders/s (p50 {:.1} ms, p99 {:.1} ms, {} errors), pgbench {:.0} tps; load {load_before} → {load_after}",
            http.orders_per_second, http.p50_ms, http.p99_ms, http.errors, pgbench.tps
        );
        rows.push((clients, http, pgbench, load_before, load_after));
    }
    let webhooks = if settings.workers && settings.webhook_rate > 0 {
        let mut app = start().await?;
        app.start_workers();
        let measured = measure_webhooks(&app, settings, &shoppers).await;
        app.stop().await;
        Some(measured?)
    } else {
        None
    };

    let workers = if settings.workers {
        "job workers running"
    } else {
        "**job workers off**"
    };
    println!(
        "\n### Checkout on PostgreSQL ({} s measured after {} s warm-up, pool of {} connections, {workers})\n",
        settings.duration.as_secs(),
        settings.warmup.as_secs(),
        settings.pool
    );
    println!(
        "| concurrency | `POST /orders` | p50 / p99 | non-201 | pgbench, same SQL (ceiling) | pgbench p50 / p99 | ours / ceiling | load avg before → after |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (clients, http, pgbench, before, after) in &rows {
        println!(
            "| {clients} | **{:.0} orders/s** | {:.1} ms / {:.1} ms | {} | {:.0} orders/s (failed: {}) | {:.1} ms / {:.1} ms | **{:.0} %** | {before} → {after} |",
            http.orders_per_second,
            http.p50_ms,
            http.p99_ms,
            http.errors,
            pgbench.tps,
            pgbench.failed,
            pgbench.p50_ms,
            pgbench.p99_ms,
            100.0 * http.orders_per_second / pgbench.tps,
        );
    }
    println!(
        "\nCPU per order over the measured window (µs), and the job backlog the checkout run left:\n"
    );
    println!(
        "| concurrency | Dispatch (service + workers) | HTTP load generator | PG backends, Dispatch | pgbench | PG backends, pgbench | PG transactions per order, Dispatch / pgbench | jobs due at the end / drained in |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (clients, http, pgbench, _, _) in &rows {
        let (ours, theirs) = (http.cpu_per_order, pgbench.cpu_per_order);
        println!(
            "| {clients} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} | {:.1} / {:.1} | {} / {} |",
            ours.client,
            ours.generator,
            ours.backends,
            theirs.client,
            theirs.backends,
            ours.commits,
            theirs.commits,
            http.backlog,
            if settings.workers {
                format!("{:.1} s", http.drain.as_secs_f64())
            } else {
                "(no workers)".to_owned()
            },
        );
    }
    if let Some(w) = webhooks {
        println!(
            "\n### Webhook to PROCESSED ({} signed `payment_intent.succeeded` at {:.0}/s)\n",
            w.sent, w.rate
        );
        println!("| from just before the send to | p50 | p99 | max |");
        println!("|---|---|---|---|");
        println!(
            "| PAID recorded (webhook handler) | {:.1} ms | {:.1} ms | {:.1} ms |",
            w.paid.0, w.paid.1, w.paid.2
        );
        println!(
            "| **PROCESSED recorded** (`order.process` job) | **{:.1} ms** | **{:.1} ms** | {:.1} ms |",
            w.processed.0, w.processed.1, w.processed.2
        );
        if w.missing > 0 {
            println!("\n{} orders did not reach PROCESSED.", w.missing);
        }
    }
    Ok(())
}
