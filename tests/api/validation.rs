//! Bad input of every kind is a problem naming the offending field (docs/spec.md §6.1, §6.5),
//! never a 500, in the caller's language.

use crate::helpers::{PASSWORD, TestApp, TestUser, problem, spawn_app, spawn_app_with};
use dispatch::users::role::Role;
use reqwest::{RequestBuilder, Response};
use serde_json::{Value, json};
use uuid::Uuid;

fn address() -> Value {
    json!({"line1": "1 Road", "city": "Recife", "state": "PE", "postalCode": "50000", "country": "BR"})
}

fn registration() -> Value {
    json!({
        "name": "Valid Shopper",
        "email": format!("valid-{}@example.com", Uuid::new_v4().simple()),
        "password": PASSWORD,
        "address": address(),
    })
}

fn register(app: &TestApp) -> RequestBuilder {
    app.post("/api/v1/users")
        .header("Idempotency-Key", Uuid::new_v4().to_string())
}

fn create_item(app: &TestApp, admin: &TestUser) -> RequestBuilder {
    app.post("/api/v1/admin/items")
        .bearer_auth(&admin.access_token)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
}

fn patch_item(app: &TestApp, admin: &TestUser, id: &str) -> RequestBuilder {
    app.patch(&format!("/api/v1/admin/items/{id}"))
        .bearer_auth(&admin.access_token)
}

/// `body` with `path` (dotted) set to `value`, or removed when `value` is `None`.
fn with(mut body: Value, path: &str, value: Option<Value>) -> Value {
    let mut target = &mut body;
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap();
    for part in parts {
        target = &mut target[part];
    }
    let object = target.as_object_mut().unwrap();
    match value {
        Some(value) => object.insert(last.to_owned(), value),
        None => object.remove(last),
    };
    body
}

/// Asserts the response is a problem with `status` and `code` whose `errors`
/// name exactly `field`; returns the field's messages.
async fn assert_names_field(
    response: Response,
    status: u16,
    code: &str,
    field: &str,
) -> Vec<String> {
    assert_eq!(
        response.status(),
        status,
        "expected {status} naming {field}"
    );
    let body = problem(response).await;
    assert_eq!(body["code"], code, "{body}");
    let errors = body["errors"]
        .as_object()
        .unwrap_or_else(|| panic!("no errors: {body}"));
    assert!(errors.contains_key(field), "{field} not named: {body}");
    errors[field]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_str().unwrap().to_owned())
        .collect()
}

async fn new_item(app: &TestApp, admin: &TestUser) -> String {
    app.create_item(admin, "Valid item", 100, 1).await["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn an_unknown_json_field_is_a_400_naming_it() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let id = new_item(&app, &admin).await;

    let response = register(&app)
        .json(&with(registration(), "colour", Some(json!("red"))))
        .send()
        .await
        .unwrap();
    let messages = assert_names_field(response, 400, "invalid_request", "colour").await;
    assert_eq!(messages, ["is not a known field"]);
    let response = register(&app)
        .json(&with(registration(), "address.floor", Some(json!(3))))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 400, "invalid_request", "address.floor").await;
    let response = create_item(&app, &admin)
        .json(&json!({"name": "Heavy", "price": 1, "stock": 1, "weight": 12}))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 400, "invalid_request", "weight").await;
    let response = patch_item(&app, &admin, &id)
        .json(&json!({"deletedAt": null}))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 400, "invalid_request", "deletedAt").await;
    let response = app
        .post("/api/v1/auth/login")
        .json(&json!({"email": admin.email, "password": PASSWORD, "rememberMe": true}))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 400, "invalid_request", "rememberMe").await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_a_400_naming_the_field() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let id = new_item(&app, &admin).await;
    let item = json!({"name": "Typed", "price": 100, "stock": 1});

    for (field, value) in [
        ("price", json!("12")),
        ("price", json!(12.5)),
        ("price", json!(1e20)),
        ("stock", json!(true)),
        ("name", json!(5)),
        ("currency", json!(["usd"])),
    ] {
        let response = create_item(&app, &admin)
            .json(&with(item.clone(), field, Some(value)))
            .send()
            .await
            .unwrap();
        assert_names_field(response, 400, "invalid_request", field).await;
    }
    let response = patch_item(&app, &admin, &id)
        .json(&json!({"price": "12"}))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 400, "invalid_request", "price").await;
    let response = register(&app)
        .json(&with(registration(), "address.city", Some(json!(12))))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 400, "invalid_request", "address.city").await;
    let response = register(&app)
        .json(&with(registration(), "language", Some(json!("klingon"))))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 400, "invalid_request", "language").await;
    let response = app
        .post("/api/v1/admin/users")
        .bearer_auth(&admin.access_token)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&with(
            with(registration(), "role", Some(json!("root"))),
            "address",
            None,
        ))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 400, "invalid_request", "role").await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_out_of_range_value_is_a_422_naming_the_field() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let id = new_item(&app, &admin).await;
    let item = json!({"name": "Ranged", "price": 100, "stock": 1});

    for (field, value) in [
        ("stock", json!(-1)),
        ("stock", json!(1_000_000_001_i64)),
        ("price", json!(-1)),
        ("price", json!(1_000_000_000_001_i64)),
        ("name", json!("")),
        ("name", json!(" \t ")),
        ("name", json!("n".repeat(201))),
        ("pricePaymentId", json!("")),
    ] {
        let response = create_item(&app, &admin)
            .json(&with(item.clone(), field, Some(value)))
            .send()
            .await
            .unwrap();
        assert_names_field(response, 422, "validation_failed", field).await;
        let response = patch_item(&app, &admin, &id)
            .json(&json!({ field: value_for_patch(field) }))
            .send()
            .await
            .unwrap();
        assert_names_field(response, 422, "validation_failed", field).await;
    }
    let response = create_item(&app, &admin)
        .json(&with(item.clone(), "stock", Some(json!(-1))))
        .send()
        .await
        .unwrap();
    let messages = assert_names_field(response, 422, "validation_failed", "stock").await;
    assert_eq!(messages, ["must be between 0 and 1000000000"]);
    let response = patch_item(&app, &admin, &id)
        .json(&json!({"name": "   "}))
        .send()
        .await
        .unwrap();
    let messages = assert_names_field(response, 422, "validation_failed", "name").await;
    assert_eq!(
        messages,
        ["must not be blank"],
        "a name of blanks only is refused as blank"
    );

    let response = register(&app)
        .json(&with(registration(), "password", Some(json!("short"))))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 422, "validation_failed", "password").await;
    let response = register(&app)
        .json(&with(registration(), "email", Some(json!("not-an-email"))))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 422, "validation_failed", "email").await;
    let response = register(&app)
        .json(&with(
            registration(),
            "address.country",
            Some(json!("Brazil")),
        ))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 422, "validation_failed", "address.country").await;

    // The limits themselves are accepted, and nothing out of range was stored.
    let response = create_item(&app, &admin)
        .json(&json!({"name": "n".repeat(200), "price": 1_000_000_000_000_i64, "stock": 1_000_000_000}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let stored: Value = app
        .get(&format!("/api/v1/admin/items/{id}"))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        (stored["price"].as_i64(), stored["stock"].as_i64()),
        (Some(100), Some(1))
    );
    app.drain_jobs().await;
}

/// The out-of-range value of `field` used in the PATCH round.
fn value_for_patch(field: &str) -> Value {
    match field {
        "stock" => json!(-5),
        "price" => json!(1_000_000_000_001_i64),
        _ => json!(""),
    }
}

#[tokio::test]
async fn a_malformed_id_in_the_path_is_a_400_naming_id() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    for id in ["not-a-uuid", "123", "00000000-0000-0000-0000-00000000000g"] {
        let requests = [
            app.get(&format!("/api/v1/items/{id}")),
            app.get(&format!("/api/v1/admin/items/{id}")),
            app.patch(&format!("/api/v1/admin/items/{id}"))
                .json(&json!({"price": 1})),
            app.delete(&format!("/api/v1/admin/items/{id}")),
            app.get(&format!("/api/v1/users/{id}")),
            app.get(&format!("/api/v1/admin/users/{id}")),
            app.patch(&format!("/api/v1/admin/users/{id}"))
                .json(&json!({"name": "X"})),
            app.delete(&format!("/api/v1/admin/users/{id}")),
        ];
        for request in requests {
            let response = request
                .bearer_auth(&admin.access_token)
                .send()
                .await
                .unwrap();
            let url = response.url().to_string();
            assert_eq!(response.status(), 400, "{url}");
            let body = problem(response).await;
            assert!(body["errors"]["id"].is_array(), "{url}: {body}");
        }
    }
    app.drain_jobs().await;
}

#[tokio::test]
async fn malformed_json_is_a_400() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    for text in [
        r#"{"name": "Broken", "price": "#,
        "",
        "{name: 'x'}",
        r#"{"price": 1,}"#,
    ] {
        let response = create_item(&app, &admin)
            .header("Content-Type", "application/json")
            .body(text)
            .send()
            .await
            .unwrap();
        assert_names_field(response, 400, "invalid_request", "body").await;
    }
    for text in ["[]", "42", "null", r#""text""#] {
        let response = register(&app)
            .header("Content-Type", "application/json")
            .body(text)
            .send()
            .await
            .unwrap();
        assert_names_field(response, 400, "invalid_request", "body").await;
    }
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_body_that_is_not_json_is_a_415() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let json_text = json!({"name": "Typed", "price": 1, "stock": 1}).to_string();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        Some("application/xml"),
        None,
    ] {
        let mut request = create_item(&app, &admin).body(json_text.clone());
        if let Some(content_type) = content_type {
            request = request.header("Content-Type", content_type);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 415, "{content_type:?}");
        assert_eq!(problem(response).await["code"], "unsupported_media_type");
    }
    // Parameters and a vendor +json type are fine.
    for content_type in [
        "application/json; charset=utf-8",
        "application/merge-patch+json",
    ] {
        let response = create_item(&app, &admin)
            .header("Content-Type", content_type)
            .body(json_text.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201, "{content_type}");
    }
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_body_over_the_limit_is_a_413_problem() {
    let app = spawn_app_with(&[("BODY_LIMIT", "1024")]).await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let response = register(&app)
        .json(&with(
            registration(),
            "name",
            Some(json!("n".repeat(2_000))),
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(problem(response).await["code"], "payload_too_large");
    let response = create_item(&app, &admin)
        .json(&json!({"name": "Big", "description": "d".repeat(4_000), "price": 1, "stock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(problem(response).await["code"], "payload_too_large");
    let response = app
        .post("/api/v1/auth/login")
        .json(&json!({"email": admin.email, "password": "p".repeat(2_000)}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    problem(response).await;

    // Just under the limit still works.
    let response = create_item(&app, &admin)
        .json(&json!({"name": "Small", "description": "d".repeat(800), "price": 1, "stock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_missing_required_field_is_a_400_naming_it() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    for field in [
        "name",
        "email",
        "password",
        "address.city",
        "address.country",
    ] {
        let response = register(&app)
            .json(&with(registration(), field, None))
            .send()
            .await
            .unwrap();
        let messages = assert_names_field(response, 400, "invalid_request", field).await;
        assert_eq!(messages, ["is required"]);
    }
    for field in ["name", "price", "stock"] {
        let body = with(
            json!({"name": "Whole", "price": 1, "stock": 1}),
            field,
            None,
        );
        let response = create_item(&app, &admin).json(&body).send().await.unwrap();
        assert_names_field(response, 400, "invalid_request", field).await;
    }
    let response = app
        .post("/api/v1/auth/login")
        .json(&json!({"email": admin.email}))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 400, "invalid_request", "password").await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_malformed_query_parameter_is_a_problem_naming_it() {
    let app = spawn_app().await;
    let response = app.get("/api/v1/items?inStock=maybe").send().await.unwrap();
    assert_names_field(response, 400, "invalid_request", "inStock").await;
    let response = app
        .get(&format!("/api/v1/items?name={}", "n".repeat(101)))
        .send()
        .await
        .unwrap();
    assert_names_field(response, 422, "validation_failed", "name").await;
    let response = app
        .get("/api/v1/items?unknownParameter=1")
        .send()
        .await
        .unwrap();
    assert_names_field(response, 400, "invalid_request", "unknownParameter").await;
}

#[tokio::test]
async fn problems_speak_portuguese_when_asked() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;

    let response = register(&app)
        .header("Accept-Language", "pt-BR,pt;q=0.9,en;q=0.5")
        .json(&with(registration(), "colour", Some(json!("red"))))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["content-language"], "pt-BR");
    let messages = assert_names_field(response, 400, "invalid_request", "colour").await;
    assert_eq!(messages, ["não é um campo conhecido"]);

    let response = register(&app)
        .header("Accept-Language", "pt-BR")
        .json(&with(registration(), "email", None))
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_names_field(response, 400, "invalid_request", "email").await,
        ["é obrigatório"]
    );

    let response = create_item(&app, &admin)
        .header("Accept-Language", "pt-BR")
        .json(&json!({"name": "Caro", "price": "12", "stock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_names_field(response, 400, "invalid_request", "price").await,
        ["tem o tipo errado"]
    );

    let response = app
        .post("/api/v1/admin/items?lang=pt-BR")
        .bearer_auth(&admin.access_token)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&json!({"name": "Caro", "price": 1, "stock": -1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let body = problem(response).await;
    assert_eq!(body["title"], "Falha de validação");
    assert_eq!(
        body["errors"]["stock"],
        json!(["deve estar entre 0 e 1000000000"])
    );

    let response = create_item(&app, &admin)
        .header("Accept-Language", "pt-BR")
        .json(&json!({"name": "Euro", "price": 1, "stock": 1, "currency": "eur"}))
        .send()
        .await
        .unwrap();
    let messages = assert_names_field(response, 422, "validation_failed", "currency").await;
    assert_eq!(messages, ["deve ser a moeda da loja, USD"]);

    let response = app
        .get("/api/v1/items/nope")
        .header("Accept-Language", "pt-BR")
        .send()
        .await
        .unwrap();
    assert_eq!(
        assert_names_field(response, 400, "invalid_request", "id").await,
        ["não é um ID válido"]
    );

    let response = create_item(&app, &admin)
        .header("Accept-Language", "pt-BR")
        .body("{")
        .header("Content-Type", "application/json")
        .send()
        .await
        .unwrap();
    let messages = assert_names_field(response, 400, "invalid_request", "body").await;
    assert!(
        messages[0].starts_with("JSON malformado na linha 1"),
        "{messages:?}"
    );

    // English is the default, and the fallback for other languages.
    for language in [None, Some("fr-FR")] {
        let mut request = register(&app).json(&with(registration(), "email", None));
        if let Some(language) = language {
            request = request.header("Accept-Language", language);
        }
        let response = request.send().await.unwrap();
        assert_eq!(
            assert_names_field(response, 400, "invalid_request", "email").await,
            ["is required"]
        );
    }
    app.drain_jobs().await;
}
