//! The process itself: its environment, listeners, HTTP limits and logs.

use std::{net::SocketAddr, time::Duration};

use secrecy::{ExposeSecret, SecretString};

use super::auth::refuse_placeholder;
use super::settings::{
    DefaultValue::{Derived, Text, Unset},
    Reader, Setting, parse_number, parse_socket_addr, split_list,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

const DISPATCH_ENV: Setting = Setting {
    env: "DISPATCH_ENV",
    default: Text("development"),
    doc: "development or production",
};
const BIND_ADDR: Setting = Setting {
    env: "BIND_ADDR",
    default: Text("127.0.0.1:3000"),
    doc: "API listen address",
};
const METRICS_ADDR: Setting = Setting {
    env: "METRICS_ADDR",
    default: Unset,
    doc: "serve /metrics without authentication on this (private) address",
};
const METRICS_TOKEN: Setting = Setting {
    env: "METRICS_TOKEN",
    default: Unset,
    doc: "bearer token for /metrics on the API listener (unset: not served there); production requires it unless METRICS_ADDR is set",
};
const CORS_ORIGINS: Setting = Setting {
    env: "CORS_ORIGINS",
    default: Text("http://localhost:5173"),
    doc: "comma-separated allowed origins",
};
const REQUEST_TIMEOUT: Setting = Setting {
    env: "REQUEST_TIMEOUT",
    default: Text("30s"),
    doc: "a request running longer gets 503",
};
const BODY_LIMIT: Setting = Setting {
    env: "BODY_LIMIT",
    default: Text("262144"),
    doc: "largest request body, bytes",
};
const TRUSTED_PROXY_HOPS: Setting = Setting {
    env: "TRUSTED_PROXY_HOPS",
    default: Text("0"),
    doc: "proxies in front that append to X-Forwarded-For; the client is the entry that many from the right",
};
const HTTP_HEADER_READ_TIMEOUT: Setting = Setting {
    env: "HTTP_HEADER_READ_TIMEOUT",
    default: Text("10s"),
    doc: "a connection that has not sent a whole request head this long after opening or starting one is closed",
};
const HTTP_IDLE_TIMEOUT: Setting = Setting {
    env: "HTTP_IDLE_TIMEOUT",
    default: Text("75s"),
    doc: "a kept-alive connection waiting this long for its next request is closed",
};
const HTTP_MAX_CONNECTIONS: Setting = Setting {
    env: "HTTP_MAX_CONNECTIONS",
    default: Text("1024"),
    doc: "open connections per process; one more is closed at once",
};

/// Variables Dispatch no longer reads. Setting one fails start-up with a line
/// naming its replacement, rather than being silently ignored (an ignored
/// `TRUST_FORWARDED_FOR=true` would put every client behind the proxy's
/// address).
pub(super) const RETIRED: &[&Setting] = &[&Setting {
    env: "TRUST_FORWARDED_FOR",
    default: Unset,
    doc: "replaced by TRUSTED_PROXY_HOPS (the number of proxies in front of Dispatch that append to X-Forwarded-For, e.g. 1 behind one load balancer)",
}];
const LOG_FORMAT: Setting = Setting {
    env: "LOG_FORMAT",
    default: Derived("json in production, pretty otherwise"),
    doc: "json or pretty",
};
const LOG_LEVEL: Setting = Setting {
    env: "LOG_LEVEL",
    default: Text("info"),
    doc: "tracing filter",
};

pub(super) const SETTINGS: &[&Setting] = &[
    &DISPATCH_ENV,
    &BIND_ADDR,
    &METRICS_ADDR,
    &METRICS_TOKEN,
    &CORS_ORIGINS,
    &REQUEST_TIMEOUT,
    &BODY_LIMIT,
    &TRUSTED_PROXY_HOPS,
    &HTTP_HEADER_READ_TIMEOUT,
    &HTTP_IDLE_TIMEOUT,
    &HTTP_MAX_CONNECTIONS,
    &LOG_FORMAT,
    &LOG_LEVEL,
];

/// Read first: other sections' defaults and rules depend on it.
pub(super) fn environment(r: &mut Reader) -> Option<Environment> {
    r.parse(&DISPATCH_ENV, |v| match v {
        "development" => Ok(Environment::Development),
        "production" => Ok(Environment::Production),
        other => Err(format!("expected development or production, got {other:?}")),
    })
}

pub(super) struct Server {
    pub bind_addr: SocketAddr,
    pub metrics_addr: Option<SocketAddr>,
    pub metrics_token: Option<SecretString>,
    pub cors_origins: Vec<String>,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    pub trusted_proxy_hops: usize,
    pub http_header_read_timeout: Duration,
    pub http_idle_timeout: Duration,
    pub http_max_connections: usize,
    pub log_format: LogFormat,
    pub log_level: String,
}

pub(super) fn read(r: &mut Reader, production: bool) -> Option<Server> {
    let bind_addr = r.parse(&BIND_ADDR, parse_socket_addr);
    let metrics_addr = r.parse_optional(&METRICS_ADDR, parse_socket_addr);
    let metrics_token = metrics_token(r, production, matches!(metrics_addr, Some(Some(_))));

    let cors_origins: Vec<String> = split_list(&r.text_or_default(&CORS_ORIGINS))
        .map(str::to_owned)
        .collect();
    for origin in &cors_origins {
        if axum::http::HeaderValue::from_str(origin).is_err() || !origin.contains("://") {
            r.problem(format!(
                "CORS_ORIGINS: {origin:?} is not an origin like https://shop.example"
            ));
        }
    }
    let request_timeout = r.duration(&REQUEST_TIMEOUT);
    let body_limit_bytes = r.parse(&BODY_LIMIT, parse_number::<usize>);
    let trusted_proxy_hops = r.parse(&TRUSTED_PROXY_HOPS, parse_number::<usize>);
    let http_header_read_timeout = r.duration(&HTTP_HEADER_READ_TIMEOUT);
    let http_idle_timeout = r.duration(&HTTP_IDLE_TIMEOUT);
    let http_max_connections = r.parse(&HTTP_MAX_CONNECTIONS, |v| {
        parse_number::<usize>(v).and_then(|n| {
            if n == 0 {
                Err("must be at least 1".to_owned())
            } else {
                Ok(n)
            }
        })
    });

    let default_log_format = if production { "json" } else { "pretty" };
    let log_format = r.parse_or(&LOG_FORMAT, default_log_format, |v| match v {
        "json" => Ok(LogFormat::Json),
        "pretty" => Ok(LogFormat::Pretty),
        other => Err(format!("expected json or pretty, got {other:?}")),
    });
    let log_level = r.text_or_default(&LOG_LEVEL);
    if tracing_subscriber::EnvFilter::try_new(&log_level).is_err() {
        r.problem(format!("LOG_LEVEL: {log_level:?} is not a valid filter"));
    }

    Some(Server {
        bind_addr: bind_addr?,
        metrics_addr: metrics_addr?,
        metrics_token: metrics_token?,
        cors_origins,
        request_timeout: request_timeout?,
        body_limit_bytes: body_limit_bytes?,
        trusted_proxy_hops: trusted_proxy_hops?,
        http_header_read_timeout: http_header_read_timeout?,
        http_idle_timeout: http_idle_timeout?,
        http_max_connections: http_max_connections?,
        log_format: log_format?,
        log_level,
    })
}

/// Shortest metrics token production accepts (it is compared in constant
/// time, but a short one could still be guessed online).
const PRODUCTION_MIN_METRICS_TOKEN_CHARS: usize = 32;

/// The bearer token of `/metrics` on the API listener. Production requires
/// one unless `METRICS_ADDR` serves the metrics on a listener of their own:
/// the API listener is public, and queue depths, routes and error rates are
/// not for everyone. `METRICS_ADDR` itself asks for no token; it is meant
/// for a private network (see docs/operations.md).
fn metrics_token(
    r: &mut Reader,
    production: bool,
    has_metrics_addr: bool,
) -> Option<Option<SecretString>> {
    let name = METRICS_TOKEN.env;
    match r.secret(&METRICS_TOKEN) {
        Some(token) if production && refuse_placeholder(r, name, &token) => None,
        Some(token)
            if production
                && token.expose_secret().chars().count() < PRODUCTION_MIN_METRICS_TOKEN_CHARS =>
        {
            r.problem(format!(
                "{name}: must be at least {PRODUCTION_MIN_METRICS_TOKEN_CHARS} characters in production"
            ));
            None
        }
        Some(token) => Some(Some(token)),
        None if production && !has_metrics_addr => {
            r.problem(format!(
                "{name}: required in production unless METRICS_ADDR serves /metrics on a private listener"
            ));
            None
        }
        None => Some(None),
    }
}
