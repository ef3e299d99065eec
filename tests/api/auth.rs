//! `/api/v1/auth/*`: sign-in, refresh-token rotation and reuse detection,
//! sign-out of one session or all of them (docs/spec.md §3.2).

use crate::helpers::{PASSWORD, TestApp, TestUser, problem, spawn_app, spawn_app_with};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use dispatch::{
    auth::tokens::{AccessClaims, RefreshClaims},
    users::role::Role,
};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

/// The signing keys `spawn_app` configures (`JWT_ACCESS_SECRET`, `JWT_REFRESH_SECRET`).
const ACCESS_SECRET: &[u8] = b"test-access-secret-0123456789abcdef";
const REFRESH_SECRET: &[u8] = b"test-refresh-secret-0123456789abcdef";

fn sign(claims: &impl serde::Serialize, secret: &[u8]) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret),
    )
    .unwrap()
}

/// GET /users/me with an access token: the cheapest "does this token still work?".
async fn me(app: &TestApp, access_token: &str) -> Response {
    app.get("/api/v1/users/me")
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
}

async fn refresh(app: &TestApp, refresh_token: &str) -> Response {
    app.post("/api/v1/auth/refresh")
        .json(&json!({"refreshToken": refresh_token}))
        .send()
        .await
        .unwrap()
}

/// Asserts a problem with this status and code, and returns its body.
async fn expect_problem(response: Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status);
    let body = problem(response).await;
    assert_eq!(body["code"], code, "{body}");
    body
}

/// The fields of a token pair, checked for presence.
fn tokens(body: &Value) -> (String, String) {
    (
        body["accessToken"]
            .as_str()
            .expect("accessToken")
            .to_owned(),
        body["refreshToken"]
            .as_str()
            .expect("refreshToken")
            .to_owned(),
    )
}

/// Signs the same account in again: a second session (another device).
async fn second_session(app: &TestApp, user: &TestUser) -> TestUser {
    app.login_as(&user.email, &user.password, user.role).await
}

#[tokio::test]
async fn login_returns_a_token_pair_with_the_user_id_language_and_lifetime() {
    let app = spawn_app_with(&[("JWT_ACCESS_TTL", "5m")]).await;
    let email = format!("ana-{}@example.com", Uuid::new_v4().simple());
    let registered = app
        .post("/api/v1/users")
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&json!({"name": "Ana", "email": email, "password": PASSWORD, "language": "pt-BR"}))
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status(), 201);
    let registered: Value = registered.json().await.unwrap();

    let response = app.login(&email, PASSWORD).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let (access, refresh_token) = tokens(&body);
    assert!(!access.is_empty() && !refresh_token.is_empty());
    assert_ne!(access, refresh_token);
    assert_eq!(body["userId"], registered["id"]);
    assert_eq!(body["language"], "pt-BR");
    assert_eq!(body["expiresIn"], 300);
    let me = me(&app, &access).await;
    assert_eq!(me.status(), 200);
    let me: Value = me.json().await.unwrap();
    assert_eq!(me["id"], registered["id"]);
    app.drain_jobs().await;
}

#[tokio::test]
async fn login_email_is_case_insensitive() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let response = app
        .login(&format!("  {}  ", user.email.to_uppercase()), PASSWORD)
        .await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["userId"], user.id.to_string());
    app.drain_jobs().await;
}

#[tokio::test]
async fn unknown_email_and_wrong_password_give_the_same_401() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let wrong_password = app.login(&user.email, "not the password at all").await;
    let wrong_password_header = wrong_password.headers().get("www-authenticate").cloned();
    let wrong_password = expect_problem(wrong_password, 401, "invalid_credentials").await;
    let unknown_email = app.login("nobody-here@example.com", PASSWORD).await;
    let unknown_email_header = unknown_email.headers().get("www-authenticate").cloned();
    let unknown_email = expect_problem(unknown_email, 401, "invalid_credentials").await;

    assert_eq!(wrong_password["detail"], unknown_email["detail"]);
    assert_eq!(wrong_password["title"], unknown_email["title"]);
    assert_eq!(wrong_password["type"], unknown_email["type"]);
    assert_eq!(
        wrong_password["detail"],
        "The email or the password is wrong."
    );
    assert_eq!(wrong_password_header, unknown_email_header);
    app.drain_jobs().await;
}

#[tokio::test]
async fn refresh_rotates_the_token_pair() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let response = refresh(&app, &user.refresh_token).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    let (access, refreshed) = tokens(&body);
    assert_ne!(refreshed, user.refresh_token);
    assert_ne!(access, user.access_token);
    assert_eq!(body["userId"], user.id.to_string());
    assert_eq!(body["language"], "en");
    assert!(body["expiresIn"].as_u64().is_some_and(|s| s > 0), "{body}");
    assert_eq!(me(&app, &access).await.status(), 200);
    // The new refresh token rotates in turn.
    let again = refresh(&app, &refreshed).await;
    assert_eq!(again.status(), 200);
    let (next_access, _) = tokens(&again.json().await.unwrap());
    assert_eq!(me(&app, &next_access).await.status(), 200);
    app.drain_jobs().await;
}

#[tokio::test]
async fn refresh_token_reuse_revokes_the_whole_session() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other_device = second_session(&app, &user).await;
    let rotated = refresh(&app, &user.refresh_token).await;
    assert_eq!(rotated.status(), 200);
    let (new_access, new_refresh) = tokens(&rotated.json().await.unwrap());

    let reused = refresh(&app, &user.refresh_token).await;

    expect_problem(reused, 401, "refresh_token_reused").await;
    // Every token of that session family is dead…
    expect_problem(refresh(&app, &new_refresh).await, 401, "session_revoked").await;
    expect_problem(me(&app, &new_access).await, 401, "session_revoked").await;
    expect_problem(me(&app, &user.access_token).await, 401, "session_revoked").await;
    // …but the user's other session is not part of it.
    assert_eq!(me(&app, &other_device.access_token).await.status(), 200);
    assert_eq!(
        refresh(&app, &other_device.refresh_token).await.status(),
        200
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn refresh_accepts_the_refresh_token_as_a_bearer_header() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let response = app
        .post("/api/v1/auth/refresh")
        .bearer_auth(&user.refresh_token)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let (access, refreshed) = tokens(&response.json().await.unwrap());
    assert_eq!(me(&app, &access).await.status(), 200);
    assert_eq!(refresh(&app, &refreshed).await.status(), 200);
    app.drain_jobs().await;
}

#[tokio::test]
async fn refresh_refuses_an_access_token_or_garbage() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    expect_problem(refresh(&app, "not-a-token").await, 401, "invalid_token").await;
    expect_problem(
        refresh(&app, &user.access_token).await,
        401,
        "invalid_token",
    )
    .await;
    let bare = app.post("/api/v1/auth/refresh").send().await.unwrap();
    expect_problem(bare, 401, "invalid_token").await;
    // None of that harmed the real session.
    assert_eq!(refresh(&app, &user.refresh_token).await.status(), 200);
    app.drain_jobs().await;
}

#[tokio::test]
async fn logout_ends_that_session_at_once_but_not_the_others() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other_device = second_session(&app, &user).await;
    assert_eq!(me(&app, &user.access_token).await.status(), 200);

    let response = app
        .post("/api/v1/auth/logout")
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 204);
    let signed_out = me(&app, &user.access_token).await;
    assert!(signed_out.headers().contains_key("www-authenticate"));
    expect_problem(signed_out, 401, "session_revoked").await;
    expect_problem(
        refresh(&app, &user.refresh_token).await,
        401,
        "session_revoked",
    )
    .await;
    assert_eq!(me(&app, &other_device.access_token).await.status(), 200);
    assert_eq!(
        refresh(&app, &other_device.refresh_token).await.status(),
        200
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn logout_all_ends_every_session_of_the_user_and_only_theirs() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other_device = second_session(&app, &user).await;
    let someone_else = app.register_user().await;

    let response = app
        .post("/api/v1/auth/logout-all")
        .bearer_auth(&other_device.access_token)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 204);
    for session in [&user, &other_device] {
        expect_problem(
            me(&app, &session.access_token).await,
            401,
            "session_revoked",
        )
        .await;
        expect_problem(
            refresh(&app, &session.refresh_token).await,
            401,
            "session_revoked",
        )
        .await;
    }
    assert_eq!(me(&app, &someone_else.access_token).await.status(), 200);
    // Signing in again starts a fresh session.
    let fresh = second_session(&app, &user).await;
    assert_eq!(me(&app, &fresh.access_token).await.status(), 200);
    app.drain_jobs().await;
}

#[tokio::test]
async fn logout_needs_a_signed_in_caller() {
    let app = spawn_app().await;
    for path in ["/api/v1/auth/logout", "/api/v1/auth/logout-all"] {
        expect_problem(app.post(path).send().await.unwrap(), 401, "unauthorized").await;
    }
}

#[tokio::test]
async fn a_request_without_authorization_is_401_unauthorized_with_www_authenticate() {
    let app = spawn_app().await;

    let response = app.get("/api/v1/users/me").send().await.unwrap();

    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
    let body = expect_problem(response, 401, "unauthorized").await;
    assert_eq!(body["instance"], "/api/v1/users/me");
}

#[tokio::test]
async fn a_garbage_or_foreign_token_is_401_invalid_token() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let garbage = me(&app, "garbage.token.here").await;
    assert_eq!(garbage.headers()["www-authenticate"], "Bearer");
    expect_problem(garbage, 401, "invalid_token").await;
    // A refresh token is signed with another key: not an access token.
    expect_problem(me(&app, &user.refresh_token).await, 401, "invalid_token").await;
    // A tampered signature (its first character carries six bits of it).
    let (signed, signature) = user.access_token.rsplit_once('.').unwrap();
    let first = if signature.starts_with('A') { 'B' } else { 'A' };
    let tampered = format!("{signed}.{first}{}", &signature[1..]);
    expect_problem(me(&app, &tampered).await, 401, "invalid_token").await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn deleting_the_account_ends_all_its_sessions() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other_device = second_session(&app, &user).await;

    let response = app
        .delete("/api/v1/users/me")
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 204);
    for session in [&user, &other_device] {
        expect_problem(
            me(&app, &session.access_token).await,
            401,
            "session_revoked",
        )
        .await;
        expect_problem(
            refresh(&app, &session.refresh_token).await,
            401,
            "session_revoked",
        )
        .await;
    }
    expect_problem(
        app.login(&user.email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn staff_accounts_sign_in_like_anyone() {
    let app = spawn_app().await;
    let shipper = app.create_user_with_role(Role::Shipper).await;

    let response = me(&app, &shipper.access_token).await;

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["role"], "shipper");
    assert_eq!(body["id"], shipper.id.to_string());
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_expired_access_token_is_401_invalid_token() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let claims: AccessClaims = app.state.tokens.verify_access(&user.access_token).unwrap();
    // Control: the same claims re-signed with the test key are accepted…
    let resigned = AccessClaims {
        jti: Uuid::new_v4(),
        ..claims.clone()
    };
    assert_eq!(
        me(&app, &sign(&resigned, ACCESS_SECRET)).await.status(),
        200
    );

    // …but not once expired (well past the verifier's leeway).
    let expired = AccessClaims {
        iat: claims.iat - 3_600,
        exp: claims.iat - 600,
        ..claims
    };
    let response = me(&app, &sign(&expired, ACCESS_SECRET)).await;

    expect_problem(response, 401, "invalid_token").await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_unsigned_or_foreign_key_access_token_is_401_invalid_token() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let claims = app.state.tokens.verify_access(&user.access_token).unwrap();

    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
    let unsigned = format!("{header}.{payload}.");
    expect_problem(me(&app, &unsigned).await, 401, "invalid_token").await;
    let foreign = sign(&claims, b"some-other-secret-0123456789abcdef");
    expect_problem(me(&app, &foreign).await, 401, "invalid_token").await;
    assert_eq!(me(&app, &user.access_token).await.status(), 200);
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_expired_refresh_token_is_401_and_leaves_the_session_alone() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let claims: RefreshClaims = app
        .state
        .tokens
        .verify_refresh(&user.refresh_token)
        .unwrap();
    let expired = RefreshClaims {
        jti: Uuid::new_v4(),
        iat: claims.iat - 3_600,
        exp: claims.iat - 600,
        ..claims
    };

    let response = refresh(&app, &sign(&expired, REFRESH_SECRET)).await;

    expect_problem(response, 401, "invalid_token").await;
    assert_eq!(me(&app, &user.access_token).await.status(), 200);
    assert_eq!(refresh(&app, &user.refresh_token).await.status(), 200);
    app.drain_jobs().await;
}
