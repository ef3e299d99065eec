//! Where state lives: the data directory, the database, Redis and the cache.

use std::{path::PathBuf, time::Duration};

use secrecy::{ExposeSecret, SecretString};

use super::settings::{
    DefaultValue::{Derived, Text, Unset},
    Reader, Setting, parse_bool, parse_number,
};

const DATA_DIR: Setting = Setting {
    env: "DATA_DIR",
    default: Text("./data"),
    doc: "folder of the SQLite file and development secrets",
};
const DATABASE_URL: Setting = Setting {
    env: "DATABASE_URL",
    default: Derived("sqlite://<DATA_DIR>/dispatch.db"),
    doc: "sqlite://… or postgres://…",
};
const DB_MAX_CONNECTIONS: Setting = Setting {
    env: "DB_MAX_CONNECTIONS",
    default: Text("16"),
    doc: "pool size",
};
const MIGRATE_ON_START: Setting = Setting {
    env: "MIGRATE_ON_START",
    default: Text("true"),
    doc: "apply migrations when serving",
};
const SEED_DEMO_DATA: Setting = Setting {
    env: "SEED_DEMO_DATA",
    default: Derived("true in development, false in production"),
    doc: "seed the demo admin and items on an empty database",
};
const REDIS_URL: Setting = Setting {
    env: "REDIS_URL",
    default: Unset,
    doc: "Redis for cache, rate limits, locks, session revocation; unset = in-process",
};
const REDIS_KEY_PREFIX: Setting = Setting {
    env: "REDIS_KEY_PREFIX",
    default: Text("dispatch:"),
    doc: "prefix of every Redis key",
};
const CACHE_TTL: Setting = Setting {
    env: "CACHE_TTL",
    default: Text("60s"),
    doc: "lifetime of cached catalogue reads and session checks",
};

const CACHE_MAX_BYTES: Setting = Setting {
    env: "CACHE_MAX_BYTES",
    default: Text("8388608"),
    doc: "in-process cache (no Redis): the most its entries may weigh together, bytes",
};

pub(super) const SETTINGS: &[&Setting] = &[
    &DATA_DIR,
    &DATABASE_URL,
    &DB_MAX_CONNECTIONS,
    &MIGRATE_ON_START,
    &SEED_DEMO_DATA,
    &REDIS_URL,
    &REDIS_KEY_PREFIX,
    &CACHE_TTL,
    &CACHE_MAX_BYTES,
];

pub(super) struct Storage {
    pub data_dir: PathBuf,
    pub database_url: SecretString,
    pub db_max_connections: u32,
    pub migrate_on_start: bool,
    pub seed_demo_data: bool,
    pub redis_url: Option<SecretString>,
    pub redis_key_prefix: String,
    pub cache_ttl: Duration,
    pub cache_max_bytes: u64,
}

pub(super) fn read(r: &mut Reader, production: bool) -> Option<Storage> {
    let data_dir = PathBuf::from(r.text_or_default(&DATA_DIR));
    let default_db = format!("sqlite://{}/dispatch.db", data_dir.display());
    let database_url = r.parse_or(&DATABASE_URL, &default_db, |v| {
        if v.starts_with("sqlite:")
            || v.starts_with("postgres://")
            || v.starts_with("postgresql://")
        {
            Ok(SecretString::from(v.to_owned()))
        } else {
            Err("expected a sqlite:// or postgres:// URL".into())
        }
    });
    let db_max_connections = r.parse(&DB_MAX_CONNECTIONS, |v| {
        parse_number::<u32>(v).and_then(|n| {
            if n >= 2 {
                Ok(n)
            } else {
                Err("must be at least 2 (one writer, one reader)".into())
            }
        })
    });
    let migrate_on_start = r.parse(&MIGRATE_ON_START, parse_bool);
    let default_seed = if production { "false" } else { "true" };
    let seed_demo_data = r.parse_or(&SEED_DEMO_DATA, default_seed, parse_bool);
    if production && seed_demo_data == Some(true) {
        r.problem("SEED_DEMO_DATA: demo seeding is refused in production");
    }

    let redis_url = r.secret(&REDIS_URL);
    if let Some(url) = &redis_url
        && !(url.expose_secret().starts_with("redis://")
            || url.expose_secret().starts_with("rediss://"))
    {
        r.problem("REDIS_URL: expected a redis:// or rediss:// URL");
    }
    let redis_key_prefix = r.text_or_default(&REDIS_KEY_PREFIX);
    let cache_ttl = r.duration(&CACHE_TTL);
    let cache_max_bytes = r.parse(&CACHE_MAX_BYTES, parse_number::<u64>);

    Some(Storage {
        data_dir,
        database_url: database_url?,
        db_max_connections: db_max_connections?,
        migrate_on_start: migrate_on_start?,
        seed_demo_data: seed_demo_data?,
        redis_url,
        redis_key_prefix,
        cache_ttl: cache_ttl?,
        cache_max_bytes: cache_max_bytes?,
    })
}
