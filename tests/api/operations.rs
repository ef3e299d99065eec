//! Operations surfaces: the files the service keeps private, `/metrics`
//! behind its token or its own listener, `/health/ready` per dependency.

use dispatch::{config::Config, startup};
use serde_json::{Value, json};

use crate::helpers::{spawn_app, spawn_app_with};

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// The embedded setup from nothing: SQLite in a new data directory and every
/// development secret generated. Always SQLite (the files are its own).
#[cfg(unix)]
#[tokio::test]
async fn the_database_and_the_secrets_folder_are_created_owner_only() {
    // What `spawn_app` does first; this test builds the state itself.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let root = tempfile::tempdir().unwrap();
    let data_dir = root.path().join("data");
    let config = Config::from_pairs([
        ("DATA_DIR", data_dir.display().to_string()),
        (
            "DATABASE_URL",
            format!("sqlite://{}/dispatch.db", data_dir.display()),
        ),
        ("SEED_DEMO_DATA", "false".into()),
        ("PASSWORD_HASH_MEMORY_KIB", "64".into()),
    ])
    .unwrap();
    // Migrations write, so the write-ahead log and shared memory exist after.
    let state = startup::build_state(config).await.unwrap();

    assert_eq!(mode(&data_dir), 0o700, "DATA_DIR");
    for name in ["dispatch.db", "dispatch.db-wal", "dispatch.db-shm"] {
        assert_eq!(mode(&data_dir.join(name)), 0o600, "{name}");
    }
    let secrets = data_dir.join("secrets");
    assert_eq!(mode(&secrets), 0o700, "secrets folder");
    for name in [
        "jwt_access_secret",
        "jwt_refresh_secret",
        "admin_password",
        "stripe_webhook_secret",
    ] {
        assert_eq!(mode(&secrets.join(name)), 0o600, "{name}");
    }
    drop(state);
}

const METRICS_TOKEN: &str = "metrics-token-0123456789abcdef-0123456789";

/// Production mode, as the test harness can run it: the Stripe gateway (never
/// called here), an OWASP-strength hash cost and a metrics token.
const PRODUCTION: &[(&str, &str)] = &[
    ("DISPATCH_ENV", "production"),
    ("PAYMENT_GATEWAY", "stripe"),
    ("STRIPE_SECRET_KEY", "sk_test_not_used"),
    ("PASSWORD_HASH_MEMORY_KIB", "19456"),
    ("METRICS_TOKEN", METRICS_TOKEN),
];

#[tokio::test]
async fn metrics_on_the_api_listener_need_the_bearer_token_in_production() {
    let app = spawn_app_with(PRODUCTION).await;
    assert!(app.state.config.is_production());

    let anonymous = app.get("/metrics").send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    assert_eq!(anonymous.headers()["www-authenticate"], "Bearer");
    let wrong = app
        .get("/metrics")
        .bearer_auth("metrics-token-0123456789abcdef-012345678")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);

    let scraped = app
        .get("/metrics")
        .bearer_auth(METRICS_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(scraped.status(), 200);
    let text = scraped.text().await.unwrap();
    assert!(text.contains("db_pool_connections"), "{text}");
}

#[tokio::test]
async fn without_a_metrics_token_the_api_listener_does_not_serve_metrics() {
    let app = spawn_app().await;
    assert!(app.state.config.metrics_token.is_none());
    let response = app.get("/metrics").send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn the_metrics_listener_serves_metrics_without_a_token() {
    let app = spawn_app().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    startup::serve_metrics(app.state.clone(), listener, shutdown.clone());

    let response = app
        .client
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let text = response.text().await.unwrap();
    assert!(text.contains("db_pool_connections"), "{text}");
    // Only the metrics: the API is not on this listener.
    let api = app
        .client
        .get(format!("http://{address}/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(api.status(), 404);
    shutdown.cancel();
}

#[tokio::test]
async fn queue_gauges_are_computed_at_most_once_per_interval_whatever_the_scrapes() {
    let app = spawn_app_with(&[("METRICS_TOKEN", METRICS_TOKEN)]).await;
    let gauges = &app.state.queue_gauges;
    let scrape = || async {
        let response = app
            .get("/metrics")
            .bearer_auth(METRICS_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    };
    scrape().await;
    assert_eq!(gauges.times_computed(), 1);
    for _ in 0..5 {
        scrape().await;
    }
    assert_eq!(
        gauges.times_computed(),
        1,
        "scrapes within the interval share one"
    );

    // The test app's clock is manual: only this moves it.
    app.state
        .db
        .clock()
        .advance(dispatch::http::health::QUEUE_GAUGES_MAX_AGE);
    scrape().await;
    assert_eq!(gauges.times_computed(), 2);
}

#[tokio::test]
async fn readiness_says_ok_per_dependency() {
    let app = spawn_app().await;
    let response = app.get("/health/ready").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    let with_redis = app.state.kv.is_some();
    let expected = if with_redis {
        json!({"database": "ok", "redis": "ok"})
    } else {
        json!({"database": "ok"})
    };
    assert_eq!(body["checks"], expected);
}

/// Redis unreachable (nothing listens on port 1): the service still serves
/// from the database, so it is ready but degraded, and the public answer
/// carries no error text.
#[tokio::test]
async fn redis_down_is_degraded_with_200_and_no_error_text() {
    let app = spawn_app_with(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let response = app.get("/health/ready").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        json!({"status": "degraded", "checks": {"database": "ok", "redis": "down"}})
    );
    // And the service does serve: a registration goes through the database.
    app.register_user().await;
    app.drain_jobs().await;
}
