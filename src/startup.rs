//! Building the application from configuration, and serving it.
//!
//! [`build_state`] picks every backend from the configuration (SQLite or
//! PostgreSQL; Redis or in-process cache, limits and revocation) and runs
//! migrations; [`serve`] runs the HTTP API on a listener until the shutdown
//! token fires. Tests use the same two functions with a port-0 listener.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use axum::{Router, extract::DefaultBodyLimit, http::StatusCode, middleware};
use secrecy::SecretString;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::{catch_panic::CatchPanicLayer, timeout::TimeoutLayer};
use utoipa_swagger_ui::SwaggerUi;

use crate::{
    auth::{
        password::{HashLimits, PasswordHasher},
        sessions::SessionGate,
        throttle::{self, SignInThrottle},
        tokens::TokenKeys,
    },
    cache::{MemoryCache, RedisCache, SharedCache},
    config::{self, Config},
    db::{self, Database},
    http::{client_ip::TrustedProxyHops, health, middleware as mw, serve as http_server},
    jobs::{
        diagnostics, maintenance,
        registry::{JobServices, Registry},
        scheduler::{self, Periodic},
        worker::{WorkerPool, WorkerSettings},
    },
    kv::Kv,
    locks::{MemoryLocks, RedisLocks, SharedLocks},
    private_files,
    rate_limit::{Limit, MemoryRateLimiter, Quotas, RedisRateLimiter, SharedRateLimiter},
    state::{AppState, Services},
    telemetry,
};

/// How long in-flight requests may take to finish after shutdown starts.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(25);

/// Connects everything the configuration names and applies migrations.
pub async fn build_state(config: Config) -> anyhow::Result<AppState> {
    build_state_with_clock(config, db::Clock::real()).await
}

/// [`build_state`] deciding due-ness and deadlines by `clock` (tests pass a
/// manual one).
pub async fn build_state_with_clock(
    mut config: Config,
    clock: db::Clock,
) -> anyhow::Result<AppState> {
    resolve_development_secrets(&mut config)?;
    let mut db = Database::connect(&config)
        .await
        .context("connecting to the database")?;
    if config.migrate_on_start {
        db::migrations::run(&db, &config)
            .await
            .context("applying migrations")?;
        if !db.is_postgres() {
            // SQLite compiles a statement against the schema its connection
            // last loaded. A pooled connection that loaded it mid-migration
            // misses later indexes, and an upsert on one fails ("ON CONFLICT
            // clause does not match…") without SQLite re-reading the schema.
            // Start the pool afresh on the final schema.
            db.close().await;
            db = Database::connect(&config)
                .await
                .context("reconnecting to the database")?;
        }
    }
    let db = db.with_clock(clock);
    warn_about_private_files_open_to_others(&config);
    let kv = match &config.redis_url {
        Some(url) => Some(Kv::connect(url, &config.redis_key_prefix).context("REDIS_URL")?),
        None => None,
    };
    let quotas = Quotas::default()
        .with(Limit::Login, config.rate_limit_login)
        .with(Limit::LoginAddress, config.rate_limit_login_address)
        .with(Limit::Register, config.rate_limit_register)
        .with(Limit::Orders, config.rate_limit_orders);
    let (cache, rate_limiter, locks): (SharedCache, SharedRateLimiter, SharedLocks) = match &kv {
        Some(kv) => (
            Arc::new(RedisCache::new(kv.clone())),
            Arc::new(RedisRateLimiter::new(
                kv.clone(),
                quotas,
                throttle::STRIKE_WINDOW,
            )),
            Arc::new(RedisLocks::new(kv.clone())),
        ),
        None => (
            Arc::new(MemoryCache::new(config.cache_ttl, config.cache_max_bytes)),
            Arc::new(MemoryRateLimiter::new(&quotas, throttle::STRIKE_WINDOW)),
            Arc::new(MemoryLocks::default()),
        ),
    };
    let tokens = TokenKeys::new(
        &config.jwt_access_secret,
        &config.jwt_refresh_secret,
        config.jwt_access_ttl,
        config.jwt_refresh_ttl,
    );
    let passwords = PasswordHasher::new(
        config.password_hash_memory_kib,
        HashLimits {
            concurrency: config.password_hash_concurrency,
            queue: config.password_hash_queue,
            wait: config.password_hash_wait,
        },
    )
    .context("PASSWORD_HASH_MEMORY_KIB")?;
    let sign_in_throttle = SignInThrottle::new(
        Arc::clone(&rate_limiter),
        &config.jwt_access_secret,
        config.login_delay,
    );
    let gateway = crate::payments::gateway_from_config(&config).context("payment gateway")?;
    let sessions = SessionGate::new(Arc::clone(&cache), config.cache_ttl, config.request_timeout);
    // After-commit effects: what a committed change makes stale.
    db.on_commit(
        crate::catalog::STOCK_CHANGED,
        crate::catalog::on_stock_changed(Arc::clone(&cache)),
    );
    tracing::info!(
        database = if db.is_postgres() { "postgresql" } else { "sqlite" },
        redis = kv.is_some(),
        payment_gateway = ?config.payment_gateway,
        "services ready"
    );
    let notifications = crate::notifications::hub::NotificationHub::new(
        crate::notifications::stream_slots::StreamSlots::new(
            config.sse_max_per_user,
            config.sse_max_streams,
        ),
    );
    Ok(AppState::new(Services {
        config,
        db,
        kv,
        cache,
        rate_limiter,
        sign_in_throttle,
        tokens,
        passwords,
        sessions,
        gateway: gateway.gateway,
        simulated_gateway: gateway.simulated,
        locks,
        notifications,
        metrics: telemetry::metrics_handle(),
        queue_gauges: health::QueueGauges::default(),
    }))
}

/// The whole HTTP application: API, docs, health, with every middleware.
pub fn router(state: &AppState) -> Router {
    let (api, mut document) = crate::api::api_router();
    let config = &state.config;
    crate::catalog::admin_routes::document_shop_currency(&mut document, config.shop_currency);
    let timeout =
        TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, config.request_timeout);
    api.merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", document))
        .merge(crate::jobs::dashboard::router(state))
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(timeout)
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn(mw::render_problems))
        .layer(mw::cors(&config.cors_origins))
        // Outside CORS, so the preflight answers it makes itself carry the
        // security headers too.
        .layer(middleware::from_fn_with_state(
            config.is_production(),
            mw::security_headers,
        ))
        .layer(axum::Extension(TrustedProxyHops(config.trusted_proxy_hops)))
        .layer(middleware::from_fn(mw::request_context))
        .with_state(state.clone())
}

/// Serves the API on `listener` until `shutdown` fires, then lets in-flight
/// requests finish for up to [`SHUTDOWN_GRACE`].
pub async fn serve(
    state: AppState,
    listener: TcpListener,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let app = router(&state);
    if let (Some(simulated), Ok(local)) = (&state.simulated_gateway, listener.local_addr()) {
        // The simulated provider calls our webhook like Stripe would.
        let host = if local.ip().is_unspecified() {
            std::net::IpAddr::from([127, 0, 0, 1])
        } else {
            local.ip()
        };
        let address = SocketAddr::new(host, local.port());
        simulated.deliver_webhooks_to(format!("http://{address}/api/v1/payments/webhook"));
    }
    spawn_metrics_upkeep(&state, shutdown.clone());
    tokio::spawn(crate::notifications::hub::listen(
        state.db.clone(),
        state.notifications.clone(),
        shutdown.clone(),
    ));
    if let Some(address) = state.config.metrics_addr {
        spawn_metrics_listener(state.clone(), address, shutdown.clone()).await?;
    }
    let limits = http_server::Limits {
        header_read_timeout: state.config.http_header_read_timeout,
        idle_timeout: state.config.http_idle_timeout,
        max_connections: state.config.http_max_connections,
    };
    let server = tokio::spawn(http_server::serve(listener, app, limits, shutdown.clone()));
    shutdown.cancelled().await;
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result.context("server task")?,
        Err(_) => tracing::warn!("in-flight requests did not finish within the grace period"),
    }
    Ok(())
}

/// The job workers and the scheduler of one process.
pub struct Workers {
    pool: WorkerPool,
    scheduler: tokio::task::JoinHandle<()>,
    stop_scheduler: CancellationToken,
}

impl Workers {
    /// Starts a worker pool running `registry`'s kinds and the scheduler of `schedule`.
    pub fn start(state: &AppState, registry: Registry, schedule: Vec<Periodic>) -> Self {
        let settings = WorkerSettings::from_config(&state.config);
        let pool = WorkerPool::start(JobServices::from_state(state), registry, settings);
        let stop_scheduler = CancellationToken::new();
        let scheduler = tokio::spawn(scheduler::run(
            state.db.clone(),
            schedule,
            stop_scheduler.clone(),
        ));
        Self {
            pool,
            scheduler,
            stop_scheduler,
        }
    }

    /// Every job kind and periodic job Dispatch ships with.
    pub fn start_standard(state: &AppState) -> Self {
        Self::start(state, job_registry(), job_schedule())
    }

    pub fn owner(&self) -> uuid::Uuid {
        self.pool.owner()
    }

    /// Stops the scheduler, then drains the pool (see [`WorkerPool::shutdown`]).
    pub async fn shutdown(self) {
        self.stop_scheduler.cancel();
        let _ = self.scheduler.await;
        self.pool.shutdown().await;
    }
}

/// Every job kind Dispatch runs. The queue (`jobs`) knows none of them: each
/// domain defines its kinds, and this composition root lists them.
pub fn job_registry() -> Registry {
    use crate::{idempotency, notifications, orders, payments, users};
    Registry::default()
        // The queue's own.
        .with::<maintenance::Cleanup>()
        .with::<diagnostics::Noop>()
        .with::<diagnostics::Probe>()
        // Orders.
        .with::<orders::jobs::Process>()
        .with::<orders::jobs::ProcessingFailed>()
        .with::<orders::jobs::Expire>()
        .with::<orders::cancel_payment::CancelPayment>()
        .with::<orders::refunds::Refund>()
        .with::<orders::reconcile::Reconcile>()
        // Users.
        .with::<users::customer_sync::CustomerSync>()
        // Payments.
        .with::<payments::retention::EventsCleanup>()
        // Notifications.
        .with::<notifications::deliver::Deliver>()
        .with::<notifications::retention::Cleanup>()
        // Shared infrastructure with tables of its own.
        .with::<idempotency::retention::Cleanup>()
}

/// The periodic jobs: reconciliation every minute, and every table's
/// retention every hour.
pub fn job_schedule() -> Vec<Periodic> {
    use crate::{idempotency, notifications, orders, payments};
    const HOURLY: Duration = Duration::from_secs(3600);
    vec![
        Periodic::of::<maintenance::Cleanup>(HOURLY),
        Periodic::of::<orders::reconcile::Reconcile>(Duration::from_secs(60)),
        Periodic::of::<payments::retention::EventsCleanup>(HOURLY),
        Periodic::of::<notifications::retention::Cleanup>(HOURLY),
        Periodic::of::<idempotency::retention::Cleanup>(HOURLY),
    ]
}

/// The Prometheus recorder needs periodic upkeep to drain its histograms.
fn spawn_metrics_upkeep(state: &AppState, shutdown: CancellationToken) {
    let handle = state.metrics.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => handle.run_upkeep(),
            }
        }
    });
}

/// Binds `METRICS_ADDR` and serves `/metrics` there (see [`serve_metrics`]).
pub async fn spawn_metrics_listener(
    state: AppState,
    address: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("binding METRICS_ADDR {address}"))?;
    serve_metrics(state, listener, shutdown);
    Ok(())
}

/// Serves `/metrics`, and nothing else, on `listener` until `shutdown`
/// fires. No token here: this listener is for a private network (see
/// `http::health`); the API listener asks for `METRICS_TOKEN`.
pub fn serve_metrics(state: AppState, listener: TcpListener, shutdown: CancellationToken) {
    let app = Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let state = state.clone();
            async move { health::metrics_page(&state).await }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
}

/// Replaces development placeholder secrets by values generated once and
/// kept in `DATA_DIR/secrets/` (folder 0700, files 0600), so tokens survive
/// restarts. Never in production: configuration refuses placeholders there,
/// and should one get through anyway, start-up stops rather than swap a
/// secret for a generated one.
fn resolve_development_secrets(config: &mut Config) -> anyhow::Result<()> {
    if config.is_production() {
        anyhow::ensure!(
            !has_development_placeholder(config),
            "a development placeholder secret reached production start-up"
        );
        return Ok(());
    }
    let folder = secrets_folder(config);
    let resolve = |secret: &mut SecretString, name: &str| -> anyhow::Result<bool> {
        if !config::is_development_placeholder(secret, name) {
            return Ok(false);
        }
        let path = folder.join(name);
        let (value, created) = match std::fs::read_to_string(&path) {
            Ok(value) if !value.trim().is_empty() => (value.trim().to_owned(), false),
            _ => {
                private_files::create_folder(&folder)
                    .with_context(|| format!("creating {}", folder.display()))?;
                let value = random_secret();
                private_files::write(&path, &value)
                    .with_context(|| format!("writing {}", path.display()))?;
                (value, true)
            }
        };
        *secret = SecretString::from(value);
        Ok(created)
    };
    resolve(&mut config.jwt_access_secret, "jwt_access_secret")?;
    resolve(&mut config.jwt_refresh_secret, "jwt_refresh_secret")?;
    if let Some(webhook_secret) = config.stripe_webhook_secrets.first_mut() {
        resolve(webhook_secret, "stripe_webhook_secret")?;
    }
    if resolve(&mut config.admin_password, "admin_password")? {
        use secrecy::ExposeSecret;
        // Printed once, when generated; it stays in the data directory.
        println!(
            "Dashboard credentials (development): {} / {} (kept in {})",
            config.admin_username,
            config.admin_password.expose_secret(),
            folder.join("admin_password").display()
        );
    }
    Ok(())
}

fn has_development_placeholder(config: &Config) -> bool {
    let named = [
        (&config.jwt_access_secret, "jwt_access_secret"),
        (&config.jwt_refresh_secret, "jwt_refresh_secret"),
        (&config.admin_password, "admin_password"),
    ];
    named
        .into_iter()
        .chain(
            config
                .stripe_webhook_secrets
                .iter()
                .map(|s| (s, "stripe_webhook_secret")),
        )
        .any(|(secret, name)| config::is_development_placeholder(secret, name))
}

fn secrets_folder(config: &Config) -> std::path::PathBuf {
    config.data_dir.join("secrets")
}

/// Warns, once at start-up, about the database files and the secrets folder
/// when other users may read them (see `private_files`).
fn warn_about_private_files_open_to_others(config: &Config) {
    use secrecy::ExposeSecret;
    let mut paths = db::sqlite_path(config.database_url.expose_secret())
        .map(|database| private_files::sqlite_files(&database))
        .unwrap_or_default();
    let folder = secrets_folder(config);
    if let Ok(entries) = std::fs::read_dir(&folder) {
        paths.extend(entries.filter_map(|e| e.ok().map(|e| e.path())));
    }
    paths.push(folder);
    private_files::warn_if_open_to_others(paths);
}

fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}
