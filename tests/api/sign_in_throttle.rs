//! Every password check behind one throttle and one hash budget
//! (docs/spec.md §3.3 and §6.7): API sign-in, `currentPassword`, the
//! dashboard's Basic credentials; floods end in 401/422/429/503 and never run
//! more hashes at once than the limit; the owner of an attacked account still
//! signs in; account changes that need the current password.

use std::collections::BTreeSet;

use futures::future::join_all;
use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    CLIENT_ADDRESS_SETTINGS, PASSWORD, TestApp, TestUser, from_address, problem, spawn_app_with,
};
use dispatch::users::{email::mask, role::Role};

/// An app whose tests may set client addresses, with these settings.
async fn app_with(settings: &[(&str, &str)]) -> TestApp {
    let all: Vec<(&str, &str)> = CLIENT_ADDRESS_SETTINGS
        .iter()
        .chain(settings)
        .copied()
        .collect();
    spawn_app_with(&all).await
}

async fn login(app: &TestApp, ip: &str, email: &str, password: &str) -> Response {
    from_address(app.post("/api/v1/auth/login"), ip)
        .json(&json!({"email": email, "password": password}))
        .send()
        .await
        .unwrap()
}

async fn patch_me(app: &TestApp, user: &TestUser, ip: &str, body: &Value) -> Response {
    from_address(app.patch("/api/v1/users/me"), ip)
        .bearer_auth(&user.access_token)
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The status of a refusal, after checking that its problem code and
/// `Retry-After` fit the status.
async fn refusal(response: Response) -> u16 {
    let status = response.status().as_u16();
    let retry_after = response.headers().get("retry-after").cloned();
    let body = problem(response).await;
    let expected = match status {
        401 => "invalid_credentials",
        422 => "validation_failed",
        429 => "rate_limited",
        503 => "server_busy",
        other => panic!("unexpected status {other}: {body}"),
    };
    assert_eq!(body["code"], expected, "{body}");
    if status == 429 || status == 503 {
        let seconds: u64 = retry_after
            .expect("Retry-After")
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(seconds >= 1, "{body}");
    }
    status
}

/// Settings of the flood tests: two hashes at once, a short queue, and the
/// throttle's defaults but a short delay.
const FLOOD: &[(&str, &str)] = &[
    ("PASSWORD_HASH_CONCURRENCY", "2"),
    ("PASSWORD_HASH_QUEUE", "16"),
    ("PASSWORD_HASH_WAIT", "1s"),
    ("RATE_LIMIT_LOGIN", "5/min"),
    ("RATE_LIMIT_LOGIN_ADDRESS", "30/min"),
    ("LOGIN_DELAY_MAX", "20ms"),
];

fn address(i: usize) -> String {
    format!("198.51.100.{}", i % 25)
}

#[tokio::test]
async fn two_hundred_concurrent_wrong_current_passwords_never_run_more_hashes_than_the_limit() {
    let app = app_with(FLOOD).await;
    let user = app.register_user().await;

    let guesses = (0..200).map(|i| {
        let (app, user) = (&app, &user);
        async move {
            let body = json!({"name": "Guess", "currentPassword": format!("guess {i}"), "password": "a whole new password"});
            refusal(patch_me(app, user, &address(i), &body).await).await
        }
    });
    let statuses: BTreeSet<u16> = join_all(guesses).await.into_iter().collect();

    assert!(
        statuses.is_subset(&BTreeSet::from([401, 422, 429, 503])),
        "{statuses:?}"
    );
    let most = app.state.passwords.budget().most_in_flight();
    assert!((1..=2).contains(&most), "{most} hashes ran at once");
    // Nothing changed, and the owner still signs in.
    assert_eq!(
        login(&app, "192.0.2.1", &user.email, PASSWORD)
            .await
            .status(),
        200
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn two_hundred_concurrent_sign_ins_never_run_more_hashes_than_the_limit() {
    let app = app_with(FLOOD).await;
    let user = app.create_user_with_role(Role::User).await;

    let attempts = (0..200).map(|i| {
        let (app, user) = (&app, &user);
        async move {
            let email = if i % 2 == 0 {
                user.email.clone()
            } else {
                format!("nobody-{i}@example.com")
            };
            refusal(login(app, &address(i), &email, "not the password").await).await
        }
    });
    let statuses: BTreeSet<u16> = join_all(attempts).await.into_iter().collect();

    assert!(
        statuses.is_subset(&BTreeSet::from([401, 429, 503])),
        "{statuses:?}"
    );
    let most = app.state.passwords.budget().most_in_flight();
    assert!((1..=2).contains(&most), "{most} hashes ran at once");
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_owner_signs_in_while_another_client_keeps_failing_from_other_addresses() {
    // Hourly quotas: nothing is given back while the test runs.
    let app = app_with(&[
        ("RATE_LIMIT_LOGIN", "5/h"),
        ("RATE_LIMIT_LOGIN_ADDRESS", "30/h"),
        ("LOGIN_DELAY_AFTER", "3"),
        ("LOGIN_DELAY_BASE", "5ms"),
        ("LOGIN_DELAY_MAX", "20ms"),
    ])
    .await;
    let owner = app.create_user_with_role(Role::Admin).await;

    // 60 wrong passwords from 8 addresses: each address may try 5 times.
    let attacker = async {
        let mut statuses = Vec::new();
        for i in 0..60 {
            let ip = format!("203.0.113.{}", i % 8);
            statuses.push(refusal(login(&app, &ip, &owner.email, "guess").await).await);
        }
        statuses
    };
    let owner_sign_ins = async {
        let mut statuses = Vec::new();
        for _ in 0..3 {
            statuses.push(
                login(&app, "192.0.2.10", &owner.email, PASSWORD)
                    .await
                    .status(),
            );
        }
        statuses
    };
    let (attacker, owner_statuses) = tokio::join!(attacker, owner_sign_ins);

    assert_eq!(owner_statuses, [200, 200, 200]);
    assert!(
        attacker.iter().all(|s| *s == 401 || *s == 429),
        "{attacker:?}"
    );
    assert!(
        attacker.contains(&429),
        "8 addresses × 5 attempts leave 20 of 60 refused: {attacker:?}"
    );
    // After the attack, the owner still signs in, and an attacking address
    // is still refused even with the right password (its pair is spent).
    assert_eq!(
        login(&app, "192.0.2.10", &owner.email, PASSWORD)
            .await
            .status(),
        200
    );
    assert_eq!(
        refusal(login(&app, "203.0.113.1", &owner.email, PASSWORD).await).await,
        429
    );

    // Redis holds no email and no address: the keys are keyed hashes.
    if let Some(url) = std::env::var("REDIS_URL").ok().filter(|u| !u.is_empty()) {
        let prefix = app
            .settings
            .iter()
            .find(|(name, _)| name == "REDIS_KEY_PREFIX")
            .map(|(_, value)| value.clone())
            .unwrap();
        let client = redis::Client::open(url).unwrap();
        let mut connection = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut connection)
            .await
            .unwrap();
        assert!(keys.iter().any(|k| k.contains("rl:login:")), "{keys:?}");
        let local_part = owner.email.split('@').next().unwrap();
        for key in &keys {
            assert!(
                !key.contains(local_part) && !key.contains("203.0.113") && !key.contains("192.0.2"),
                "{key}"
            );
        }
    }
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_dashboard_basic_credentials_get_429_after_the_configured_failures() {
    let app = app_with(&[
        ("RATE_LIMIT_LOGIN", "3/h"),
        ("RATE_LIMIT_LOGIN_ADDRESS", "30/h"),
    ])
    .await;
    let username = app.state.config.admin_username.clone();
    let basic = |ip: &str, password: &str| {
        from_address(app.get("/admin/queues"), ip).basic_auth(&username, Some(password))
    };

    // 200 at once: exactly the quota is checked, the rest refused.
    let guesses = (0..200).map(|i| basic("198.51.100.9", &format!("guess {i}")).send());
    let statuses: Vec<u16> = join_all(guesses)
        .await
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        3,
        "{statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 429).count(),
        197,
        "{statuses:?}"
    );

    // The right password from that address is refused too, with Retry-After.
    let refused = basic("198.51.100.9", "dashboard-password")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    // Another address is not affected.
    let allowed = basic("198.51.100.10", "dashboard-password")
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
}

#[tokio::test]
async fn current_password_guesses_are_limited_like_sign_ins() {
    let app = app_with(&[("RATE_LIMIT_LOGIN", "3/h")]).await;
    let user = app.register_user().await;
    let change =
        |current: &str| json!({"password": "a whole new password", "currentPassword": current});

    for _ in 0..3 {
        let response = patch_me(&app, &user, "198.51.100.20", &change("wrong")).await;
        assert_eq!(refusal(response).await, 422);
    }
    let response = patch_me(&app, &user, "198.51.100.20", &change(PASSWORD)).await;
    assert_eq!(refusal(response).await, 429);
    // The same account and address at the login form: the same counter.
    assert_eq!(
        refusal(login(&app, "198.51.100.20", &user.email, PASSWORD).await).await,
        429
    );
    assert_eq!(
        patch_me(&app, &user, "198.51.100.21", &change(PASSWORD))
            .await
            .status(),
        200
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_full_hash_budget_answers_server_busy_and_other_requests_still_answer() {
    let app = app_with(&[
        ("PASSWORD_HASH_CONCURRENCY", "1"),
        ("PASSWORD_HASH_QUEUE", "0"),
        ("PASSWORD_HASH_WAIT", "1s"),
        ("RATE_LIMIT_LOGIN", "1/h"),
    ])
    .await;
    let user = app.create_user_with_role(Role::User).await;
    let held = app
        .state
        .passwords
        .budget()
        .occupy_all()
        .expect("an idle budget");

    let busy = from_address(app.post("/api/v1/auth/login"), "198.51.100.30")
        .header("Accept-Language", "pt-BR")
        .json(&json!({"email": user.email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert_eq!(busy.status(), 503);
    assert_eq!(busy.headers()["retry-after"], "1");
    let body = problem(busy).await;
    assert_eq!(body["code"], "server_busy");
    assert_eq!(body["title"], "Servidor ocupado");
    let change = json!({"email": "new@example.com", "currentPassword": PASSWORD});
    assert_eq!(
        refusal(patch_me(&app, &user, "198.51.100.30", &change).await).await,
        503
    );
    // Requests that check no password do not wait for a turn.
    assert_eq!(app.get("/api/v1/items").send().await.unwrap().status(), 200);
    assert_eq!(
        app.get("/api/v1/users/me")
            .bearer_auth(&user.access_token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    drop(held);
    // The refused attempts were given back: the 1/h quota is still unspent.
    assert_eq!(
        login(&app, "198.51.100.30", &user.email, PASSWORD)
            .await
            .status(),
        200
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_email_change_needs_the_current_password_ends_other_sessions_and_is_told() {
    let app = app_with(&[]).await;
    let user = app.register_user().await;
    let other_device = app.login_as(&user.email, PASSWORD, Role::User).await;
    let new_email = format!("moved-{}@example.org", Uuid::new_v4().simple());
    let ip = "198.51.100.40";

    let without = patch_me(&app, &user, ip, &json!({"email": new_email})).await;
    assert_eq!(without.status(), 422);
    assert!(problem(without).await["errors"]["currentPassword"].is_array());
    let wrong = patch_me(
        &app,
        &user,
        ip,
        &json!({"email": new_email, "currentPassword": "nope"}),
    )
    .await;
    assert_eq!(wrong.status(), 422);
    assert!(problem(wrong).await["errors"]["currentPassword"].is_array());
    // Sending the current address back is no change and needs nothing.
    let same = patch_me(
        &app,
        &user,
        ip,
        &json!({"email": user.email.to_uppercase(), "name": "Same"}),
    )
    .await;
    assert_eq!(same.status(), 200);
    let me = |token: &str| app.get("/api/v1/users/me").bearer_auth(token).send();
    assert_eq!(me(&other_device.access_token).await.unwrap().status(), 200);
    let mine: Value = me(&user.access_token).await.unwrap().json().await.unwrap();
    assert_eq!(mine["email"], user.email, "refused changes kept nothing");

    let changed = patch_me(
        &app,
        &user,
        ip,
        &json!({"email": new_email, "currentPassword": PASSWORD}),
    )
    .await;
    assert_eq!(changed.status(), 200);

    let other = me(&other_device.access_token).await.unwrap();
    assert_eq!(other.status(), 401);
    assert_eq!(problem(other).await["code"], "session_revoked");
    assert_eq!(me(&user.access_token).await.unwrap().status(), 200);

    app.drain_jobs().await;
    let feed: Value = app
        .get("/api/v1/notifications?limit=100")
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let told = feed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["event"] == "account.email_changed")
        .unwrap_or_else(|| panic!("no account.email_changed in {feed}"));
    let message = told["message"].as_str().unwrap();
    assert!(message.contains(&mask(&user.email)), "{message}");
    assert!(message.contains(&mask(&new_email)), "{message}");
    assert!(
        !message.contains(&user.email) && !message.contains(&new_email),
        "{message}"
    );
    assert!(!told["data"].to_string().contains(&new_email), "{told}");
}
