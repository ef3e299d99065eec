//! `/api/v1/users`: registration, the caller's own account, public profiles
//! (docs/spec.md §2.2 user/address rules, §3.3 passwords, §6.1 localised problems).

use crate::helpers::{PASSWORD, TestApp, TestUser, problem, spawn_app};
use dispatch::users::role::Role;
use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

const NEW_PASSWORD: &str = "a brand new passphrase";

fn unique_email(prefix: &str) -> String {
    format!("{prefix}-{}@example.com", Uuid::new_v4().simple())
}

fn address() -> Value {
    json!({
        "line1": "Rua Augusta, 1500",
        "line2": "Apto 12",
        "city": "São Paulo",
        "state": "SP",
        "postalCode": "01304-001",
        "country": "br"
    })
}

async fn register(app: &TestApp, body: &Value) -> Response {
    app.post("/api/v1/users")
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn me(app: &TestApp, access_token: &str) -> Response {
    app.get("/api/v1/users/me")
        .bearer_auth(access_token)
        .send()
        .await
        .unwrap()
}

async fn patch_me(app: &TestApp, user: &TestUser, body: &Value) -> Response {
    app.patch("/api/v1/users/me")
        .bearer_auth(&user.access_token)
        .json(body)
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

/// Asserts that a problem's `errors` names `field`.
fn names_field(body: &Value, field: &str) {
    let messages = body["errors"][field].as_array();
    assert!(
        messages.is_some_and(|m| !m.is_empty()),
        "expected errors.{field} in {body}"
    );
}

async fn ok_json(response: Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

#[tokio::test]
async fn registering_without_an_address_returns_the_account_with_its_email_in_lower_case() {
    let app = spawn_app().await;
    let email = format!("Ana.Souza-{}@Example.COM", Uuid::new_v4().simple());

    let response = register(
        &app,
        &json!({"name": "Ana Souza", "email": email, "password": PASSWORD}),
    )
    .await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| id.parse::<Uuid>().is_ok()),
        "{body}"
    );
    assert_eq!(body["name"], "Ana Souza");
    assert_eq!(body["email"], email.to_lowercase());
    assert_eq!(body["role"], "user");
    assert_eq!(body["language"], "en");
    assert!(body["address"].is_null(), "{body}");
    assert!(
        body["createdAt"].is_string() && body["updatedAt"].is_string(),
        "{body}"
    );
    let keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert!(
        !keys.iter().any(|k| k.to_lowercase().contains("password")),
        "{body}"
    );
    // The account can sign in with the address as typed.
    assert_eq!(app.login(&email, PASSWORD).await.status(), 200);
    app.drain_jobs().await;
}

#[tokio::test]
async fn registering_with_an_address_in_pt_br_keeps_both() {
    let app = spawn_app().await;
    let email = unique_email("joao");

    let response = register(
        &app,
        &json!({"name": "João", "email": email, "password": PASSWORD, "language": "pt-BR", "address": address()}),
    )
    .await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["language"], "pt-BR");
    assert_eq!(
        body["address"],
        json!({
            "line1": "Rua Augusta, 1500",
            "line2": "Apto 12",
            "city": "São Paulo",
            "state": "SP",
            "postalCode": "01304-001",
            "country": "BR"
        })
    );
    let user = app.login_as(&email, PASSWORD, Role::User).await;
    let mine = ok_json(me(&app, &user.access_token).await).await;
    assert_eq!(mine, body);
    let login: Value = app.login(&email, PASSWORD).await.json().await.unwrap();
    assert_eq!(login["language"], "pt-BR");
    app.drain_jobs().await;
}

#[tokio::test]
async fn registering_without_an_idempotency_key_is_400() {
    let app = spawn_app().await;
    let email = unique_email("nokey");

    let response = app
        .post("/api/v1/users")
        .json(&json!({"name": "No Key", "email": email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();

    let body = expect_problem(response, 400, "idempotency_key_required").await;
    names_field(&body, "Idempotency-Key");
    // Nothing was created.
    expect_problem(
        app.login(&email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn registering_an_email_a_live_user_has_is_409_in_any_case() {
    let app = spawn_app().await;
    let existing = app.register_user().await;

    for email in [existing.email.clone(), existing.email.to_uppercase()] {
        let response = register(
            &app,
            &json!({"name": "Copycat", "email": email, "password": PASSWORD}),
        )
        .await;
        let body = expect_problem(response, 409, "email_taken").await;
        names_field(&body, "email");
    }
    // The original account is untouched.
    let mine = ok_json(me(&app, &existing.access_token).await).await;
    assert_eq!(mine["name"], "Test Shopper");
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_deleted_users_email_can_register_again() {
    let app = spawn_app().await;
    let first = app.register_user().await;
    let deleted = app
        .delete("/api/v1/users/me")
        .bearer_auth(&first.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    let response = register(
        &app,
        &json!({"name": "Second Life", "email": first.email.to_uppercase(), "password": NEW_PASSWORD}),
    )
    .await;

    assert_eq!(response.status(), 201);
    let body: Value = response.json().await.unwrap();
    assert_ne!(body["id"], first.id.to_string());
    assert_eq!(body["email"], first.email);
    let second = app.login_as(&first.email, NEW_PASSWORD, Role::User).await;
    assert_eq!(second.id.to_string(), body["id"]);
    expect_problem(
        app.login(&first.email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_user_reads_their_own_account() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let body = ok_json(me(&app, &user.access_token).await).await;

    assert_eq!(body["id"], user.id.to_string());
    assert_eq!(body["email"], user.email);
    assert_eq!(body["name"], "Test Shopper");
    assert_eq!(body["role"], "user");
    assert_eq!(body["language"], "en");
    assert!(body["address"].is_null());
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_user_changes_their_name_and_language() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let body = ok_json(
        patch_me(
            &app,
            &user,
            &json!({"name": "Renamed", "language": "pt-BR"}),
        )
        .await,
    )
    .await;

    assert_eq!(body["name"], "Renamed");
    assert_eq!(body["language"], "pt-BR");
    assert_eq!(body["email"], user.email);
    let mine = ok_json(me(&app, &user.access_token).await).await;
    assert_eq!(mine["name"], "Renamed");
    assert_eq!(mine["language"], "pt-BR");
    let login: Value = app.login(&user.email, PASSWORD).await.json().await.unwrap();
    assert_eq!(login["language"], "pt-BR");
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_user_sets_replaces_and_removes_their_address() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let set = ok_json(patch_me(&app, &user, &json!({"address": address()})).await).await;
    assert_eq!(set["address"]["city"], "São Paulo");
    assert_eq!(set["address"]["country"], "BR");

    let other = json!({"line1": "10 Downing St", "city": "London", "state": "Greater London", "postalCode": "SW1A 2AA", "country": "GB"});
    let replaced = ok_json(patch_me(&app, &user, &json!({"address": other})).await).await;
    assert_eq!(replaced["address"]["line1"], "10 Downing St");
    assert_eq!(replaced["address"]["city"], "London");
    assert!(replaced["address"]["line2"].is_null(), "{replaced}");
    assert_eq!(replaced["address"]["country"], "GB");

    // A PATCH without `address` leaves it alone.
    let renamed = ok_json(patch_me(&app, &user, &json!({"name": "Still Housed"})).await).await;
    assert_eq!(renamed["address"], replaced["address"]);

    let removed = ok_json(patch_me(&app, &user, &json!({"address": null})).await).await;
    assert!(removed["address"].is_null(), "{removed}");
    assert!(ok_json(me(&app, &user.access_token).await).await["address"].is_null());
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_user_changes_their_email_and_signs_in_with_the_new_one() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let new_email = format!("New-Address-{}@Example.com", Uuid::new_v4().simple());

    let body = ok_json(
        patch_me(
            &app,
            &user,
            &json!({"email": new_email, "currentPassword": PASSWORD}),
        )
        .await,
    )
    .await;

    assert_eq!(body["email"], new_email.to_lowercase());
    assert_eq!(
        app.login(&new_email.to_lowercase(), PASSWORD)
            .await
            .status(),
        200
    );
    expect_problem(
        app.login(&user.email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    // The old email is free again.
    let response = register(
        &app,
        &json!({"name": "Newcomer", "email": user.email, "password": PASSWORD}),
    )
    .await;
    assert_eq!(response.status(), 201);
    app.drain_jobs().await;
}

#[tokio::test]
async fn changing_the_email_to_another_live_users_email_is_409() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other = app.register_user().await;

    let response = patch_me(
        &app,
        &user,
        &json!({"email": other.email.to_uppercase(), "name": "Thief", "currentPassword": PASSWORD}),
    )
    .await;

    let body = expect_problem(response, 409, "email_taken").await;
    names_field(&body, "email");
    let mine = ok_json(me(&app, &user.access_token).await).await;
    assert_eq!(mine["email"], user.email);
    assert_eq!(
        mine["name"], "Test Shopper",
        "nothing of a refused change is kept"
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn changing_the_password_without_the_current_one_is_422() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let response = patch_me(&app, &user, &json!({"password": NEW_PASSWORD})).await;

    let body = expect_problem(response, 422, "validation_failed").await;
    names_field(&body, "currentPassword");
    assert_eq!(app.login(&user.email, PASSWORD).await.status(), 200);
    expect_problem(
        app.login(&user.email, NEW_PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn changing_the_password_with_a_wrong_current_one_is_422() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let response = patch_me(
        &app,
        &user,
        &json!({"password": NEW_PASSWORD, "currentPassword": "definitely not it"}),
    )
    .await;

    let body = expect_problem(response, 422, "validation_failed").await;
    names_field(&body, "currentPassword");
    assert_eq!(app.login(&user.email, PASSWORD).await.status(), 200);
    expect_problem(
        app.login(&user.email, NEW_PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn changing_the_password_ends_the_other_sessions_but_not_the_current_one() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let other_device = app.login_as(&user.email, PASSWORD, Role::User).await;

    let response = patch_me(
        &app,
        &user,
        &json!({"password": NEW_PASSWORD, "currentPassword": PASSWORD}),
    )
    .await;

    ok_json(response).await;
    expect_problem(
        app.login(&user.email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    assert_eq!(app.login(&user.email, NEW_PASSWORD).await.status(), 200);
    assert_eq!(me(&app, &user.access_token).await.status(), 200);
    expect_problem(
        me(&app, &other_device.access_token).await,
        401,
        "session_revoked",
    )
    .await;
    let other_refresh = app
        .post("/api/v1/auth/refresh")
        .json(&json!({"refreshToken": other_device.refresh_token}))
        .send()
        .await
        .unwrap();
    expect_problem(other_refresh, 401, "session_revoked").await;
    let own_refresh = app
        .post("/api/v1/auth/refresh")
        .json(&json!({"refreshToken": user.refresh_token}))
        .send()
        .await
        .unwrap();
    assert_eq!(own_refresh.status(), 200);
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_too_short_new_password_is_422_naming_password() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let response = patch_me(
        &app,
        &user,
        &json!({"password": "short", "currentPassword": PASSWORD}),
    )
    .await;

    let body = expect_problem(response, 422, "validation_failed").await;
    names_field(&body, "password");
    assert_eq!(app.login(&user.email, PASSWORD).await.status(), 200);
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_public_profile_shows_only_id_name_and_created_at() {
    let app = spawn_app().await;
    let viewer = app.register_user().await;
    let subject = app.register_user().await;

    let response = app
        .get(&format!("/api/v1/users/{}", subject.id))
        .bearer_auth(&viewer.access_token)
        .send()
        .await
        .unwrap();

    let body = ok_json(response).await;
    let mut keys: Vec<&str> = body
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, ["createdAt", "id", "name"], "{body}");
    assert!(body.get("email").is_none());
    assert_eq!(body["id"], subject.id.to_string());
    assert_eq!(body["name"], "Test Shopper");
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_public_profile_of_a_deleted_or_unknown_user_is_404() {
    let app = spawn_app().await;
    let viewer = app.register_user().await;
    let leaver = app.register_user().await;
    let deleted = app
        .delete("/api/v1/users/me")
        .bearer_auth(&leaver.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);

    for id in [leaver.id, Uuid::new_v4()] {
        let response = app
            .get(&format!("/api/v1/users/{id}"))
            .bearer_auth(&viewer.access_token)
            .send()
            .await
            .unwrap();
        expect_problem(response, 404, "not_found").await;
    }
    let malformed = app
        .get("/api/v1/users/not-a-uuid")
        .bearer_auth(&viewer.access_token)
        .send()
        .await
        .unwrap();
    let body = expect_problem(malformed, 400, "invalid_request").await;
    names_field(&body, "id");
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_public_profile_needs_a_signed_in_caller() {
    let app = spawn_app().await;
    let subject = app.register_user().await;

    let response = app
        .get(&format!("/api/v1/users/{}", subject.id))
        .send()
        .await
        .unwrap();

    expect_problem(response, 401, "unauthorized").await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_own_account_routes_need_a_signed_in_caller() {
    let app = spawn_app().await;
    expect_problem(
        app.get("/api/v1/users/me").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    let patch = app
        .patch("/api/v1/users/me")
        .json(&json!({"name": "X"}))
        .send()
        .await
        .unwrap();
    expect_problem(patch, 401, "unauthorized").await;
    expect_problem(
        app.delete("/api/v1/users/me").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
}

#[tokio::test]
async fn an_address_with_a_missing_field_is_400_naming_it() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let mut incomplete = address();
    incomplete.as_object_mut().unwrap().remove("city");

    let registration = register(
        &app,
        &json!({"name": "Half", "email": unique_email("half"), "password": PASSWORD, "address": incomplete}),
    )
    .await;
    let body = expect_problem(registration, 400, "invalid_request").await;
    names_field(&body, "address.city");

    let patch = patch_me(&app, &user, &json!({"address": incomplete})).await;
    let body = expect_problem(patch, 400, "invalid_request").await;
    names_field(&body, "address.city");
    assert!(ok_json(me(&app, &user.access_token).await).await["address"].is_null());
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_address_with_a_three_letter_country_is_422_naming_it() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let mut three_letters = address();
    three_letters["country"] = json!("BRA");

    let email = unique_email("bra");
    let registration = register(
        &app,
        &json!({"name": "Three", "email": email, "password": PASSWORD, "address": three_letters}),
    )
    .await;
    let body = expect_problem(registration, 422, "validation_failed").await;
    names_field(&body, "address.country");
    expect_problem(
        app.login(&email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;

    let patch = patch_me(&app, &user, &json!({"address": three_letters})).await;
    let body = expect_problem(patch, 422, "validation_failed").await;
    names_field(&body, "address.country");
    assert!(ok_json(me(&app, &user.access_token).await).await["address"].is_null());
    app.drain_jobs().await;
}

#[tokio::test]
async fn problem_details_follow_accept_language() {
    let app = spawn_app().await;
    let existing = app.register_user().await;
    let body = json!({"name": "Copycat", "email": existing.email, "password": PASSWORD});
    let send = |language: &'static str| {
        app.post("/api/v1/users")
            .header("Idempotency-Key", Uuid::new_v4().to_string())
            .header("Accept-Language", language)
            .json(&body)
            .send()
    };

    let english = expect_problem(send("en").await.unwrap(), 409, "email_taken").await;
    let portuguese_response = send("pt-BR,pt;q=0.9,en;q=0.5").await.unwrap();
    assert_eq!(portuguese_response.headers()["content-language"], "pt-BR");
    let portuguese = expect_problem(portuguese_response, 409, "email_taken").await;

    assert_eq!(
        english["detail"],
        "An account with this email already exists."
    );
    assert_eq!(portuguese["detail"], "Já existe uma conta com este e-mail.");
    assert_eq!(portuguese["message"], portuguese["detail"]);
    assert_eq!(portuguese["title"], "E-mail em uso");
    assert_eq!(
        portuguese["errors"]["email"],
        json!(["já é usado por outra conta"])
    );
    assert_ne!(english["detail"], portuguese["detail"]);
    app.drain_jobs().await;
}

#[tokio::test]
async fn problem_details_follow_the_lang_query_parameter() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let english = expect_problem(
        app.get("/api/v1/users/me").send().await.unwrap(),
        401,
        "unauthorized",
    )
    .await;
    // `?lang=` wins over the header.
    let portuguese = app
        .get("/api/v1/users/me?lang=pt-BR")
        .header("Accept-Language", "en")
        .send()
        .await
        .unwrap();
    let portuguese = expect_problem(portuguese, 401, "unauthorized").await;

    assert_eq!(
        english["detail"],
        "Sign in to do this (send a Bearer access token)."
    );
    assert_eq!(
        portuguese["detail"],
        "Entre na sua conta para fazer isto (envie um token de acesso Bearer)."
    );
    assert_ne!(english["detail"], portuguese["detail"]);

    let wrong = app
        .patch("/api/v1/users/me?lang=pt-BR")
        .bearer_auth(&user.access_token)
        .json(&json!({"password": NEW_PASSWORD, "currentPassword": "not it at all"}))
        .send()
        .await
        .unwrap();
    let wrong = expect_problem(wrong, 422, "validation_failed").await;
    assert_eq!(
        wrong["detail"],
        "Alguns valores não seguem as regras. Veja `errors` para cada campo."
    );
    assert_eq!(
        wrong["errors"]["currentPassword"],
        json!(["não é a sua senha atual"])
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn nobody_gives_themselves_a_role() {
    let app = spawn_app().await;
    let user = app.register_user().await;

    let patch = patch_me(&app, &user, &json!({"role": "admin"})).await;
    let body = expect_problem(patch, 400, "invalid_request").await;
    names_field(&body, "role");
    let email = unique_email("climber");
    let registration = register(
        &app,
        &json!({"name": "Climber", "email": email, "password": PASSWORD, "role": "superadmin"}),
    )
    .await;
    let body = expect_problem(registration, 400, "invalid_request").await;
    names_field(&body, "role");

    assert_eq!(
        ok_json(me(&app, &user.access_token).await).await["role"],
        "user"
    );
    expect_problem(
        app.login(&email, PASSWORD).await,
        401,
        "invalid_credentials",
    )
    .await;
    app.drain_jobs().await;
}
