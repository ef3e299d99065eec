//! Typed configuration.
//!
//! Sources, later ones winning: built-in defaults, an optional `dispatch.toml`
//! in the working directory (string values, same names as the environment
//! variables but lower-case), then the environment. Every value is parsed and
//! checked at start-up; all problems are reported together, one line each, so
//! an operator fixes them in one pass. Secrets are `SecretString` and print as
//! `[REDACTED]` in `Debug`.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    Figment,
    providers::{Env, Format, Serialized, Toml},
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Every environment variable Dispatch reads, with its default (if any).
/// Documented in the README's configuration table.
const KEYS: &[&str] = &[
    "dispatch_env",
    "bind_addr",
    "metrics_addr",
    "database_url",
    "db_max_connections",
    "redis_url",
    "redis_key_prefix",
    "data_dir",
    "jwt_access_secret",
    "jwt_refresh_secret",
    "jwt_access_ttl",
    "jwt_refresh_ttl",
    "payment_gateway",
    "stripe_secret_key",
    "stripe_api_base",
    "stripe_webhook_secrets",
    "shop_currency",
    "order_payment_timeout",
    "order_recovery_after",
    "payment_reconcile_after",
    "idempotency_lease",
    "stripe_timeout",
    "simulated_payment_delay",
    "simulated_decline_suffix",
    "admin_username",
    "admin_password",
    "cors_origins",
    "log_format",
    "log_level",
    "seed_demo_data",
    "rate_limit_login",
    "rate_limit_register",
    "rate_limit_orders",
    "migrate_on_start",
    "request_timeout",
    "body_limit",
    "cache_ttl",
    "trust_forwarded_for",
    "password_hash_memory_kib",
    "job_concurrency_orders",
    "job_concurrency_payments",
    "job_concurrency_notifications",
    "job_concurrency_maintenance",
    "job_poll_interval",
    "job_lease",
    "job_shutdown_grace",
    "job_retention",
    "sse_keep_alive",
    "notification_retention",
];

/// Values that stand in for secrets in development and must never reach production.
const DEVELOPMENT_SECRET_MARKER: &str = "dev-only-";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayKind {
    Simulated,
    Stripe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

/// A rate limit: at most `requests` per `period`, per key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateQuota {
    pub requests: u32,
    pub period: Duration,
}

impl RateQuota {
    /// Parses `N/period` (`5/min`, `100/h`, `10/30s`); `off` disables the limit.
    pub fn parse(text: &str) -> Result<Option<Self>, String> {
        let text = text.trim();
        if text.eq_ignore_ascii_case("off") {
            return Ok(None);
        }
        let (count, period) = text
            .split_once('/')
            .ok_or_else(|| format!("expected N/period or off, got {text:?}"))?;
        let requests: u32 = count
            .trim()
            .parse()
            .map_err(|_| format!("{count:?} is not a whole number"))?;
        if requests == 0 {
            return Err("the number of requests must be at least 1".into());
        }
        let period = period.trim();
        let period = if period.starts_with(|c: char| c.is_ascii_digit()) {
            humantime::parse_duration(period)
        } else {
            humantime::parse_duration(&format!("1{period}"))
        }
        .map_err(|e| format!("period {period:?}: {e}"))?;
        if period.is_zero() {
            return Err("the period must be longer than zero".into());
        }
        Ok(Some(Self { requests, period }))
    }
}

/// The settings of one Dispatch process.
#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub bind_addr: SocketAddr,
    /// When set, `/metrics` is also served on this address (worker processes,
    /// which have no API listener, serve it only there).
    pub metrics_addr: Option<SocketAddr>,
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
    pub shop_currency: String,
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
    /// Take the client address from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Argon2id memory cost. The default is OWASP's recommendation; tests lower it.
    pub password_hash_memory_kib: u32,
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
    /// Read notifications older than this are deleted.
    pub notification_retention: Duration,
}

/// Every problem found in the configuration, one per line.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .problems.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub struct ConfigError {
    pub problems: Vec<String>,
}

/// Values as the sources gave them: the environment provider turns `8` into
/// a number and `true` into a boolean, so every scalar is accepted here and
/// read back as text; [`Parser`] does the real typing.
#[derive(Debug, Default, Deserialize)]
struct RawConfig(BTreeMap<String, figment::value::Value>);

fn scalar_text(value: &figment::value::Value) -> Option<String> {
    use figment::value::Value;
    match value {
        Value::String(_, s) => Some(s.clone()),
        Value::Char(_, c) => Some(c.to_string()),
        Value::Bool(_, b) => Some(b.to_string()),
        Value::Num(..) => serde_json::to_value(value).ok().map(|v| v.to_string()),
        Value::Empty(..) => Some(String::new()),
        Value::Dict(..) | Value::Array(..) => None,
    }
}

impl Config {
    /// Reads defaults, `dispatch.toml` and the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        let figment = Figment::new()
            .merge(Toml::file("dispatch.toml"))
            .merge(Env::raw().only(KEYS));
        Self::from_figment(&figment)
    }

    /// Builds a configuration from explicit `NAME=value` pairs only (no file, no
    /// process environment). Used by tests and tools that must not inherit the
    /// caller's environment.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, String)>,
    ) -> Result<Self, ConfigError> {
        let map: BTreeMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v))
            .collect();
        Self::from_figment(&Figment::new().merge(Serialized::defaults(map)))
    }

    fn from_figment(figment: &Figment) -> Result<Self, ConfigError> {
        let raw: RawConfig = figment.extract().map_err(|e| ConfigError {
            problems: e.into_iter().map(|e| e.to_string()).collect(),
        })?;
        let mut problems = Vec::new();
        let mut values = BTreeMap::new();
        for (key, value) in raw.0 {
            match scalar_text(&value) {
                Some(text) => {
                    values.insert(key, text);
                }
                None => problems.push(format!(
                    "{}: expected a single value",
                    key.to_ascii_uppercase()
                )),
            }
        }
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        Parser::new(values).parse()
    }

    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }

    pub fn database_is_sqlite(&self) -> bool {
        self.database_url.expose_secret().starts_with("sqlite:")
    }
}

/// Parses raw strings into typed values, collecting every problem.
struct Parser {
    raw: BTreeMap<String, String>,
    problems: Vec<String>,
}

impl Parser {
    fn new(raw: BTreeMap<String, String>) -> Self {
        Self {
            raw,
            problems: Vec::new(),
        }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.raw
            .get(key)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    fn value<T>(
        &mut self,
        key: &str,
        default: &str,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Option<T> {
        let text = self.get(key).unwrap_or(default).to_owned();
        match parse(&text) {
            Ok(value) => Some(value),
            Err(why) => {
                self.problems
                    .push(format!("{}: {why}", key.to_ascii_uppercase()));
                None
            }
        }
    }

    fn secret(&self, key: &str) -> Option<SecretString> {
        self.get(key).map(|v| SecretString::from(v.to_owned()))
    }

    fn problem(&mut self, text: impl Into<String>) {
        self.problems.push(text.into());
    }

    fn parse(mut self) -> Result<Config, ConfigError> {
        let environment = self.value("dispatch_env", "development", |v| match v {
            "development" => Ok(Environment::Development),
            "production" => Ok(Environment::Production),
            other => Err(format!("expected development or production, got {other:?}")),
        });
        let production = environment == Some(Environment::Production);
        let bind_addr = self.value("bind_addr", "127.0.0.1:3000", parse_socket_addr);
        let metrics_addr = match self.get("metrics_addr").map(str::to_owned) {
            Some(text) => self
                .value("metrics_addr", "", |_| parse_socket_addr(&text))
                .map(Some),
            None => Some(None),
        };
        let data_dir = PathBuf::from(self.get("data_dir").unwrap_or("./data"));
        let default_db = format!("sqlite://{}/dispatch.db", data_dir.display());
        let database_url = self.value("database_url", &default_db, |v| {
            if v.starts_with("sqlite:")
                || v.starts_with("postgres://")
                || v.starts_with("postgresql://")
            {
                Ok(SecretString::from(v.to_owned()))
            } else {
                Err("expected a sqlite:// or postgres:// URL".into())
            }
        });
        let db_max_connections = self.value("db_max_connections", "16", |v| {
            parse_number::<u32>(v).and_then(|n| {
                if n >= 2 {
                    Ok(n)
                } else {
                    Err("must be at least 2 (one writer, one reader)".into())
                }
            })
        });
        let redis_url = self.secret("redis_url");
        if let Some(url) = &redis_url
            && !(url.expose_secret().starts_with("redis://")
                || url.expose_secret().starts_with("rediss://"))
        {
            self.problem("REDIS_URL: expected a redis:// or rediss:// URL");
        }
        let redis_key_prefix = self
            .get("redis_key_prefix")
            .unwrap_or("dispatch:")
            .to_owned();

        let jwt_access_secret = self.signing_secret("jwt_access_secret", production);
        let jwt_refresh_secret = self.signing_secret("jwt_refresh_secret", production);
        let jwt_access_ttl = self.value("jwt_access_ttl", "15m", parse_duration);
        let jwt_refresh_ttl = self.value("jwt_refresh_ttl", "7d", parse_duration);

        let payment_gateway = self.value("payment_gateway", "simulated", |v| match v {
            "simulated" => Ok(GatewayKind::Simulated),
            "stripe" => Ok(GatewayKind::Stripe),
            other => Err(format!("expected simulated or stripe, got {other:?}")),
        });
        let stripe_secret_key = self.secret("stripe_secret_key");
        let stripe_api_base = self
            .get("stripe_api_base")
            .unwrap_or("https://api.stripe.com")
            .trim_end_matches('/')
            .to_owned();
        let mut stripe_webhook_secrets: Vec<SecretString> = self
            .get("stripe_webhook_secrets")
            .unwrap_or("")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| SecretString::from(s.to_owned()))
            .collect();
        if payment_gateway == Some(GatewayKind::Simulated) && stripe_webhook_secrets.is_empty() {
            // The simulated gateway signs its webhooks too; start-up replaces
            // this placeholder with a key kept in the data directory.
            stripe_webhook_secrets.push(generated_development_secret("stripe_webhook_secret"));
        }
        if payment_gateway == Some(GatewayKind::Stripe) {
            if stripe_secret_key.is_none() {
                self.problem("STRIPE_SECRET_KEY: required when PAYMENT_GATEWAY=stripe");
            }
            if stripe_webhook_secrets.is_empty() {
                self.problem("STRIPE_WEBHOOK_SECRETS: required when PAYMENT_GATEWAY=stripe");
            }
        }
        if production && payment_gateway == Some(GatewayKind::Simulated) {
            self.problem("PAYMENT_GATEWAY: the simulated gateway is refused in production; set PAYMENT_GATEWAY=stripe");
        }

        let shop_currency = self.value("shop_currency", "usd", |v| {
            if v.len() == 3 && v.chars().all(|c| c.is_ascii_alphabetic()) {
                Ok(v.to_ascii_lowercase())
            } else {
                Err(format!("expected a three-letter ISO 4217 code, got {v:?}"))
            }
        });
        let order_payment_timeout = self.value("order_payment_timeout", "30m", parse_duration);
        let order_recovery_after = self.value("order_recovery_after", "5m", parse_duration);
        let payment_reconcile_after = self.value("payment_reconcile_after", "5m", parse_duration);
        let idempotency_lease = self.value("idempotency_lease", "60s", parse_duration);
        let stripe_timeout = self.value("stripe_timeout", "20s", parse_duration);
        let simulated_payment_delay = self.value("simulated_payment_delay", "300ms", |v| {
            if v.eq_ignore_ascii_case("off") {
                Ok(None)
            } else {
                parse_duration(v).map(Some)
            }
        });
        let simulated_decline_suffix = self.value("simulated_decline_suffix", "02", |v| {
            if !v.is_empty() && v.len() <= 6 && v.bytes().all(|b| b.is_ascii_digit()) {
                Ok(v.to_owned())
            } else {
                Err(format!("expected 1 to 6 digits, got {v:?}"))
            }
        });

        let admin_username = self.get("admin_username").unwrap_or("admin").to_owned();
        let admin_password = match self.secret("admin_password") {
            Some(secret) => Some(secret),
            None if production => {
                self.problem(
                    "ADMIN_PASSWORD: required in production (dashboard Basic credentials)",
                );
                None
            }
            None => Some(generated_development_secret("admin_password")),
        };

        let cors_origins = self
            .get("cors_origins")
            .unwrap_or("http://localhost:5173")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>();
        for origin in &cors_origins {
            if axum::http::HeaderValue::from_str(origin).is_err() || !origin.contains("://") {
                self.problems.push(format!(
                    "CORS_ORIGINS: {origin:?} is not an origin like https://shop.example"
                ));
            }
        }

        let default_log_format = if production { "json" } else { "pretty" };
        let log_format = self.value("log_format", default_log_format, |v| match v {
            "json" => Ok(LogFormat::Json),
            "pretty" => Ok(LogFormat::Pretty),
            other => Err(format!("expected json or pretty, got {other:?}")),
        });
        let log_level = self.get("log_level").unwrap_or("info").to_owned();
        if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
            self.problem(format!("LOG_LEVEL: {log_level:?} is not a valid filter"));
        }

        let default_seed = if production { "false" } else { "true" };
        let seed_demo_data = self.value("seed_demo_data", default_seed, parse_bool);
        if production && seed_demo_data == Some(true) {
            self.problem("SEED_DEMO_DATA: demo seeding is refused in production");
        }

        let rate_limit_login = self.value("rate_limit_login", "5/min", RateQuota::parse);
        let rate_limit_register = self.value("rate_limit_register", "10/min", RateQuota::parse);
        let rate_limit_orders = self.value("rate_limit_orders", "30/min", RateQuota::parse);
        let migrate_on_start = self.value("migrate_on_start", "true", parse_bool);
        let request_timeout = self.value("request_timeout", "30s", parse_duration);
        let body_limit_bytes = self.value("body_limit", "262144", parse_number::<usize>);
        let cache_ttl = self.value("cache_ttl", "60s", parse_duration);
        let trust_forwarded_for = self.value("trust_forwarded_for", "false", parse_bool);
        let password_hash_memory_kib = self.value("password_hash_memory_kib", "19456", |v| {
            parse_number::<u32>(v).and_then(|n| {
                if n >= 8 {
                    Ok(n)
                } else {
                    Err("must be at least 8".into())
                }
            })
        });
        let mut job_concurrency = BTreeMap::new();
        for queue in ["orders", "payments", "notifications", "maintenance"] {
            let key = format!("job_concurrency_{queue}");
            if let Some(text) = self.get(&key).map(str::to_owned)
                && let Some(n) = self.value(&key, "", |_| parse_number::<usize>(&text))
            {
                job_concurrency.insert(queue.to_owned(), n);
            }
        }
        let job_poll_interval = self.value("job_poll_interval", "1s", parse_duration);
        let job_lease = self.value("job_lease", "30s", parse_duration);
        let job_shutdown_grace = self.value("job_shutdown_grace", "20s", parse_duration);
        let job_retention = self.value("job_retention", "7d", parse_duration);
        let sse_keep_alive = self.value("sse_keep_alive", "15s", parse_duration);
        let notification_retention = self.value("notification_retention", "30d", parse_duration);
        if production && password_hash_memory_kib.is_some_and(|m| m < 19456) {
            self.problem("PASSWORD_HASH_MEMORY_KIB: below 19456 KiB is refused in production");
        }

        if !self.problems.is_empty() {
            return Err(ConfigError {
                problems: self.problems,
            });
        }
        // Every `value` above returned Some when no problem was recorded.
        let missing = || ConfigError {
            problems: vec!["internal: a value parsed without error was missing".into()],
        };
        Ok(Config {
            environment: environment.ok_or_else(missing)?,
            bind_addr: bind_addr.ok_or_else(missing)?,
            metrics_addr: metrics_addr.ok_or_else(missing)?,
            database_url: database_url.ok_or_else(missing)?,
            db_max_connections: db_max_connections.ok_or_else(missing)?,
            redis_url,
            redis_key_prefix,
            data_dir,
            jwt_access_secret: jwt_access_secret.ok_or_else(missing)?,
            jwt_refresh_secret: jwt_refresh_secret.ok_or_else(missing)?,
            jwt_access_ttl: jwt_access_ttl.ok_or_else(missing)?,
            jwt_refresh_ttl: jwt_refresh_ttl.ok_or_else(missing)?,
            payment_gateway: payment_gateway.ok_or_else(missing)?,
            stripe_secret_key,
            stripe_api_base,
            stripe_webhook_secrets,
            shop_currency: shop_currency.ok_or_else(missing)?,
            order_payment_timeout: order_payment_timeout.ok_or_else(missing)?,
            order_recovery_after: order_recovery_after.ok_or_else(missing)?,
            payment_reconcile_after: payment_reconcile_after.ok_or_else(missing)?,
            idempotency_lease: idempotency_lease.ok_or_else(missing)?,
            stripe_timeout: stripe_timeout.ok_or_else(missing)?,
            simulated_payment_delay: simulated_payment_delay.ok_or_else(missing)?,
            simulated_decline_suffix: simulated_decline_suffix.ok_or_else(missing)?,
            admin_username,
            admin_password: admin_password.ok_or_else(missing)?,
            cors_origins,
            log_format: log_format.ok_or_else(missing)?,
            log_level,
            seed_demo_data: seed_demo_data.ok_or_else(missing)?,
            rate_limit_login: rate_limit_login.ok_or_else(missing)?,
            rate_limit_register: rate_limit_register.ok_or_else(missing)?,
            rate_limit_orders: rate_limit_orders.ok_or_else(missing)?,
            migrate_on_start: migrate_on_start.ok_or_else(missing)?,
            request_timeout: request_timeout.ok_or_else(missing)?,
            body_limit_bytes: body_limit_bytes.ok_or_else(missing)?,
            cache_ttl: cache_ttl.ok_or_else(missing)?,
            trust_forwarded_for: trust_forwarded_for.ok_or_else(missing)?,
            password_hash_memory_kib: password_hash_memory_kib.ok_or_else(missing)?,
            job_concurrency,
            job_poll_interval: job_poll_interval.ok_or_else(missing)?,
            job_lease: job_lease.ok_or_else(missing)?,
            job_shutdown_grace: job_shutdown_grace.ok_or_else(missing)?,
            job_retention: job_retention.ok_or_else(missing)?,
            sse_keep_alive: sse_keep_alive.ok_or_else(missing)?,
            notification_retention: notification_retention.ok_or_else(missing)?,
        })
    }

    /// A JWT signing key: required and strong in production; in development a
    /// placeholder that `startup` replaces with a key generated once and kept in
    /// the data directory.
    fn signing_secret(&mut self, key: &str, production: bool) -> Option<SecretString> {
        match self.secret(key) {
            Some(secret) if production && secret.expose_secret().len() < 32 => {
                self.problem(format!(
                    "{}: must be at least 32 characters in production",
                    key.to_ascii_uppercase()
                ));
                None
            }
            Some(secret)
                if production
                    && secret
                        .expose_secret()
                        .starts_with(DEVELOPMENT_SECRET_MARKER) =>
            {
                self.problem(format!(
                    "{}: a development secret is refused in production",
                    key.to_ascii_uppercase()
                ));
                None
            }
            Some(secret) => Some(secret),
            None if production => {
                self.problem(format!(
                    "{}: required in production",
                    key.to_ascii_uppercase()
                ));
                None
            }
            None => Some(generated_development_secret(key)),
        }
    }
}

/// Marks a secret that `startup::resolve_development_secrets` must replace with
/// a value generated once and stored in the data directory.
fn generated_development_secret(name: &str) -> SecretString {
    SecretString::from(format!("{DEVELOPMENT_SECRET_MARKER}{name}"))
}

/// Whether this secret is the development placeholder for `name`.
pub fn is_development_placeholder(secret: &SecretString, name: &str) -> bool {
    secret.expose_secret() == format!("{DEVELOPMENT_SECRET_MARKER}{name}")
}

fn parse_socket_addr(v: &str) -> Result<SocketAddr, String> {
    v.parse()
        .map_err(|_| format!("{v:?} is not an address like 127.0.0.1:3000"))
}

fn parse_duration(v: &str) -> Result<Duration, String> {
    let duration =
        humantime::parse_duration(v).map_err(|e| format!("{v:?}: {e} (examples: 30s, 15m, 7d)"))?;
    if duration.is_zero() {
        return Err("must be longer than zero".into());
    }
    Ok(duration)
}

fn parse_bool(v: &str) -> Result<bool, String> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

fn parse_number<T: std::str::FromStr>(v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{v:?} is not a valid number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_give_the_embedded_development_setup() {
        let config = Config::from_pairs([]).unwrap();
        assert_eq!(config.environment, Environment::Development);
        assert!(config.database_is_sqlite());
        assert!(config.redis_url.is_none());
        assert_eq!(config.payment_gateway, GatewayKind::Simulated);
        assert_eq!(config.jwt_access_ttl, Duration::from_secs(15 * 60));
        assert_eq!(
            config.rate_limit_login,
            Some(RateQuota {
                requests: 5,
                period: Duration::from_secs(60)
            })
        );
        assert!(config.seed_demo_data);
    }

    #[test]
    fn production_refuses_default_secrets_simulated_gateway_and_seeding() {
        let err = Config::from_pairs([
            ("DISPATCH_ENV", "production".into()),
            ("SEED_DEMO_DATA", "true".into()),
        ])
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("JWT_ACCESS_SECRET: required in production"),
            "{text}"
        );
        assert!(
            text.contains("JWT_REFRESH_SECRET: required in production"),
            "{text}"
        );
        assert!(text.contains("PAYMENT_GATEWAY"), "{text}");
        assert!(text.contains("SEED_DEMO_DATA"), "{text}");
        assert!(text.contains("ADMIN_PASSWORD"), "{text}");
    }

    #[test]
    fn every_problem_is_reported_on_its_own_line() {
        let err = Config::from_pairs([
            ("BIND_ADDR", "nowhere".into()),
            ("JWT_ACCESS_TTL", "soon".into()),
            ("RATE_LIMIT_LOGIN", "5 per minute".into()),
        ])
        .unwrap_err();
        assert_eq!(err.problems.len(), 3, "{:?}", err.problems);
    }

    #[test]
    fn numbers_and_booleans_from_the_environment_are_read_as_text() {
        let figment = Figment::new().merge(figment::providers::Serialized::defaults(
            serde_json::json!({
                "db_max_connections": 8,
                "seed_demo_data": false,
            }),
        ));
        let config = Config::from_figment(&figment).unwrap();
        assert_eq!(config.db_max_connections, 8);
        assert!(!config.seed_demo_data);
    }

    #[test]
    fn secrets_are_redacted_in_debug_output() {
        let config =
            Config::from_pairs([("JWT_ACCESS_SECRET", "super-secret-value-1234567890".into())])
                .unwrap();
        assert!(!format!("{config:?}").contains("super-secret-value"));
    }

    #[test]
    fn rate_quotas_parse_counts_and_periods() {
        assert_eq!(RateQuota::parse("off").unwrap(), None);
        assert_eq!(
            RateQuota::parse("100/h").unwrap(),
            Some(RateQuota {
                requests: 100,
                period: Duration::from_secs(3600)
            })
        );
        assert_eq!(
            RateQuota::parse("10/30s").unwrap(),
            Some(RateQuota {
                requests: 10,
                period: Duration::from_secs(30)
            })
        );
        assert!(RateQuota::parse("0/min").is_err());
        assert!(RateQuota::parse("five/min").is_err());
    }
}
