//! Sign-in: token keys and lifetimes, password hashing and its budget,
//! sign-in throttling, the dashboard's credentials, and the development
//! placeholders for secrets.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::{
    limits::RateQuota,
    settings::{
        DefaultValue::{Derived, Text},
        Reader, Setting, parse_duration, parse_number,
    },
};

/// Values that stand in for secrets in development and must never reach production.
const DEVELOPMENT_SECRET_MARKER: &str = "dev-only-";

/// Argon2id memory cost recommended by OWASP; production refuses less.
const PRODUCTION_MIN_HASH_MEMORY_KIB: u32 = 19456;

/// Shortest dashboard password production accepts. The dashboard's Basic
/// credentials guard pausing queues and reading every job payload, and an
/// operator types them rarely: 16 characters costs nothing and puts an
/// online guess out of reach even before the sign-in throttling.
const PRODUCTION_MIN_ADMIN_PASSWORD_CHARS: usize = 16;

const JWT_ACCESS_SECRET: Setting = Setting {
    env: "JWT_ACCESS_SECRET",
    default: Derived("development: generated once into DATA_DIR/secrets/"),
    doc: "access-token signing key (at least 32 characters in production)",
};
const JWT_REFRESH_SECRET: Setting = Setting {
    env: "JWT_REFRESH_SECRET",
    default: Derived("development: generated once into DATA_DIR/secrets/"),
    doc: "refresh-token signing key (at least 32 characters in production)",
};
const JWT_ACCESS_TTL: Setting = Setting {
    env: "JWT_ACCESS_TTL",
    default: Text("15m"),
    doc: "access-token lifetime",
};
const JWT_REFRESH_TTL: Setting = Setting {
    env: "JWT_REFRESH_TTL",
    default: Text("7d"),
    doc: "refresh-token lifetime",
};
const PASSWORD_HASH_MEMORY_KIB: Setting = Setting {
    env: "PASSWORD_HASH_MEMORY_KIB",
    default: Text("19456"),
    doc: "argon2id memory cost (at least 19456 in production)",
};
const PASSWORD_HASH_CONCURRENCY: Setting = Setting {
    env: "PASSWORD_HASH_CONCURRENCY",
    default: Derived("the number of CPUs"),
    doc: "password hashes and checks run at once, process-wide",
};
const PASSWORD_HASH_QUEUE: Setting = Setting {
    env: "PASSWORD_HASH_QUEUE",
    default: Text("64"),
    doc: "password checks that may wait for a turn; more answer 503 server_busy",
};
const PASSWORD_HASH_WAIT: Setting = Setting {
    env: "PASSWORD_HASH_WAIT",
    default: Text("2s"),
    doc: "how long a password check waits for a turn before 503 server_busy",
};
const RATE_LIMIT_LOGIN_ADDRESS: Setting = Setting {
    env: "RATE_LIMIT_LOGIN_ADDRESS",
    default: Text("30/min"),
    doc: "failed password checks per client address, across accounts: N/period or off",
};
const LOGIN_DELAY_AFTER: Setting = Setting {
    env: "LOGIN_DELAY_AFTER",
    default: Text("3"),
    doc: "failed password checks of one account before its checks are slowed down",
};
const LOGIN_DELAY_BASE: Setting = Setting {
    env: "LOGIN_DELAY_BASE",
    default: Text("250ms"),
    doc: "first delay of a slowed-down account, doubling with each further failure",
};
const LOGIN_DELAY_MAX: Setting = Setting {
    env: "LOGIN_DELAY_MAX",
    default: Text("2s"),
    doc: "longest delay of a slowed-down account (off: no delay)",
};
const ADMIN_USERNAME: Setting = Setting {
    env: "ADMIN_USERNAME",
    default: Text("admin"),
    doc: "dashboard user name",
};
const ADMIN_PASSWORD: Setting = Setting {
    env: "ADMIN_PASSWORD",
    default: Derived("development: generated, printed once, kept in DATA_DIR/secrets/"),
    doc: "dashboard password (required in production, at least 16 characters)",
};

pub(super) const SETTINGS: &[&Setting] = &[
    &JWT_ACCESS_SECRET,
    &JWT_REFRESH_SECRET,
    &JWT_ACCESS_TTL,
    &JWT_REFRESH_TTL,
    &PASSWORD_HASH_MEMORY_KIB,
    &PASSWORD_HASH_CONCURRENCY,
    &PASSWORD_HASH_QUEUE,
    &PASSWORD_HASH_WAIT,
    &RATE_LIMIT_LOGIN_ADDRESS,
    &LOGIN_DELAY_AFTER,
    &LOGIN_DELAY_BASE,
    &LOGIN_DELAY_MAX,
    &ADMIN_USERNAME,
    &ADMIN_PASSWORD,
];

pub(super) struct Auth {
    pub jwt_access_secret: SecretString,
    pub jwt_refresh_secret: SecretString,
    pub jwt_access_ttl: Duration,
    pub jwt_refresh_ttl: Duration,
    pub password_hash_memory_kib: u32,
    pub password_hash_concurrency: usize,
    pub password_hash_queue: usize,
    pub password_hash_wait: Duration,
    pub rate_limit_login_address: Option<RateQuota>,
    pub login_delay: LoginDelay,
    pub admin_username: String,
    pub admin_password: SecretString,
}

/// The per-account slow-down of sign-in throttling (docs/spec.md §6.7): after
/// `after` failed checks of one account, each further check waits `base`,
/// doubling per failure, up to `max`. `max` zero turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginDelay {
    pub after: u32,
    pub base: Duration,
    pub max: Duration,
}

impl LoginDelay {
    /// The wait before checking a password of an account with `failures`
    /// recent failed checks.
    pub fn for_failures(&self, failures: u32) -> Duration {
        let Some(extra) = failures.checked_sub(self.after) else {
            return Duration::ZERO;
        };
        // 2^extra saturates long before u32 overflows a Duration's multiplier.
        let factor = 1_u32.checked_shl(extra.min(31)).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }
}

/// Positive whole number, or the number of CPUs when not set.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

fn positive(v: &str) -> Result<usize, String> {
    parse_number::<usize>(v).and_then(|n| {
        if n >= 1 {
            Ok(n)
        } else {
            Err("must be at least 1".into())
        }
    })
}

/// `off` is zero (no delay).
fn duration_or_off(v: &str) -> Result<Duration, String> {
    if v.trim().eq_ignore_ascii_case("off") {
        Ok(Duration::ZERO)
    } else {
        parse_duration(v)
    }
}

pub(super) fn read(r: &mut Reader, production: bool) -> Option<Auth> {
    let jwt_access_secret = signing_secret(r, &JWT_ACCESS_SECRET, production);
    let jwt_refresh_secret = signing_secret(r, &JWT_REFRESH_SECRET, production);
    // One key signing both kinds would let a leaked key of either forge the
    // other; the token-type claim alone is then the only thing keeping them apart.
    if production
        && let (Some(access), Some(refresh)) = (&jwt_access_secret, &jwt_refresh_secret)
        && access.expose_secret() == refresh.expose_secret()
    {
        r.problem("JWT_REFRESH_SECRET: must differ from JWT_ACCESS_SECRET in production");
    }
    let jwt_access_ttl = r.duration(&JWT_ACCESS_TTL);
    let jwt_refresh_ttl = r.duration(&JWT_REFRESH_TTL);

    let password_hash_memory_kib = r.parse(&PASSWORD_HASH_MEMORY_KIB, |v| {
        parse_number::<u32>(v).and_then(|n| {
            if n >= 8 {
                Ok(n)
            } else {
                Err("must be at least 8".into())
            }
        })
    });
    if production && password_hash_memory_kib.is_some_and(|m| m < PRODUCTION_MIN_HASH_MEMORY_KIB) {
        r.problem("PASSWORD_HASH_MEMORY_KIB: below 19456 KiB is refused in production");
    }

    let password_hash_concurrency =
        r.parse_or(&PASSWORD_HASH_CONCURRENCY, &cpus().to_string(), positive);
    let password_hash_queue = r.parse(&PASSWORD_HASH_QUEUE, parse_number::<usize>);
    let password_hash_wait = r.duration(&PASSWORD_HASH_WAIT);
    let rate_limit_login_address = r.parse(&RATE_LIMIT_LOGIN_ADDRESS, RateQuota::parse);
    let login_delay_after = r.parse(&LOGIN_DELAY_AFTER, parse_number::<u32>);
    let login_delay_base = r.duration(&LOGIN_DELAY_BASE);
    let login_delay_max = r.parse(&LOGIN_DELAY_MAX, duration_or_off);

    let admin_username = r.text_or_default(&ADMIN_USERNAME);
    let admin_password = admin_password(r, production);

    Some(Auth {
        jwt_access_secret: jwt_access_secret?,
        jwt_refresh_secret: jwt_refresh_secret?,
        jwt_access_ttl: jwt_access_ttl?,
        jwt_refresh_ttl: jwt_refresh_ttl?,
        password_hash_memory_kib: password_hash_memory_kib?,
        password_hash_concurrency: password_hash_concurrency?,
        password_hash_queue: password_hash_queue?,
        password_hash_wait: password_hash_wait?,
        rate_limit_login_address: rate_limit_login_address?,
        login_delay: LoginDelay {
            after: login_delay_after?,
            base: login_delay_base?,
            max: login_delay_max?,
        },
        admin_username,
        admin_password: admin_password?,
    })
}

/// A JWT signing key: required and strong in production; in development a
/// placeholder that `startup` replaces with a key generated once and kept in
/// the data directory.
fn signing_secret(
    r: &mut Reader,
    setting: &'static Setting,
    production: bool,
) -> Option<SecretString> {
    let name = setting.env;
    match r.secret(setting) {
        Some(secret) if production && refuse_placeholder(r, name, &secret) => None,
        Some(secret) if production && secret.expose_secret().len() < 32 => {
            r.problem(format!(
                "{name}: must be at least 32 characters in production"
            ));
            None
        }
        Some(secret) => Some(secret),
        None if production => {
            r.problem(format!("{name}: required in production"));
            None
        }
        None => Some(generated_development_secret(&name.to_ascii_lowercase())),
    }
}

/// The dashboard's Basic password: required and at least
/// [`PRODUCTION_MIN_ADMIN_PASSWORD_CHARS`] long in production; generated
/// once in development.
fn admin_password(r: &mut Reader, production: bool) -> Option<SecretString> {
    let name = ADMIN_PASSWORD.env;
    match r.secret(&ADMIN_PASSWORD) {
        Some(secret) if production && refuse_placeholder(r, name, &secret) => None,
        Some(secret)
            if production
                && secret.expose_secret().chars().count() < PRODUCTION_MIN_ADMIN_PASSWORD_CHARS =>
        {
            r.problem(format!(
                "{name}: must be at least {PRODUCTION_MIN_ADMIN_PASSWORD_CHARS} characters in production"
            ));
            None
        }
        Some(secret) => Some(secret),
        None if production => {
            r.problem(format!(
                "{name}: required in production (dashboard Basic credentials)"
            ));
            None
        }
        None => Some(generated_development_secret("admin_password")),
    }
}

/// Records a problem and answers true when `secret` is a development
/// placeholder (`dev-only-…`), given explicitly. Production must never reach
/// `startup`'s generation of development secrets: it would silently swap the
/// value for a generated one (and print the dashboard password).
pub(super) fn refuse_placeholder(r: &mut Reader, name: &str, secret: &SecretString) -> bool {
    let placeholder = secret
        .expose_secret()
        .starts_with(DEVELOPMENT_SECRET_MARKER);
    if placeholder {
        r.problem(format!(
            "{name}: a development placeholder ({DEVELOPMENT_SECRET_MARKER}…) is refused in production"
        ));
    }
    placeholder
}

/// Marks a secret that `startup::resolve_development_secrets` must replace with
/// a value generated once and stored in the data directory.
pub(super) fn generated_development_secret(name: &str) -> SecretString {
    SecretString::from(format!("{DEVELOPMENT_SECRET_MARKER}{name}"))
}

/// Whether this secret is the development placeholder for `name`.
pub fn is_development_placeholder(secret: &SecretString, name: &str) -> bool {
    secret.expose_secret() == format!("{DEVELOPMENT_SECRET_MARKER}{name}")
}
