//! Idempotency keys (docs/spec.md §6.2) on the creating POSTs: registration and the
//! admin item and user APIs.

use crate::helpers::{PASSWORD, TestApp, TestUser, problem, spawn_app};
use dispatch::users::role::Role;
use futures::future::join_all;
use reqwest::Response;
use serde_json::{Value, json};
use uuid::Uuid;

fn unique_email() -> String {
    format!("idem-{}@example.com", Uuid::new_v4().simple())
}

fn registration(email: &str) -> Value {
    json!({"name": "Idem Shopper", "email": email, "password": PASSWORD})
}

async fn register(app: &TestApp, key: &str, body: &Value) -> Response {
    app.post("/api/v1/users")
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn create_item(app: &TestApp, admin: &TestUser, key: &str, body: &Value) -> Response {
    app.post("/api/v1/admin/items")
        .bearer_auth(&admin.access_token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

fn replayed(response: &Response) -> bool {
    match response.headers().get("idempotent-replayed") {
        None => false,
        Some(value) => {
            assert_eq!(value, "true");
            true
        }
    }
}

/// Reads a 201 and whether it was a replay.
async fn created(response: Response) -> (Value, bool) {
    let replay = replayed(&response);
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    (serde_json::from_str(&text).unwrap(), replay)
}

/// The live accounts whose email contains `email`, as an admin sees them.
async fn accounts_with_email(app: &TestApp, admin: &TestUser, email: &str) -> Vec<Value> {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("email", email)
        .finish();
    let response = app
        .get(&format!("/api/v1/admin/users?{query}"))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

async fn admin_items(app: &TestApp, admin: &TestUser) -> Vec<Value> {
    let response = app
        .get("/api/v1/admin/items?limit=100")
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let page: Value = response.json().await.unwrap();
    page["items"].as_array().unwrap().clone()
}

/// Checks a batch of concurrent answers to one key: each is the original 201,
/// a replay of it, or "in flight"; exactly one is the original.
async fn one_original_among(responses: Vec<Response>) -> Value {
    let mut originals = Vec::new();
    let mut replays = Vec::new();
    for response in responses {
        match response.status().as_u16() {
            201 => {
                let (body, replay) = created(response).await;
                if replay {
                    replays.push(body)
                } else {
                    originals.push(body)
                }
            }
            409 => assert_eq!(problem(response).await["code"], "idempotency_key_in_flight"),
            other => panic!("unexpected {other}: {}", response.text().await.unwrap()),
        }
    }
    assert_eq!(originals.len(), 1, "exactly one request did the work");
    for replay in &replays {
        assert_eq!(replay, &originals[0], "a replay is the stored response");
    }
    originals.remove(0)
}

#[tokio::test]
async fn twenty_concurrent_registrations_with_one_key_create_one_account() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let email = unique_email();
    let body = registration(&email);
    let key = Uuid::new_v4().to_string();

    let responses = join_all((0..20).map(|_| register(&app, &key, &body))).await;
    let original = one_original_among(responses).await;

    let accounts = accounts_with_email(&app, &admin, &email).await;
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    assert_eq!(accounts[0]["id"], original["id"]);

    let (again, replay) = created(register(&app, &key, &body).await).await;
    assert!(replay);
    assert_eq!(again, original);
    app.drain_jobs().await;
}

#[tokio::test]
async fn twenty_concurrent_item_creations_with_one_key_create_one_item() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let body = json!({"name": "Once only", "price": 700, "stock": 3});
    let key = Uuid::new_v4().to_string();

    let responses = join_all((0..20).map(|_| create_item(&app, &admin, &key, &body))).await;
    let original = one_original_among(responses).await;

    let items = admin_items(&app, &admin).await;
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["id"], original["id"]);
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_replay_after_completion_returns_the_same_response_marked_as_replayed() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let email = unique_email();
    let body = registration(&email);
    let key = Uuid::new_v4().to_string();

    let (first, replay) = created(register(&app, &key, &body).await).await;
    assert!(!replay, "the first answer is not a replay");
    for _ in 0..2 {
        let (again, replay) = created(register(&app, &key, &body).await).await;
        assert!(replay);
        assert_eq!(again, first);
    }
    assert_eq!(accounts_with_email(&app, &admin, &email).await.len(), 1);

    let item = json!({"name": "Replayed", "price": 100, "stock": 1});
    let (first, replay) = created(create_item(&app, &admin, &key, &item).await).await;
    assert!(!replay, "another caller and route: a key of its own");
    let (again, replay) = created(create_item(&app, &admin, &key, &item).await).await;
    assert!(replay);
    assert_eq!(again, first);
    assert_eq!(admin_items(&app, &admin).await.len(), 1);
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_same_key_with_another_body_is_refused_with_422() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let (email, other_email) = (unique_email(), unique_email());
    let key = Uuid::new_v4().to_string();
    created(register(&app, &key, &registration(&email)).await).await;

    let response = register(&app, &key, &registration(&other_email)).await;
    assert_eq!(response.status(), 422);
    assert_eq!(problem(response).await["code"], "idempotency_key_reused");
    assert!(
        accounts_with_email(&app, &admin, &other_email)
            .await
            .is_empty()
    );

    let item_key = Uuid::new_v4().to_string();
    created(
        create_item(
            &app,
            &admin,
            &item_key,
            &json!({"name": "A", "price": 1, "stock": 1}),
        )
        .await,
    )
    .await;
    let response = create_item(
        &app,
        &admin,
        &item_key,
        &json!({"name": "A", "price": 2, "stock": 1}),
    )
    .await;
    assert_eq!(response.status(), 422);
    assert_eq!(problem(response).await["code"], "idempotency_key_reused");
    assert_eq!(admin_items(&app, &admin).await.len(), 1);
    app.drain_jobs().await;
}

#[tokio::test]
async fn reordered_json_keys_with_the_same_values_are_the_same_body() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let email = unique_email();
    let key = Uuid::new_v4().to_string();
    let send = |text: String| {
        app.post("/api/v1/users")
            .header("Idempotency-Key", &key)
            .header("Content-Type", "application/json")
            .body(text)
            .send()
    };
    let (first, replay) = created(
        send(format!(r#"{{"name":"Idem Shopper","email":"{email}","password":"{PASSWORD}","address":{{"line1":"1 Road","city":"Recife","state":"PE","postalCode":"50000","country":"BR"}}}}"#))
            .await
            .unwrap(),
    )
    .await;
    assert!(!replay);
    let (again, replay) = created(
        send(format!(
            "{{\n  \"address\": {{\"country\": \"BR\", \"postalCode\": \"50000\", \"state\": \"PE\", \"city\": \"Recife\", \"line1\": \"1 Road\"}},\n  \"password\": \"{PASSWORD}\",\n  \"email\": \"{email}\",\n  \"name\": \"Idem Shopper\"\n}}"
        ))
        .await
        .unwrap(),
    )
    .await;
    assert!(
        replay,
        "same values in another order and layout are a replay"
    );
    assert_eq!(again, first);
    assert_eq!(accounts_with_email(&app, &admin, &email).await.len(), 1);
    app.drain_jobs().await;
}

#[tokio::test]
async fn keys_are_scoped_to_the_caller() {
    let app = spawn_app().await;
    let first_admin = app.create_user_with_role(Role::Admin).await;
    let second_admin = app.create_user_with_role(Role::Superadmin).await;
    let key = Uuid::new_v4().to_string();
    let body = json!({"name": "Shared key", "price": 100, "stock": 1});

    let (mine, replay) = created(create_item(&app, &first_admin, &key, &body).await).await;
    assert!(!replay);
    let (theirs, replay) = created(create_item(&app, &second_admin, &key, &body).await).await;
    assert!(!replay, "another caller's key is not a replay");
    assert_ne!(mine["id"], theirs["id"]);
    assert_eq!(admin_items(&app, &first_admin).await.len(), 2);

    // With another body too: one caller's key never refuses another's request.
    let other = json!({"name": "Other body", "price": 5, "stock": 5});
    let third_admin = app.create_user_with_role(Role::Admin).await;
    let (third, replay) = created(create_item(&app, &third_admin, &key, &other).await).await;
    assert!(!replay);
    assert_eq!(third["name"], "Other body");
    app.drain_jobs().await;
}

#[tokio::test]
async fn keys_are_scoped_to_the_route() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let key = Uuid::new_v4().to_string();
    let email = unique_email();

    let (item, replay) = created(
        create_item(
            &app,
            &admin,
            &key,
            &json!({"name": "Routed", "price": 1, "stock": 1}),
        )
        .await,
    )
    .await;
    assert!(!replay);
    let response = app
        .post("/api/v1/admin/users")
        .bearer_auth(&admin.access_token)
        .header("Idempotency-Key", &key)
        .json(&json!({"name": "Routed", "email": email, "password": PASSWORD, "role": "shipper"}))
        .send()
        .await
        .unwrap();
    let (user, replay) = created(response).await;
    assert!(!replay, "the same key on another route is a new request");
    assert_eq!(user["role"], "shipper");
    assert_ne!(user["id"], item["id"]);
    assert_eq!(accounts_with_email(&app, &admin, &email).await.len(), 1);
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_registration_refused_before_any_effect_can_be_retried_with_the_same_key() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let email = unique_email();
    let key = Uuid::new_v4().to_string();

    let response = register(
        &app,
        &key,
        &json!({"name": "Idem Shopper", "email": email, "password": "short"}),
    )
    .await;
    assert_eq!(response.status(), 422);
    assert!(problem(response).await["errors"]["password"].is_array());
    assert!(accounts_with_email(&app, &admin, &email).await.is_empty());

    let (account, replay) = created(register(&app, &key, &registration(&email)).await).await;
    assert!(!replay);
    assert_eq!(account["email"], email.as_str());
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_item_creation_refused_before_any_effect_can_be_retried_with_the_same_key() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let key = Uuid::new_v4().to_string();

    let response = create_item(
        &app,
        &admin,
        &key,
        &json!({"name": "Retry", "price": 100, "currency": "eur", "stock": 1}),
    )
    .await;
    assert_eq!(response.status(), 422);
    assert!(problem(response).await["errors"]["currency"].is_array());
    let response = create_item(
        &app,
        &admin,
        &key,
        &json!({"name": "Retry", "price": -1, "stock": 1}),
    )
    .await;
    assert_eq!(response.status(), 422);
    assert!(admin_items(&app, &admin).await.is_empty());

    let (item, replay) = created(
        create_item(
            &app,
            &admin,
            &key,
            &json!({"name": "Retry", "price": 100, "stock": 1}),
        )
        .await,
    )
    .await;
    assert!(!replay);
    assert_eq!(item["name"], "Retry");
    assert_eq!(admin_items(&app, &admin).await.len(), 1);
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_registration_that_fails_on_a_taken_email_creates_nothing_and_is_not_stored() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let email = unique_email();
    let (original, _) =
        created(register(&app, &Uuid::new_v4().to_string(), &registration(&email)).await).await;

    let key = Uuid::new_v4().to_string();
    let response = register(&app, &key, &registration(&email)).await;
    assert_eq!(response.status(), 409);
    assert!(!replayed(&response));
    let body = problem(response).await;
    assert_eq!(body["code"], "email_taken");
    assert!(body["errors"]["email"].is_array());

    let accounts = accounts_with_email(&app, &admin, &email).await;
    assert_eq!(accounts.len(), 1);
    assert_eq!(accounts[0]["id"], original["id"]);
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_missing_or_malformed_key_is_a_400_naming_the_header() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let email = unique_email();

    let response = app
        .post("/api/v1/users")
        .json(&registration(&email))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = problem(response).await;
    assert_eq!(body["code"], "idempotency_key_required");
    assert!(body["errors"]["Idempotency-Key"].is_array(), "{body}");

    for key in ["x".repeat(256), "   ".to_owned(), "has space".to_owned()] {
        let response = register(&app, &key, &registration(&email)).await;
        assert_eq!(response.status(), 400, "key {key:?}");
        let body = problem(response).await;
        assert!(body["errors"]["Idempotency-Key"].is_array(), "{body}");
    }
    assert!(accounts_with_email(&app, &admin, &email).await.is_empty());
    app.drain_jobs().await;
}
