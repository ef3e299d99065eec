//! The catalogue: public and staff views, filters, admin management, soft
//! deletion and cache invalidation as a client sees it.

use crate::helpers::{TestApp, TestUser, problem, spawn_app};
use dispatch::users::role::Role;
use serde_json::{Value, json};
use uuid::Uuid;

/// `path?name=value&…` with the values percent-encoded.
fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish();
    format!("{path}?{query}")
}

async fn json_of(response: reqwest::Response, expected: u16) -> Value {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(status, expected, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn public_item(app: &TestApp, id: &str) -> reqwest::Response {
    app.get(&format!("/api/v1/items/{id}"))
        .send()
        .await
        .unwrap()
}

async fn public_list(app: &TestApp, pairs: &[(&str, &str)]) -> Value {
    let response = app
        .get(&with_query("/api/v1/items", pairs))
        .send()
        .await
        .unwrap();
    json_of(response, 200).await
}

async fn admin_item(app: &TestApp, admin: &TestUser, id: &str) -> reqwest::Response {
    app.get(&format!("/api/v1/admin/items/{id}"))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap()
}

async fn admin_list(app: &TestApp, admin: &TestUser, pairs: &[(&str, &str)]) -> Value {
    let response = app
        .get(&with_query("/api/v1/admin/items", pairs))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap();
    json_of(response, 200).await
}

async fn create(app: &TestApp, admin: &TestUser, body: Value) -> reqwest::Response {
    app.post("/api/v1/admin/items")
        .bearer_auth(&admin.access_token)
        .header("Idempotency-Key", Uuid::new_v4().to_string())
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn patch(app: &TestApp, admin: &TestUser, id: &str, body: Value) -> Value {
    let response = app
        .patch(&format!("/api/v1/admin/items/{id}"))
        .bearer_auth(&admin.access_token)
        .json(&body)
        .send()
        .await
        .unwrap();
    json_of(response, 200).await
}

async fn delete(app: &TestApp, admin: &TestUser, id: &str) -> reqwest::Response {
    app.delete(&format!("/api/v1/admin/items/{id}"))
        .bearer_auth(&admin.access_token)
        .send()
        .await
        .unwrap()
}

fn names(page: &Value) -> Vec<String> {
    let mut names: Vec<String> = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    names
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn public_views_hide_the_payment_price_id_and_admin_views_show_it() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let created = json_of(
        create(
            &app,
            &admin,
            json!({"name": "Mug", "description": "A mug", "price": 1299, "stock": 4, "pricePaymentId": "price_123"}),
        )
        .await,
        201,
    )
    .await;
    assert_eq!(created["pricePaymentId"], "price_123");
    assert_eq!(created["currency"], "usd");
    let id = created["id"].as_str().unwrap();

    let public = json_of(public_item(&app, id).await, 200).await;
    assert_eq!(public["name"], "Mug");
    assert_eq!(public["price"], 1299);
    assert_eq!(public["stock"], 4);
    assert!(public.get("pricePaymentId").is_none(), "{public}");
    assert!(public.get("deletedAt").is_none(), "{public}");

    let page = public_list(&app, &[]).await;
    let listed = &page["items"][0];
    assert_eq!(listed["id"], id);
    assert!(listed.get("pricePaymentId").is_none(), "{listed}");
    assert!(listed.get("deletedAt").is_none(), "{listed}");

    let staff = json_of(admin_item(&app, &admin, id).await, 200).await;
    assert_eq!(staff["pricePaymentId"], "price_123");
    assert!(staff["deletedAt"].is_null());
    let staff_page = admin_list(&app, &admin, &[]).await;
    assert_eq!(staff_page["items"][0]["pricePaymentId"], "price_123");
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_name_filter_is_a_case_insensitive_substring_search() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    for name in ["Blue Mug", "mug rack", "Teapot", "SMUGGLER'S MAP"] {
        app.create_item(&admin, name, 100, 1).await;
    }
    let page = public_list(&app, &[("name", "MuG")]).await;
    assert_eq!(names(&page), ["Blue Mug", "SMUGGLER'S MAP", "mug rack"]);
    let page = public_list(&app, &[("name", "teapot")]).await;
    assert_eq!(names(&page), ["Teapot"]);
    let page = public_list(&app, &[("name", "nothing like it")]).await;
    assert_eq!(page["items"], json!([]));
    assert_eq!(page["hasMore"], false);
    let staff = admin_list(&app, &admin, &[("name", "RACK")]).await;
    assert_eq!(names(&staff), ["mug rack"]);
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_name_filter_folds_accented_capitals_on_every_backend() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    for name in ["Água de coco", "ÉCLAIR DE CAFÉ", "Pão de queijo"] {
        app.create_item(&admin, name, 100, 1).await;
    }
    let page = public_list(&app, &[("name", "água")]).await;
    assert_eq!(names(&page), ["Água de coco"]);
    let page = public_list(&app, &[("name", "Éclair de café")]).await;
    assert_eq!(names(&page), ["ÉCLAIR DE CAFÉ"]);
    let page = public_list(&app, &[("name", "PÃO")]).await;
    assert_eq!(names(&page), ["Pão de queijo"]);
    app.drain_jobs().await;
}

#[tokio::test]
async fn percent_and_underscore_in_the_name_filter_are_taken_literally() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    for name in [
        "100% cotton",
        "100 cotton",
        "snake_case",
        "snakeXcase",
        r"back\slash",
        "backslash",
    ] {
        app.create_item(&admin, name, 100, 1).await;
    }
    assert_eq!(
        names(&public_list(&app, &[("name", "%")]).await),
        ["100% cotton"]
    );
    assert_eq!(
        names(&public_list(&app, &[("name", "0% c")]).await),
        ["100% cotton"]
    );
    assert_eq!(
        names(&public_list(&app, &[("name", "_")]).await),
        ["snake_case"]
    );
    assert_eq!(
        names(&public_list(&app, &[("name", "E_C")]).await),
        ["snake_case"]
    );
    assert_eq!(
        names(&public_list(&app, &[("name", r"\")]).await),
        [r"back\slash"]
    );
    assert_eq!(
        names(&admin_list(&app, &admin, &[("name", "%")]).await),
        ["100% cotton"]
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_in_stock_filter_separates_available_and_sold_out_items() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    app.create_item(&admin, "Available", 100, 3).await;
    app.create_item(&admin, "Sold out", 100, 0).await;
    assert_eq!(
        names(&public_list(&app, &[("inStock", "true")]).await),
        ["Available"]
    );
    assert_eq!(
        names(&public_list(&app, &[("inStock", "false")]).await),
        ["Sold out"]
    );
    assert_eq!(
        names(&public_list(&app, &[]).await),
        ["Available", "Sold out"]
    );
    assert_eq!(
        names(&public_list(&app, &[("inStock", "true"), ("name", "sold")]).await),
        Vec::<String>::new()
    );
    assert_eq!(
        names(&admin_list(&app, &admin, &[("inStock", "false")]).await),
        ["Sold out"]
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_admin_creates_reads_changes_and_soft_deletes_an_item() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let created = json_of(
        create(
            &app,
            &admin,
            json!({"name": "  Lamp  ", "price": 4500, "currency": "USD", "stock": 2}),
        )
        .await,
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_owned();
    assert_eq!(created["name"], "Lamp", "names are trimmed");
    assert_eq!(created["description"], "");
    assert_eq!(created["currency"], "usd");
    assert!(created["pricePaymentId"].is_null());
    assert!(created["deletedAt"].is_null());

    let read = json_of(admin_item(&app, &admin, &id).await, 200).await;
    assert_eq!(read, created);

    let changed = patch(
        &app,
        &admin,
        &id,
        json!({"name": "Desk lamp", "description": "Bright", "price": 5000, "stock": 7, "pricePaymentId": "price_lamp"}),
    )
    .await;
    assert_eq!(changed["name"], "Desk lamp");
    assert_eq!(changed["description"], "Bright");
    assert_eq!(changed["price"], 5000);
    assert_eq!(changed["stock"], 7);
    assert_eq!(changed["pricePaymentId"], "price_lamp");
    assert_eq!(changed["createdAt"], created["createdAt"]);
    let cleared = patch(&app, &admin, &id, json!({"pricePaymentId": null})).await;
    assert!(cleared["pricePaymentId"].is_null());
    assert_eq!(cleared["name"], "Desk lamp", "absent fields are left alone");

    let deleted = delete(&app, &admin, &id).await;
    assert_eq!(deleted.status(), 204);

    let response = public_item(&app, &id).await;
    assert_eq!(response.status(), 404);
    assert_eq!(problem(response).await["code"], "not_found");
    assert!(!ids(&public_list(&app, &[]).await).contains(&id));
    assert!(!ids(&admin_list(&app, &admin, &[]).await).contains(&id));

    let staff = json_of(admin_item(&app, &admin, &id).await, 200).await;
    assert!(staff["deletedAt"].is_string(), "{staff}");
    assert_eq!(staff["name"], "Desk lamp");
    let with_deleted = admin_list(&app, &admin, &[("includeDeleted", "true")]).await;
    let listed = with_deleted["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id.as_str())
        .unwrap();
    assert!(listed["deletedAt"].is_string());

    let again = delete(&app, &admin, &id).await;
    assert_eq!(again.status(), 404);
    problem(again).await;
    let response = app
        .patch(&format!("/api/v1/admin/items/{id}"))
        .bearer_auth(&admin.access_token)
        .json(&json!({"price": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404, "a deleted item cannot be changed");
    problem(response).await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn creating_an_item_needs_an_idempotency_key() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let response = app
        .post("/api/v1/admin/items")
        .bearer_auth(&admin.access_token)
        .json(&json!({"name": "Keyless", "price": 1, "stock": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body = problem(response).await;
    assert_eq!(body["code"], "idempotency_key_required");
    assert!(body["errors"]["Idempotency-Key"].is_array(), "{body}");
    assert_eq!(admin_list(&app, &admin, &[]).await["items"], json!([]));
    app.drain_jobs().await;
}

#[tokio::test]
async fn creating_an_item_in_another_currency_names_the_currency() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let response = create(
        &app,
        &admin,
        json!({"name": "Euro mug", "price": 100, "currency": "eur", "stock": 1}),
    )
    .await;
    assert_eq!(response.status(), 422);
    let body = problem(response).await;
    assert_eq!(body["code"], "validation_failed");
    let messages = body["errors"]["currency"].as_array().unwrap();
    assert!(messages[0].as_str().unwrap().contains("USD"), "{body}");

    let response = create(
        &app,
        &admin,
        json!({"name": "Odd mug", "price": 100, "currency": "dollars", "stock": 1}),
    )
    .await;
    assert_eq!(response.status(), 422);
    assert!(problem(response).await["errors"]["currency"].is_array());
    assert_eq!(admin_list(&app, &admin, &[]).await["items"], json!([]));
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_price_change_shows_at_once_on_an_item_read_before() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let id = app.create_item(&admin, "Cached", 1000, 5).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        assert_eq!(
            json_of(public_item(&app, &id).await, 200).await["price"],
            1000
        );
        assert_eq!(
            json_of(admin_item(&app, &admin, &id).await, 200).await["price"],
            1000
        );
    }

    patch(
        &app,
        &admin,
        &id,
        json!({"price": 1500, "pricePaymentId": "price_new"}),
    )
    .await;

    assert_eq!(
        json_of(public_item(&app, &id).await, 200).await["price"],
        1500
    );
    let staff = json_of(admin_item(&app, &admin, &id).await, 200).await;
    assert_eq!(staff["price"], 1500);
    assert_eq!(staff["pricePaymentId"], "price_new");
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_change_shows_at_once_on_a_list_page_read_before() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let id = app.create_item(&admin, "Listed", 1000, 5).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        assert_eq!(public_list(&app, &[]).await["items"][0]["price"], 1000);
        assert_eq!(
            public_list(&app, &[("inStock", "true")]).await["items"][0]["id"],
            id.as_str()
        );
        assert_eq!(
            admin_list(&app, &admin, &[]).await["items"][0]["price"],
            1000
        );
    }

    patch(&app, &admin, &id, json!({"price": 2000, "stock": 0})).await;

    let page = public_list(&app, &[]).await;
    assert_eq!(page["items"][0]["price"], 2000);
    assert_eq!(page["items"][0]["stock"], 0);
    assert_eq!(
        public_list(&app, &[("inStock", "true")]).await["items"],
        json!([])
    );
    assert_eq!(
        admin_list(&app, &admin, &[]).await["items"][0]["price"],
        2000
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_new_item_appears_at_once_on_a_list_page_read_before() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    app.create_item(&admin, "First", 100, 1).await;
    for _ in 0..2 {
        assert_eq!(names(&public_list(&app, &[]).await), ["First"]);
        assert_eq!(
            names(&public_list(&app, &[("name", "e")]).await),
            Vec::<String>::new()
        );
        assert_eq!(names(&admin_list(&app, &admin, &[]).await), ["First"]);
    }

    let second = app.create_item(&admin, "Second", 200, 1).await;

    let page = public_list(&app, &[]).await;
    assert_eq!(page["items"][0]["id"], second["id"], "newest first");
    assert_eq!(names(&page), ["First", "Second"]);
    assert_eq!(
        names(&public_list(&app, &[("name", "e")]).await),
        ["Second"]
    );
    assert_eq!(
        names(&admin_list(&app, &admin, &[]).await),
        ["First", "Second"]
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_deleted_item_disappears_at_once_from_reads_made_before() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let kept = app.create_item(&admin, "Kept", 100, 1).await;
    let id = app.create_item(&admin, "Gone", 100, 1).await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..2 {
        assert_eq!(public_item(&app, &id).await.status(), 200);
        assert_eq!(names(&public_list(&app, &[]).await), ["Gone", "Kept"]);
        assert_eq!(
            names(&admin_list(&app, &admin, &[]).await),
            ["Gone", "Kept"]
        );
        assert!(json_of(admin_item(&app, &admin, &id).await, 200).await["deletedAt"].is_null());
    }

    assert_eq!(delete(&app, &admin, &id).await.status(), 204);

    assert_eq!(public_item(&app, &id).await.status(), 404);
    assert_eq!(
        ids(&public_list(&app, &[]).await),
        [kept["id"].as_str().unwrap()]
    );
    assert_eq!(names(&admin_list(&app, &admin, &[]).await), ["Kept"]);
    assert!(json_of(admin_item(&app, &admin, &id).await, 200).await["deletedAt"].is_string());
    app.drain_jobs().await;
}

#[tokio::test]
async fn an_unknown_item_is_a_404_problem_for_everyone() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let id = Uuid::new_v4().to_string();
    let response = public_item(&app, &id).await;
    assert_eq!(response.status(), 404);
    assert_eq!(problem(response).await["code"], "not_found");
    let response = admin_item(&app, &admin, &id).await;
    assert_eq!(response.status(), 404);
    assert_eq!(problem(response).await["code"], "not_found");
    let response = delete(&app, &admin, &id).await;
    assert_eq!(response.status(), 404);
    problem(response).await;
    app.drain_jobs().await;
}
