//! Rate limits on login and registration (docs/spec.md §6.7), and the health and
//! metrics endpoints. Sign-in throttling as a whole is in `sign_in_throttle.rs`.

use crate::helpers::{PASSWORD, TestApp, problem, spawn_app_with};
use dispatch::users::{
    email::Email,
    language::Language,
    queries::{self, NewUser},
    role::Role,
};
use reqwest::Response;
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;

/// Creates a shopper straight in the database, without signing in (which
/// would spend a login attempt).
async fn insert_shopper(app: &TestApp) -> String {
    let email = format!("limited-{}@example.com", Uuid::new_v4().simple());
    let hash = app
        .state
        .passwords
        .hash(&SecretString::from(PASSWORD))
        .await
        .unwrap();
    let txn = app.state.db.begin_write().await.unwrap();
    queries::insert(
        &*txn,
        NewUser {
            name: "Limited".into(),
            email: Email::parse(&email).unwrap(),
            password_hash: hash,
            role: Role::User,
            language: Language::En,
        },
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
    email
}

fn unknown_email() -> String {
    format!("nobody-{}@example.com", Uuid::new_v4().simple())
}

async fn login_from(app: &TestApp, ip: Option<&str>, email: &str, password: &str) -> Response {
    let mut request = app
        .post("/api/v1/auth/login")
        .json(&json!({"email": email, "password": password}));
    if let Some(ip) = ip {
        request = request.header("X-Forwarded-For", ip);
    }
    request.send().await.unwrap()
}

async fn register_from(app: &TestApp, ip: Option<&str>, email: &str) -> Response {
    let mut request = app
        .post("/api/v1/users")
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&json!({"name": "Limited", "email": email, "password": PASSWORD}));
    if let Some(ip) = ip {
        request = request.header("X-Forwarded-For", ip);
    }
    request.send().await.unwrap()
}

/// Asserts a 429 `rate_limited` problem with a sane `Retry-After` (at most
/// `period_seconds`), and returns the problem.
async fn assert_rate_limited(response: Response, period_seconds: u64) -> Value {
    assert_eq!(response.status(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .expect("Retry-After")
        .to_str()
        .unwrap()
        .parse()
        .expect("Retry-After is whole seconds");
    assert!(
        (1..=period_seconds).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    let body = problem(response).await;
    assert_eq!(body["code"], "rate_limited");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains(&retry_after.to_string()),
        "{body}"
    );
    body
}

#[tokio::test]
async fn failed_logins_from_one_address_are_limited_across_accounts() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN_ADDRESS", "2/h")]).await;
    let email = insert_shopper(&app).await;

    // A correct password is given back to the address: it never spends it.
    for _ in 0..3 {
        assert_eq!(login_from(&app, None, &email, PASSWORD).await.status(), 200);
    }
    for _ in 0..2 {
        assert_eq!(
            login_from(&app, None, &unknown_email(), PASSWORD)
                .await
                .status(),
            401
        );
    }
    // Right credentials and another account do not help: the address is spent.
    assert_rate_limited(login_from(&app, None, &email, PASSWORD).await, 3_600).await;
    assert_rate_limited(
        login_from(&app, None, &unknown_email(), "whatever").await,
        3_600,
    )
    .await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn login_attempts_for_one_account_are_limited_per_address_not_across_addresses() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN", "2/h"), ("TRUSTED_PROXY_HOPS", "1")]).await;
    let email = insert_shopper(&app).await;

    assert_eq!(
        login_from(&app, Some("203.0.113.1"), &email, "wrong password")
            .await
            .status(),
        401
    );
    // The account is the same whatever the case of its email.
    let shouted = email.to_uppercase();
    assert_eq!(
        login_from(&app, Some("203.0.113.1"), &shouted, "wrong password")
            .await
            .status(),
        401
    );
    assert_rate_limited(
        login_from(&app, Some("203.0.113.1"), &email, PASSWORD).await,
        3_600,
    )
    .await;

    // Failures from one address never make the owner's password a 429
    // elsewhere (sign-in throttling slows the account down instead).
    assert_eq!(
        login_from(&app, Some("203.0.113.2"), &email, PASSWORD)
            .await
            .status(),
        200
    );
    // A success resets the pair's count.
    for _ in 0..2 {
        assert_eq!(
            login_from(&app, Some("203.0.113.2"), &email, "wrong password")
                .await
                .status(),
            401
        );
    }
    assert_eq!(
        login_from(&app, Some("203.0.113.3"), &email, PASSWORD)
            .await
            .status(),
        200
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn rotating_forged_leftmost_forwarded_entries_does_not_escape_the_address_limit() {
    // One trusted proxy, which appends the address it saw (always
    // 198.51.100.9 here) to whatever the client sent.
    let app = spawn_app_with(&[
        ("RATE_LIMIT_LOGIN_ADDRESS", "2/min"),
        ("TRUSTED_PROXY_HOPS", "1"),
    ])
    .await;
    let forged = |n: u32| format!("203.0.113.{n}, 198.51.100.9");
    for n in 1..=2 {
        // Unknown accounts, so only the address limit can refuse.
        assert_eq!(
            login_from(&app, Some(&forged(n)), &unknown_email(), PASSWORD)
                .await
                .status(),
            401
        );
    }
    for n in 3..=6 {
        assert_rate_limited(
            login_from(&app, Some(&forged(n)), &unknown_email(), PASSWORD).await,
            60,
        )
        .await;
    }
    // The same forgery on its own header line changes nothing either.
    let response = app
        .post("/api/v1/auth/login")
        .header("X-Forwarded-For", "203.0.113.77")
        .header("X-Forwarded-For", "198.51.100.9")
        .json(&json!({"email": unknown_email(), "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_rate_limited(response, 60).await;
    // A client the proxy saw at another address has its own allowance.
    assert_eq!(
        login_from(
            &app,
            Some("203.0.113.1, 198.51.100.10"),
            &unknown_email(),
            PASSWORD
        )
        .await
        .status(),
        401
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_third_registration_from_one_address_within_the_quota_is_refused() {
    let app = spawn_app_with(&[
        ("RATE_LIMIT_REGISTER", "2/min"),
        ("TRUSTED_PROXY_HOPS", "1"),
    ])
    .await;
    let admin = app.create_user_with_role(Role::Admin).await;

    for _ in 0..2 {
        assert_eq!(
            register_from(&app, Some("198.51.100.7"), &unknown_email())
                .await
                .status(),
            201
        );
    }
    let refused = unknown_email();
    assert_rate_limited(
        register_from(&app, Some("198.51.100.7"), &refused).await,
        60,
    )
    .await;
    let response = app
        .get(&format!("/api/v1/admin/users?email={refused}"))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    let page: Value = response.json().await.unwrap();
    assert_eq!(
        page["items"],
        json!([]),
        "a refused registration creates nothing"
    );

    // Another address may still register, and signing in is a separate limit.
    assert_eq!(
        register_from(&app, Some("198.51.100.8"), &unknown_email())
            .await
            .status(),
        201
    );
    assert_eq!(
        login_from(&app, Some("198.51.100.7"), &admin.email, PASSWORD)
            .await
            .status(),
        200
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_refusal_is_explained_in_the_callers_language() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN", "1/h")]).await;
    let email = unknown_email();
    assert_eq!(login_from(&app, None, &email, PASSWORD).await.status(), 401);
    let response = app
        .post("/api/v1/auth/login")
        .header("Accept-Language", "pt-BR")
        .json(&json!({"email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    let body = assert_rate_limited(response, 3_600).await;
    assert_eq!(body["title"], "Requisições demais");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .starts_with("Tentativas demais. Tente novamente em "),
        "{body}"
    );
}

#[tokio::test]
async fn off_disables_the_limits() {
    let app = spawn_app_with(&[("RATE_LIMIT_LOGIN", "off"), ("RATE_LIMIT_REGISTER", "off")]).await;
    let email = insert_shopper(&app).await;
    for _ in 0..12 {
        assert_eq!(login_from(&app, None, &email, PASSWORD).await.status(), 200);
        assert_eq!(
            register_from(&app, None, &unknown_email()).await.status(),
            201
        );
    }
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_health_probes_answer_and_metrics_count_requests() {
    let app = spawn_app_with(&[("METRICS_TOKEN", "metrics-token-for-this-test")]).await;
    for path in ["/health", "/health/live"] {
        let response = app.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "ok");
        assert!(body["version"].is_string());
    }
    let response = app.get("/health/ready").send().await.unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
    assert_eq!(body["checks"]["database"], "ok");
    if std::env::var("REDIS_URL").is_ok_and(|url| !url.is_empty()) {
        assert_eq!(body["checks"]["redis"], "ok");
    }

    let response = app
        .get("/metrics")
        .bearer_auth("metrics-token-for-this-test")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    assert!(text.contains("http_requests_total"), "{text}");
    assert!(text.contains(r#"route="/health/ready""#), "{text}");
    assert!(text.contains("db_pool_connections"), "{text}");
}
