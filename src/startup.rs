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
    auth::{password::PasswordHasher, sessions::SessionGate, tokens::TokenKeys},
    cache::{MemoryCache, RedisCache, SharedCache},
    config::{self, Config},
    db::{self, Database},
    http::{extract::TrustForwardedFor, health, middleware as mw},
    jobs::{
        diagnostics, maintenance,
        registry::{JobServices, Registry},
        scheduler::{self, Periodic},
        worker::{WorkerPool, WorkerSettings},
    },
    kv::Kv,
    locks::{MemoryLocks, RedisLocks, SharedLocks},
    rate_limit::{MemoryRateLimiter, Quotas, RedisRateLimiter, SharedRateLimiter},
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
    let kv = match &config.redis_url {
        Some(url) => Some(Kv::connect(url, &config.redis_key_prefix).context("REDIS_URL")?),
        None => None,
    };
    let quotas = Quotas::new(
        config.rate_limit_login,
        config.rate_limit_register,
        config.rate_limit_orders,
    );
    let (cache, rate_limiter, locks): (SharedCache, SharedRateLimiter, SharedLocks) = match &kv {
        Some(kv) => (
            Arc::new(RedisCache::new(kv.clone())),
            Arc::new(RedisRateLimiter::new(kv.clone(), quotas)),
            Arc::new(RedisLocks::new(kv.clone())),
        ),
        None => (
            Arc::new(MemoryCache::new(config.cache_ttl, config.cache_max_bytes)),
            Arc::new(MemoryRateLimiter::new(&quotas)),
            Arc::new(MemoryLocks::default()),
        ),
    };
    let tokens = TokenKeys::new(
        &config.jwt_access_secret,
        &config.jwt_refresh_secret,
        config.jwt_access_ttl,
        config.jwt_refresh_ttl,
    );
    let passwords =
        PasswordHasher::new(config.password_hash_memory_kib).context("PASSWORD_HASH_MEMORY_KIB")?;
    let gateway = crate::payments::gateway_from_config(&config).context("payment gateway")?;
    let sessions = SessionGate::new(Arc::clone(&cache), config.cache_ttl);
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
    Ok(AppState::new(Services {
        config,
        db,
        kv,
        cache,
        rate_limiter,
        tokens,
        passwords,
        sessions,
        gateway: gateway.gateway,
        simulated_gateway: gateway.simulated,
        locks,
        notifications: crate::notifications::hub::NotificationHub::new(),
        metrics: telemetry::metrics_handle(),
    }))
}

/// The whole HTTP application: API, docs, health, with every middleware.
pub fn router(state: &AppState) -> Router {
    let (api, document) = crate::api::api_router();
    let config = &state.config;
    let timeout =
        TimeoutLayer::with_status_code(StatusCode::SERVICE_UNAVAILABLE, config.request_timeout);
    api.merge(SwaggerUi::new("/api/docs").url("/api/openapi.json", document))
        .merge(crate::jobs::dashboard::router(state))
        .layer(DefaultBodyLimit::max(config.body_limit_bytes))
        .layer(timeout)
        .layer(CatchPanicLayer::new())
        .layer(middleware::from_fn(mw::render_problems))
        .layer(middleware::from_fn_with_state(
            config.is_production(),
            mw::security_headers,
        ))
        .layer(mw::cors(&config.cors_origins))
        .layer(axum::Extension(TrustForwardedFor(
            config.trust_forwarded_for,
        )))
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
    let server = axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown.clone().cancelled_owned());
    let server = tokio::spawn(async move { server.await });
    shutdown.cancelled().await;
    match tokio::time::timeout(SHUTDOWN_GRACE, server).await {
        Ok(result) => result.context("server task")?.context("serving HTTP")?,
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

pub async fn spawn_metrics_listener(
    state: AppState,
    address: SocketAddr,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(address)
        .await
        .with_context(|| format!("binding METRICS_ADDR {address}"))?;
    let app = Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let state = state.clone();
            async move {
                health::record_queue_gauges(&state).await;
                health::render_metrics(&state)
            }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(shutdown.cancelled_owned())
            .await;
    });
    Ok(())
}

/// Replaces development placeholder secrets by values generated once and
/// kept in `DATA_DIR/secrets/`, so tokens survive restarts. Production never
/// gets here with a placeholder (configuration refuses it).
fn resolve_development_secrets(config: &mut Config) -> anyhow::Result<()> {
    let folder = config.data_dir.join("secrets");
    let resolve = |secret: &mut SecretString, name: &str| -> anyhow::Result<bool> {
        if !config::is_development_placeholder(secret, name) {
            return Ok(false);
        }
        let path = folder.join(name);
        let (value, created) = match std::fs::read_to_string(&path) {
            Ok(value) if !value.trim().is_empty() => (value.trim().to_owned(), false),
            _ => {
                std::fs::create_dir_all(&folder)
                    .with_context(|| format!("creating {}", folder.display()))?;
                let value = random_secret();
                write_private(&path, &value)?;
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

fn random_secret() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn write_private(path: &std::path::Path, value: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(value.as_bytes())?;
    Ok(())
}
