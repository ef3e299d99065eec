//! Sign-in: token keys and lifetimes, password hashing, the dashboard's
//! credentials, and the development placeholders for secrets.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use super::settings::{
    DefaultValue::{Derived, Text},
    Reader, Setting, parse_number,
};

/// Values that stand in for secrets in development and must never reach production.
const DEVELOPMENT_SECRET_MARKER: &str = "dev-only-";

/// Argon2id memory cost recommended by OWASP; production refuses less.
const PRODUCTION_MIN_HASH_MEMORY_KIB: u32 = 19456;

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
const ADMIN_USERNAME: Setting = Setting {
    env: "ADMIN_USERNAME",
    default: Text("admin"),
    doc: "dashboard user name",
};
const ADMIN_PASSWORD: Setting = Setting {
    env: "ADMIN_PASSWORD",
    default: Derived("development: generated, printed once, kept in DATA_DIR/secrets/"),
    doc: "dashboard password (required in production)",
};

pub(super) const SETTINGS: &[&Setting] = &[
    &JWT_ACCESS_SECRET,
    &JWT_REFRESH_SECRET,
    &JWT_ACCESS_TTL,
    &JWT_REFRESH_TTL,
    &PASSWORD_HASH_MEMORY_KIB,
    &ADMIN_USERNAME,
    &ADMIN_PASSWORD,
];

pub(super) struct Auth {
    pub jwt_access_secret: SecretString,
    pub jwt_refresh_secret: SecretString,
    pub jwt_access_ttl: Duration,
    pub jwt_refresh_ttl: Duration,
    pub password_hash_memory_kib: u32,
    pub admin_username: String,
    pub admin_password: SecretString,
}

pub(super) fn read(r: &mut Reader, production: bool) -> Option<Auth> {
    let jwt_access_secret = signing_secret(r, &JWT_ACCESS_SECRET, production);
    let jwt_refresh_secret = signing_secret(r, &JWT_REFRESH_SECRET, production);
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

    let admin_username = r.text_or_default(&ADMIN_USERNAME);
    let admin_password = match r.secret(&ADMIN_PASSWORD) {
        Some(secret) => Some(secret),
        None if production => {
            r.problem("ADMIN_PASSWORD: required in production (dashboard Basic credentials)");
            None
        }
        None => Some(generated_development_secret("admin_password")),
    };

    Some(Auth {
        jwt_access_secret: jwt_access_secret?,
        jwt_refresh_secret: jwt_refresh_secret?,
        jwt_access_ttl: jwt_access_ttl?,
        jwt_refresh_ttl: jwt_refresh_ttl?,
        password_hash_memory_kib: password_hash_memory_kib?,
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
        Some(secret) if production && secret.expose_secret().len() < 32 => {
            r.problem(format!(
                "{name}: must be at least 32 characters in production"
            ));
            None
        }
        Some(secret)
            if production
                && secret
                    .expose_secret()
                    .starts_with(DEVELOPMENT_SECRET_MARKER) =>
        {
            r.problem(format!(
                "{name}: a development secret is refused in production"
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

/// Marks a secret that `startup::resolve_development_secrets` must replace with
/// a value generated once and stored in the data directory.
pub(super) fn generated_development_secret(name: &str) -> SecretString {
    SecretString::from(format!("{DEVELOPMENT_SECRET_MARKER}{name}"))
}

/// Whether this secret is the development placeholder for `name`.
pub fn is_development_placeholder(secret: &SecretString, name: &str) -> bool {
    secret.expose_secret() == format!("{DEVELOPMENT_SECRET_MARKER}{name}")
}
