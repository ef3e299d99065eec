//! The test harness: a real Dispatch on a random port, with its own database
//! and Redis key prefix.
//!
//! Backends come from the environment, like the service itself:
//! - no `DATABASE_URL`: a fresh SQLite file in a temporary folder;
//! - `DATABASE_URL=postgres://…`: a fresh database `dispatch_test_<uuid>` on
//!   that server, dropped when the test ends;
//! - `REDIS_URL=redis://…`: Redis for cache, limits and revocation, under a
//!   key prefix of the test's own, deleted when the test ends.
//!
//! Leftover jobs fail the test (as crates.io's harness does): when a
//! [`TestApp`] is dropped at the end of a passing test, every job still
//! `available`, `running` or `failed`, or `scheduled` and already due, is
//! work the test started and never saw through, or a failure nobody looked
//! at. A test either finishes that work ([`TestApp::drain_jobs`], or waiting
//! for its effect) or says what it leaves ([`TestApp::expect_leftover_jobs`]
//! by kind, [`TestApp::allow_leftover_jobs`] for tests about the queue
//! itself). Not counted: jobs scheduled for later than the end of the test
//! (an unpaid order's `order.expire`, due in 15 minutes, is the order's
//! normal state, not unfinished work), and the scheduler's periodic jobs
//! (`periodic:` unique keys) unless they failed: they come from the app's
//! clock, not from the test.

use std::sync::Once;

use dispatch::{
    config::Config,
    startup,
    state::AppState,
    users::{
        email::Email,
        language::Language,
        queries::{self, NewUser},
        role::Role,
    },
};
use reqwest::{Client, RequestBuilder, Response};
use sea_orm::sqlx::{AssertSqlSafe, Connection, Executor, postgres::PgConnection};
use secrecy::SecretString;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

pub const PASSWORD: &str = "correct horse battery";
/// The webhook signing secret of test apps (`STRIPE_WEBHOOK_SECRETS`).
pub const WEBHOOK_SECRET: &str = "whsec_test_0123456789abcdef";

static INIT: Once = Once::new();

fn init_process() {
    INIT.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        if std::env::var_os("TEST_LOG").is_some() {
            dispatch::telemetry::init_tracing(
                dispatch::config::LogFormat::Pretty,
                "info,sqlx=warn",
            );
        }
    });
}

/// A running Dispatch for one test.
pub struct TestApp {
    pub address: String,
    /// The configuration the app was started with (`NAME`, value).
    pub settings: Vec<(String, String)>,
    pub client: Client,
    pub state: AppState,
    shutdown: CancellationToken,
    database: TestDatabase,
    redis_prefix: Option<(String, String)>,
    /// Job workers and scheduler, for apps started with them.
    pub workers: Option<startup::Workers>,
    /// What the leftover-jobs check at drop lets through.
    leftovers: tokio::sync::Mutex<Leftovers>,
    _data_dir: tempfile::TempDir,
}

/// Jobs a test said it leaves behind.
#[derive(Debug, Default)]
enum Leftovers {
    /// None: every leftover fails the test.
    #[default]
    None,
    /// Jobs of these kinds.
    Kinds(Vec<String>),
    /// Any job (tests of the queue itself).
    Any,
}

enum TestDatabase {
    Sqlite,
    Postgres { server_url: String, name: String },
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

/// Starts an app with extra configuration (`NAME`, value) on top of the test defaults.
pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    init_process();
    let data_dir = tempfile::tempdir().expect("temporary folder");
    let (database_url, database) = match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres") => {
            let name = format!("dispatch_test_{}", Uuid::new_v4().simple());
            let mut admin = PgConnection::connect(&url)
                .await
                .expect("PostgreSQL from DATABASE_URL");
            admin
                .execute(AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .expect("create test database");
            let test_url = replace_database(&url, &name);
            (
                test_url,
                TestDatabase::Postgres {
                    server_url: url,
                    name,
                },
            )
        }
        _ => (
            format!("sqlite://{}/dispatch.db", data_dir.path().display()),
            TestDatabase::Sqlite,
        ),
    };
    let redis = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty());
    let prefix = format!("test:{}:", Uuid::new_v4().simple());

    let mut pairs: Vec<(&str, String)> = vec![
        ("DATABASE_URL", database_url),
        ("DATA_DIR", data_dir.path().display().to_string()),
        (
            "JWT_ACCESS_SECRET",
            "test-access-secret-0123456789abcdef".into(),
        ),
        (
            "JWT_REFRESH_SECRET",
            "test-refresh-secret-0123456789abcdef".into(),
        ),
        ("ADMIN_PASSWORD", "dashboard-password".into()),
        ("SEED_DEMO_DATA", "false".into()),
        ("RATE_LIMIT_LOGIN", "off".into()),
        ("RATE_LIMIT_LOGIN_ADDRESS", "off".into()),
        ("LOGIN_DELAY_MAX", "off".into()),
        ("RATE_LIMIT_REGISTER", "off".into()),
        ("RATE_LIMIT_ORDERS", "off".into()),
        ("PASSWORD_HASH_MEMORY_KIB", "64".into()),
        ("DB_MAX_CONNECTIONS", "8".into()),
        ("REDIS_KEY_PREFIX", prefix.clone()),
        ("STRIPE_WEBHOOK_SECRETS", WEBHOOK_SECRET.into()),
        // Tests send payment events themselves unless they ask the
        // simulated gateway to confirm (`SIMULATED_PAYMENT_DELAY=50ms`).
        ("SIMULATED_PAYMENT_DELAY", "off".into()),
    ];
    if let Some(url) = &redis {
        pairs.push(("REDIS_URL", url.clone()));
    }
    for (name, value) in overrides {
        pairs.retain(|(n, _)| n != name);
        pairs.push((name, (*value).to_owned()));
    }
    let settings: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let config = Config::from_pairs(pairs).expect("test configuration");
    // A manual clock: tests of deadlines advance it instead of sleeping.
    let state = startup::build_state_with_clock(config, dispatch::db::Clock::manual())
        .await
        .expect("application state");

    let listener = TcpListener::bind("127.0.0.1:0").await.expect("port");
    let address = format!("http://{}", listener.local_addr().expect("address"));
    let shutdown = CancellationToken::new();
    tokio::spawn(startup::serve(state.clone(), listener, shutdown.clone()));

    let client = Client::builder()
        .timeout(std::time::Duration::from_secs(30))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client");
    TestApp {
        address,
        settings,
        client,
        state,
        shutdown,
        database,
        redis_prefix: redis.map(|url| (url, prefix)),
        workers: None,
        leftovers: tokio::sync::Mutex::new(Leftovers::None),
        _data_dir: data_dir,
    }
}

/// Starts an app with its job workers and scheduler running, as `serve`
/// does (polling every 200 ms as a fallback).
pub async fn spawn_app_with_workers(overrides: &[(&str, &str)]) -> TestApp {
    let mut settings = vec![("JOB_POLL_INTERVAL", "200ms")];
    settings.extend_from_slice(overrides);
    let mut app = spawn_app_with(&settings).await;
    app.workers = Some(startup::Workers::start_standard(&app.state));
    app
}

fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[authority_end..].find('/').map(|i| i + authority_end);
    let server = path_start.map_or(base, |i| &base[..i]);
    match query {
        Some(query) => format!("{server}/{name}?{query}"),
        None => format!("{server}/{name}"),
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
        // A test already failing says why itself; the check would only add noise.
        let check = (!std::thread::panicking()).then(|| {
            let url = self
                .settings
                .iter()
                .find(|(name, _)| name == "DATABASE_URL")
                .map(|(_, url)| url.clone())
                .expect("DATABASE_URL");
            let allowed = std::mem::take(self.leftovers.get_mut());
            (url, allowed, self.state.db.now())
        });
        let database = std::mem::replace(&mut self.database, TestDatabase::Sqlite);
        let redis = self.redis_prefix.take();
        // Clean-up needs async I/O but Drop is sync: run it on a thread of its
        // own. FORCE ends the pool's connections, which live on the test's
        // (now blocked) runtime and cannot be closed from here.
        let cleanup = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                // Before the database goes: what did the test leave?
                let leftovers = match check {
                    Some((url, allowed, now)) => leftover_jobs(&url, &allowed, now).await,
                    None => Vec::new(),
                };
                if let TestDatabase::Postgres { server_url, name } = database
                    && let Ok(mut admin) = PgConnection::connect(&server_url).await
                {
                    let _ = admin
                        .execute(AssertSqlSafe(format!(
                            "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                        )))
                        .await;
                }
                if let Some((url, prefix)) = redis
                    && let Ok(client) = redis::Client::open(url.as_str())
                    && let Ok(mut connection) = client.get_multiplexed_async_connection().await
                {
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
                leftovers
            })
        });
        let leftovers = cleanup.join().unwrap_or_default();
        assert!(
            leftovers.is_empty(),
            "the test left jobs behind (finish them with `app.drain_jobs().await`, or \
             declare them with `app.expect_leftover_jobs(&[kinds])`):\n{}",
            leftovers.join("\n")
        );
    }
}

/// The jobs left in the database at `url` that `allowed` does not cover,
/// one line each (see the module's documentation for the rule).
/// `now` is the app's clock's.
async fn leftover_jobs(
    url: &str,
    allowed: &Leftovers,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    use dispatch::jobs::model::job::{self, JobState};
    use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};
    if matches!(allowed, Leftovers::Any) {
        return Vec::new();
    }
    let db = match sea_orm::Database::connect(url).await {
        Ok(db) => db,
        Err(e) => return vec![format!("(could not check: {e})")],
    };
    let unfinished = Condition::any()
        .add(job::Column::State.is_in([JobState::Available, JobState::Running, JobState::Failed]))
        .add(
            Condition::all()
                .add(job::Column::State.eq(JobState::Scheduled))
                .add(job::Column::RunAt.lte(now)),
        );
    let jobs = match job::Entity::find().filter(unfinished).all(&db).await {
        Ok(jobs) => jobs,
        Err(e) => return vec![format!("(could not check: {e})")],
    };
    let _ = db.close().await;
    jobs.into_iter()
        .filter(|j| {
            let periodic = j
                .unique_key
                .as_deref()
                .is_some_and(|k| k.starts_with("periodic:"));
            !(periodic && j.state != JobState::Failed)
        })
        .filter(|j| match allowed {
            Leftovers::Kinds(kinds) => !kinds.contains(&j.kind),
            Leftovers::None | Leftovers::Any => true,
        })
        .map(|j| {
            format!(
                "  {} {} (attempt {}/{}){}",
                j.kind,
                j.state.as_str(),
                j.attempt,
                j.max_attempts,
                j.last_error.map(|e| format!(": {e}")).unwrap_or_default()
            )
        })
        .collect()
}

/// A signed-in account.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    pub password: String,
    pub role: Role,
    pub access_token: String,
    pub refresh_token: String,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn get(&self, path: &str) -> RequestBuilder {
        self.client.get(self.url(path))
    }

    pub fn post(&self, path: &str) -> RequestBuilder {
        self.client.post(self.url(path))
    }

    pub fn patch(&self, path: &str) -> RequestBuilder {
        self.client.patch(self.url(path))
    }

    pub fn delete(&self, path: &str) -> RequestBuilder {
        self.client.delete(self.url(path))
    }

    /// Registers a shopper through the API and signs them in.
    pub async fn register_user(&self) -> TestUser {
        let email = format!("shopper-{}@example.com", Uuid::new_v4().simple());
        let response = self
            .post("/api/v1/users")
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(&json!({"name": "Test Shopper", "email": email, "password": PASSWORD}))
            .send()
            .await
            .expect("register");
        assert_eq!(
            response.status(),
            201,
            "registration failed: {}",
            response.text().await.unwrap_or_default()
        );
        self.login_as(&email, PASSWORD, Role::User).await
    }

    /// Creates an account with any role directly in the database (as
    /// `dispatch create-admin` does) and signs it in.
    pub async fn create_user_with_role(&self, role: Role) -> TestUser {
        let email = format!("{}-{}@example.com", role.as_str(), Uuid::new_v4().simple());
        let hash = self
            .state
            .passwords
            .hash(&SecretString::from(PASSWORD))
            .await
            .expect("hash");
        let txn = self.state.db.begin_write().await.expect("txn");
        queries::insert(
            &*txn,
            NewUser {
                name: format!("Test {}", role.as_str()),
                email: Email::parse(&email).unwrap(),
                password_hash: hash,
                role,
                language: Language::En,
            },
        )
        .await
        .expect("insert user");
        txn.commit().await.expect("commit");
        self.login_as(&email, PASSWORD, role).await
    }

    pub async fn login_as(&self, email: &str, password: &str, role: Role) -> TestUser {
        let response = self.login(email, password).await;
        assert_eq!(response.status(), 200, "login failed");
        let body: Value = response.json().await.expect("login body");
        TestUser {
            id: body["userId"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .expect("userId"),
            email: email.to_owned(),
            password: password.to_owned(),
            role,
            access_token: body["accessToken"]
                .as_str()
                .expect("accessToken")
                .to_owned(),
            refresh_token: body["refreshToken"]
                .as_str()
                .expect("refreshToken")
                .to_owned(),
        }
    }

    pub async fn login(&self, email: &str, password: &str) -> Response {
        self.post("/api/v1/auth/login")
            .json(&json!({"email": email, "password": password}))
            .send()
            .await
            .expect("login request")
    }

    /// Creates an item through the admin API.
    pub async fn create_item(&self, admin: &TestUser, name: &str, price: i64, stock: i64) -> Value {
        let response = self
            .post("/api/v1/admin/items")
            .bearer_auth(&admin.access_token)
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .json(
                &json!({"name": name, "description": "test item", "price": price, "stock": stock}),
            )
            .send()
            .await
            .expect("create item");
        assert_eq!(
            response.status(),
            201,
            "item creation failed: {}",
            response.text().await.unwrap_or_default()
        );
        response.json().await.expect("item body")
    }
}

/// The settings under which [`from_address`] sets the client address.
pub const CLIENT_ADDRESS_SETTINGS: &[(&str, &str)] = &[("TRUSTED_PROXY_HOPS", "1")];

/// Makes `request` come from client address `ip`, as seen by an app started
/// with [`CLIENT_ADDRESS_SETTINGS`]: the one place tests say how a client
/// address reaches the service: one trusted proxy hop, whose appended
/// `X-Forwarded-For` entry (the only one here) is the client.
pub fn from_address(request: RequestBuilder, ip: &str) -> RequestBuilder {
    request.header("X-Forwarded-For", ip)
}

/// Reads a problem+json response, checking its shape.
pub async fn problem(response: Response) -> Value {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(
        content_type.starts_with("application/problem+json"),
        "not a problem: {content_type}"
    );
    let body: Value = response.json().await.expect("problem body");
    assert_eq!(body["status"], status);
    assert_eq!(body["statusCode"], status);
    assert!(
        body["code"].is_string() && body["correlationId"].is_string(),
        "{body}"
    );
    assert_eq!(body["detail"], body["message"]);
    body
}

/// Waits until `condition` holds, checking every 20 ms, for at most `limit`;
/// panics naming `what` if it never does. A bounded wait for an observable
/// condition, not a sleep.
pub async fn eventually<F, Fut>(what: &str, limit: std::time::Duration, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if condition().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// Orders and payments.
impl TestApp {
    /// `POST /api/v1/orders` with `(item id, quantity)` lines under `key`.
    pub async fn place_order(&self, user: &TestUser, lines: &[(Uuid, i64)], key: &str) -> Response {
        let items: Vec<Value> = lines
            .iter()
            .map(|(id, quantity)| json!({"itemId": id, "quantity": quantity}))
            .collect();
        self.post("/api/v1/orders")
            .bearer_auth(&user.access_token)
            .header("Idempotency-Key", key)
            .json(&json!({ "items": items }))
            .send()
            .await
            .expect("place order")
    }

    /// Places an order that must succeed; returns the owner's view.
    pub async fn placed_order(&self, user: &TestUser, lines: &[(Uuid, i64)]) -> Value {
        let response = self
            .place_order(user, lines, &Uuid::new_v4().to_string())
            .await;
        assert_eq!(
            response.status(),
            201,
            "order failed: {}",
            response.text().await.unwrap_or_default()
        );
        response.json().await.expect("order body")
    }

    /// Posts `event` to the webhook, signed as Stripe would with the test secret.
    pub async fn send_webhook(&self, event: &Value) -> Response {
        let body = event.to_string();
        let header = dispatch::payments::signature::sign(
            body.as_bytes(),
            WEBHOOK_SECRET,
            dispatch::db::now().timestamp(),
        );
        self.post("/api/v1/payments/webhook")
            .header("Stripe-Signature", header)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("webhook")
    }

    /// The simulated gateway of this app.
    pub fn simulated(&self) -> &dispatch::payments::simulated::SimulatedGateway {
        self.state
            .simulated_gateway
            .as_deref()
            .expect("the simulated gateway")
    }

    /// The PaymentIntent id of an order's payment.
    pub async fn intent_of(&self, order_id: &str) -> String {
        let id: Uuid = order_id.parse().expect("order id");
        dispatch::payments::queries::payment_of_order(self.state.db.conn(), id)
            .await
            .expect("payment query")
            .and_then(|p| p.provider_payment_id)
            .expect("a PaymentIntent")
    }

    /// An item's stock, straight from the database.
    pub async fn stock_of(&self, item_id: Uuid) -> i64 {
        use sea_orm::EntityTrait;
        dispatch::catalog::item::Entity::find_by_id(item_id)
            .one(self.state.db.conn())
            .await
            .expect("item query")
            .expect("item exists")
            .stock
    }

    /// The staff view of an order.
    pub async fn staff_order(&self, staff: &TestUser, id: &str) -> Value {
        let response = self
            .get(&format!("/api/v1/admin/orders/{id}"))
            .bearer_auth(&staff.access_token)
            .send()
            .await
            .expect("staff order");
        assert_eq!(response.status(), 200);
        response.json().await.expect("order body")
    }

    /// Waits (bounded) until the order has `status` in the database.
    pub async fn wait_for_order_status(&self, id: &str, status: &str) {
        self.wait_for_order_status_in(id, &[status]).await;
    }

    /// Waits (bounded) until the order has one of `statuses`.
    pub async fn wait_for_order_status_in(&self, id: &str, statuses: &[&str]) {
        use sea_orm::EntityTrait;
        let id: Uuid = id.parse().expect("order id");
        let db = self.state.db.clone();
        eventually(
            &format!("order {id} to become one of {statuses:?}"),
            std::time::Duration::from_secs(15),
            || {
                let db = db.clone();
                async move {
                    dispatch::orders::model::order::Entity::find_by_id(id)
                        .one(db.conn())
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|o| statuses.contains(&o.status.as_str()))
                }
            },
        )
        .await;
    }

    /// Moves the app's clock forward by `by` (see `dispatch::db::Clock`):
    /// whatever falls due meanwhile (jobs, leases, order expiry, retention)
    /// is due at once, without waiting.
    pub fn advance_clock(&self, by: std::time::Duration) {
        self.state.db.clock().advance(by);
    }

    /// Declares that the test leaves jobs of these kinds unfinished (or
    /// failed) on purpose: the leftover-jobs check lets them through.
    pub fn expect_leftover_jobs(&self, kinds: &[&str]) {
        let mut leftovers = self
            .leftovers
            .try_lock()
            .expect("the leftover expectations are only touched by the test");
        let mut known = match std::mem::take(&mut *leftovers) {
            Leftovers::Kinds(known) => known,
            Leftovers::None => Vec::new(),
            Leftovers::Any => {
                *leftovers = Leftovers::Any;
                return;
            }
        };
        known.extend(kinds.iter().map(|k| (*k).to_owned()));
        *leftovers = Leftovers::Kinds(known);
    }

    /// Turns the leftover-jobs check off, for tests of the queue itself
    /// (pausing, discarding, failing jobs on purpose).
    pub fn allow_leftover_jobs(&self) {
        *self
            .leftovers
            .try_lock()
            .expect("the leftover expectations are only touched by the test") = Leftovers::Any;
    }

    /// Runs every due job to its end (success or failure), as workers would,
    /// and returns once none is due: with this app's workers if it has them,
    /// else with a pool started for the purpose.
    pub async fn drain_jobs(&self) {
        if self.workers.is_some() {
            self.wait_for_jobs_idle().await;
            return;
        }
        let pool = dispatch::jobs::worker::WorkerPool::start(
            dispatch::jobs::registry::JobServices::from_state(&self.state),
            startup::job_registry(),
            dispatch::jobs::worker::WorkerSettings::from_config(&self.state.config),
        );
        self.wait_for_jobs_idle().await;
        pool.shutdown().await;
    }

    /// Waits (bounded) until no job is available or running (everything
    /// enqueued so far has finished, one way or another).
    pub async fn wait_for_jobs_idle(&self) {
        use dispatch::jobs::model::job::{self, JobState};
        use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
        let db = self.state.db.clone();
        eventually("jobs to finish", std::time::Duration::from_secs(20), || {
            let db = db.clone();
            async move {
                job::Entity::find()
                    .filter(job::Column::State.is_in([
                        JobState::Scheduled,
                        JobState::Available,
                        JobState::Running,
                    ]))
                    .filter(job::Column::RunAt.lte(db.now()))
                    .count(db.conn())
                    .await
                    .is_ok_and(|n| n == 0)
            }
        })
        .await;
    }
}

/// Drives orders to a status through the real paths.
impl TestApp {
    /// An order of `buyer` (one unit of `item_id`) brought to `status`:
    /// placed, paid by webhook, processed by its job, shipped and delivered
    /// by `admin`, or canceled/refunded by `admin`. Returns its id.
    pub async fn order_in_status(
        &self,
        admin: &TestUser,
        buyer: &TestUser,
        item_id: Uuid,
        status: &str,
    ) -> String {
        let order = self.placed_order(buyer, &[(item_id, 1)]).await;
        let id = order["id"].as_str().expect("order id").to_owned();
        if status == "PENDING" {
            return id;
        }
        if status == "CANCELED" {
            self.staff_action(admin, &id, "cancel", json!({})).await;
            return id;
        }
        let intent = self.intent_of(&id).await;
        match self.state.simulated_gateway.as_deref() {
            // The provider's side too, so refunds find a charge: its signed
            // webhook is delivered (and processed) before `confirm` returns.
            Some(simulated) => {
                simulated.confirm(&intent).await;
            }
            None => {
                let total = order["total"].as_i64().expect("total");
                let event = intent_event("payment_intent.succeeded", &intent, &id, total);
                assert_eq!(self.send_webhook(&event).await.status(), 200);
            }
        }
        self.wait_for_order_status_in(&id, &["PAID", "PROCESSED"])
            .await;
        if status == "PAID" {
            return id;
        }
        if status == "REFUNDED" {
            self.staff_action(admin, &id, "refund", json!({})).await;
            return id;
        }
        self.run_process_job(&id).await;
        if status == "PROCESSED" {
            return id;
        }
        self.staff_action(admin, &id, "ship", json!({"trackingNumber": "TRACK-1"}))
            .await;
        if status == "SHIPPED" {
            return id;
        }
        self.staff_action(admin, &id, "deliver", json!({})).await;
        assert_eq!(status, "DELIVERED", "unknown status {status}");
        id
    }

    /// `PATCH /api/v1/admin/orders/{id}/{action}` that must succeed (200/202).
    pub async fn staff_action(
        &self,
        staff: &TestUser,
        id: &str,
        action: &str,
        body: Value,
    ) -> Value {
        let response = self
            .patch(&format!("/api/v1/admin/orders/{id}/{action}"))
            .bearer_auth(&staff.access_token)
            .json(&body)
            .send()
            .await
            .expect("staff action");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert!(
            status == 200 || status == 202,
            "{action} {id}: {status} {text}"
        );
        serde_json::from_str(&text).expect("order body")
    }

    /// Runs `order.process` for an order now, as a worker would (whether or
    /// not this app has workers: a second run is a no-op).
    pub async fn run_process_job(&self, id: &str) {
        use dispatch::jobs::{Job, registry::JobServices};
        let order_id: Uuid = id.parse().expect("order id");
        let ctx = JobServices::from_state(&self.state).context(Uuid::new_v4(), 1, Uuid::new_v4());
        dispatch::orders::jobs::Process { order_id }
            .run(&ctx)
            .await
            .expect("process job");
        self.wait_for_order_status(id, "PROCESSED").await;
    }
}

/// A Stripe-like event about a PaymentIntent (a fresh event id each call).
pub fn intent_event(kind: &str, intent_id: &str, order_id: &str, amount: i64) -> Value {
    let status = match kind {
        "payment_intent.succeeded" => "succeeded",
        "payment_intent.canceled" => "canceled",
        _ => "requires_payment_method",
    };
    json!({
        "id": format!("evt_test_{}", Uuid::new_v4().simple()),
        "object": "event",
        "type": kind,
        "created": dispatch::db::now().timestamp(),
        "data": {"object": {
            "id": intent_id,
            "object": "payment_intent",
            "amount": amount,
            "currency": "usd",
            "status": status,
            "metadata": {"order_id": order_id},
        }},
    })
}
