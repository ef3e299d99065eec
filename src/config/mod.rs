//! Typed configuration.
//!
//! Sources, later ones winning: built-in defaults, an optional `dispatch.toml`
//! in the working directory (same names as the environment variables, lower
//! case), then the environment. Every value is parsed and checked at start-up;
//! all problems are reported together, one line each, so an operator fixes
//! them in one pass. Secrets are `SecretString` and print as `[REDACTED]` in
//! `Debug`.
//!
//! One section per file, each declaring its settings
//! ([`Setting`](crate::config::Setting): name, default, one line of doc) and
//! reading them into typed values; [`settings()`](crate::config::settings)
//! lists them all, and a test checks that list against the names the
//! sections actually read and against the README's table.
//!
//! Why no configuration framework: figment used to merge the sources into a
//! map of strings that this module then parsed by hand. Letting it
//! deserialise the typed `Config` instead would stop at the first bad value
//! (serde reports one error), where an operator should see them all; the
//! rules between settings (what production refuses, defaults that depend on
//! the environment) are code either way; and a serde struct does not list its
//! variables for the README check. clap's `env` support reads only the process
//! environment, so tests could not pass their own values without sharing one
//! environment across parallel tests, and it reads no file. What remains of
//! "merging sources" is a TOML parse and a scan of the environment
//! (`settings::from_file_and_environment`), done here with the `toml` crate.
//! `dispatch.toml` is looked for in the working directory only, as the README
//! says; figment also searched the parent directories, which nothing relied on
//! and which could pick up an unrelated file.

mod auth;
mod jobs;
mod limits;
mod notifications;
mod orders;
mod payments;
mod server;
mod settings;
mod storage;
#[cfg(test)]
mod tests;

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use secrecy::{ExposeSecret, SecretString};

use self::settings::Reader;
pub use self::{
    auth::{LoginDelay, is_development_placeholder},
    limits::RateQuota,
    payments::GatewayKind,
    server::{Environment, LogFormat},
    settings::{DefaultValue, Setting},
};

/// Every setting Dispatch reads, section by section. Documented in the
/// README's configuration table (a test keeps the two in step).
pub fn settings() -> impl Iterator<Item = &'static Setting> {
    [
        server::SETTINGS,
        storage::SETTINGS,
        auth::SETTINGS,
        limits::SETTINGS,
        orders::SETTINGS,
        payments::SETTINGS,
        jobs::SETTINGS,
        notifications::SETTINGS,
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// Variables Dispatch used to read: each names its replacement in `doc`, and
/// setting one is a configuration problem. Not in the README's table.
fn retired() -> impl Iterator<Item = &'static Setting> {
    server::RETIRED.iter().copied()
}

/// The settings of one Dispatch process.
#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub bind_addr: SocketAddr,
    /// When set, `/metrics` is also served on this address (worker processes,
    /// which have no API listener, serve it only there).
    pub metrics_addr: Option<SocketAddr>,
    /// When set, `/metrics` is served on the API listener to requests
    /// carrying `Authorization: Bearer <token>`; when unset, not at all there.
    pub metrics_token: Option<SecretString>,
    pub database_url: SecretString,
    pub db_max_connections: u32,
    pub redis_url: Option<SecretString>,
    /// Prefix of every Redis key, so several deployments (or tests) can share one Redis.
    pub redis_key_prefix: String,
    pub data_dir: PathBuf,
    pub jwt_access_secret: SecretString,
    pub jwt_refresh_secret: SecretString,
    pub jwt_access_ttl: Duration,
    pub jwt_refresh_ttl: Duration,
    pub payment_gateway: GatewayKind,
    pub stripe_secret_key: Option<SecretString>,
    pub stripe_api_base: String,
    pub stripe_webhook_secrets: Vec<SecretString>,
    /// ISO 4217 code, lower-case as Stripe writes it.
    pub shop_currency: crate::money::Currency,
    pub order_payment_timeout: Duration,
    /// A checkout whose payment was never created (its process died and the
    /// client never retried) is undone this long after it started.
    pub order_recovery_after: Duration,
    /// PENDING orders older than this are checked with the provider, in case
    /// their webhook was lost.
    pub payment_reconcile_after: Duration,
    /// How long an in-flight idempotency key belongs to its request before a
    /// retry may take it over (the request's process presumably died).
    pub idempotency_lease: Duration,
    /// Timeout of one call to Stripe (the client retries on top).
    pub stripe_timeout: Duration,
    /// Simulated gateway: delay before it confirms a PaymentIntent by webhook;
    /// `None` (`off`) leaves payments unconfirmed (tests send the events).
    pub simulated_payment_delay: Option<Duration>,
    /// Simulated gateway: totals whose minor units end in these digits are
    /// declined, like Stripe's decline test cards.
    pub simulated_decline_suffix: String,
    pub admin_username: String,
    pub admin_password: SecretString,
    pub cors_origins: Vec<String>,
    pub log_format: LogFormat,
    pub log_level: String,
    pub seed_demo_data: bool,
    pub rate_limit_login: Option<RateQuota>,
    pub rate_limit_register: Option<RateQuota>,
    pub rate_limit_orders: Option<RateQuota>,
    pub migrate_on_start: bool,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    pub cache_ttl: Duration,
    /// Proxies in front of Dispatch that append to `X-Forwarded-For`
    /// (`crate::http::client_ip`); 0 takes the socket peer.
    pub trusted_proxy_hops: usize,
    /// How long a connection may take to send a whole request head.
    pub http_header_read_timeout: Duration,
    /// How long a kept-alive connection may wait for its next request.
    pub http_idle_timeout: Duration,
    /// Open connections per process (`crate::http::serve`).
    pub http_max_connections: usize,
    /// In-process cache: the most its entries may weigh together, bytes.
    pub cache_max_bytes: u64,
    /// Argon2id memory cost. The default is OWASP's recommendation; tests lower it.
    pub password_hash_memory_kib: u32,
    /// Password hashes and checks running at once in this process.
    pub password_hash_concurrency: usize,
    /// Password checks that may wait for a turn beyond those running.
    pub password_hash_queue: usize,
    /// How long a password check waits for a turn before `server_busy`.
    pub password_hash_wait: Duration,
    /// Failed password checks per client address, across accounts.
    pub rate_limit_login_address: Option<RateQuota>,
    /// The per-account slow-down after repeated failed password checks.
    pub login_delay: LoginDelay,
    /// Workers per queue (`JOB_CONCURRENCY_<QUEUE>`), where set.
    pub job_concurrency: BTreeMap<String, usize>,
    /// Fallback wake-up of idle workers.
    pub job_poll_interval: Duration,
    /// How long a claimed job belongs to its worker without a heartbeat.
    pub job_lease: Duration,
    /// How long running jobs may take to finish at shutdown.
    pub job_shutdown_grace: Duration,
    /// How long succeeded and discarded jobs are kept.
    pub job_retention: Duration,
    /// Interval of the notification stream's keep-alive comments, and of its
    /// session re-checks (a revoked session ends the stream within it).
    pub sse_keep_alive: Duration,
    /// Open notification streams per user (in one process).
    pub sse_max_per_user: usize,
    /// Open notification streams per process.
    pub sse_max_streams: usize,
    /// Read notifications older than this are deleted.
    pub notification_retention: Duration,
}

/// Every problem found in the configuration, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl Config {
    /// Reads defaults, `dispatch.toml` and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let all: Vec<_> = settings().chain(retired()).collect();
        let raw = settings::from_file_and_environment("dispatch.toml".as_ref(), &all)
            .map_err(|problems| ConfigError { problems })?;
        Self::from_raw(raw)
    }

    /// Builds a configuration from explicit `NAME=value` pairs only (no file, no
    /// process environment). Used by tests and tools that must not inherit the
    /// caller's environment.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Result<Self, ConfigError> {
        let all: Vec<_> = settings().chain(retired()).collect();
        let raw = pairs
            .into_iter()
            .filter_map(|(name, value)| {
                let setting = all.iter().find(|s| s.env.eq_ignore_ascii_case(name))?;
                Some((setting.env, value))
            })
            .collect();
        Self::from_raw(raw)
    }

    fn from_raw(raw: BTreeMap<&'static str, String>) -> Result<Self, ConfigError> {
        let mut reader = Reader::new(raw);
        for old in retired() {
            if reader.is_given(old) {
                reader.problem(format!("{} is no longer read: {}", old.env, old.doc));
            }
        }
        let config = Self::read(&mut reader);
        let problems = reader.into_problems();
        match config {
            Some(config) if problems.is_empty() => Ok(config),
            _ if !problems.is_empty() => Err(ConfigError { problems }),
            // Every section returns a value when it recorded no problem.
            _ => Err(ConfigError {
                problems: vec!["internal: a section parsed without error gave no value".into()],
            }),
        }
    }

    /// Reads every section (all of them, so every problem is recorded) and
    /// assembles the result if each one succeeded.
    fn read(r: &mut Reader) -> Option<Self> {
        let environment = server::environment(r);
        let production = environment == Some(Environment::Production);
        let server = server::read(r, production);
        let storage = storage::read(r, production);
        let auth = auth::read(r, production);
        let limits = limits::read(r);
        let orders = orders::read(r);
        let payments = payments::read(r, production);
        let jobs = jobs::read(r);
        let notifications = notifications::read(r);
        let (server, storage, auth, limits) = (server?, storage?, auth?, limits?);
        let (orders, payments, jobs, notifications) = (orders?, payments?, jobs?, notifications?);
        Some(Config {
            environment: environment?,
            bind_addr: server.bind_addr,
            metrics_addr: server.metrics_addr,
            metrics_token: server.metrics_token,
            cors_origins: server.cors_origins,
            request_timeout: server.request_timeout,
            body_limit_bytes: server.body_limit_bytes,
            trusted_proxy_hops: server.trusted_proxy_hops,
            http_header_read_timeout: server.http_header_read_timeout,
            http_idle_timeout: server.http_idle_timeout,
            http_max_connections: server.http_max_connections,
            log_format: server.log_format,
            log_level: server.log_level,
            data_dir: storage.data_dir,
            database_url: storage.database_url,
            db_max_connections: storage.db_max_connections,
            migrate_on_start: storage.migrate_on_start,
            seed_demo_data: storage.seed_demo_data,
            redis_url: storage.redis_url,
            redis_key_prefix: storage.redis_key_prefix,
            cache_ttl: storage.cache_ttl,
            cache_max_bytes: storage.cache_max_bytes,
            jwt_access_secret: auth.jwt_access_secret,
            jwt_refresh_secret: auth.jwt_refresh_secret,
            jwt_access_ttl: auth.jwt_access_ttl,
            jwt_refresh_ttl: auth.jwt_refresh_ttl,
            password_hash_memory_kib: auth.password_hash_memory_kib,
            password_hash_concurrency: auth.password_hash_concurrency,
            password_hash_queue: auth.password_hash_queue,
            password_hash_wait: auth.password_hash_wait,
            rate_limit_login_address: auth.rate_limit_login_address,
            login_delay: auth.login_delay,
            admin_username: auth.admin_username,
            admin_password: auth.admin_password,
            rate_limit_login: limits.rate_limit_login,
            rate_limit_register: limits.rate_limit_register,
            rate_limit_orders: limits.rate_limit_orders,
            shop_currency: orders.shop_currency,
            order_payment_timeout: orders.order_payment_timeout,
            order_recovery_after: orders.order_recovery_after,
            payment_reconcile_after: orders.payment_reconcile_after,
            idempotency_lease: orders.idempotency_lease,
            payment_gateway: payments.payment_gateway,
            stripe_secret_key: payments.stripe_secret_key,
            stripe_api_base: payments.stripe_api_base,
            stripe_webhook_secrets: payments.stripe_webhook_secrets,
            stripe_timeout: payments.stripe_timeout,
            simulated_payment_delay: payments.simulated_payment_delay,
            simulated_decline_suffix: payments.simulated_decline_suffix,
            job_concurrency: jobs.job_concurrency,
            job_poll_interval: jobs.job_poll_interval,
            job_lease: jobs.job_lease,
            job_shutdown_grace: jobs.job_shutdown_grace,
            job_retention: jobs.job_retention,
            sse_keep_alive: notifications.sse_keep_alive,
            sse_max_per_user: notifications.sse_max_per_user,
            sse_max_streams: notifications.sse_max_streams,
            notification_retention: notifications.notification_retention,
        })
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    pub fn database_is_sqlite(&self) -> bool {
        self.database_url.expose_secret().starts_with("sqlite:")
    }
}
