//! Bad orders never cost data: every malformed, unknown, short or foreign
//! request gets a documented problem and writes nothing. And each caller
//! sees the orders its role allows.

use dispatch::users::role::Role;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{TestApp, TestUser, problem, spawn_app};

struct Shop {
    app: TestApp,
    admin: TestUser,
    buyer: TestUser,
    lamp: Uuid,
}

async fn shop() -> Shop {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let buyer = app.register_user().await;
    let lamp = app.create_item(&admin, "Lamp", 1_000, 5).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    Shop {
        app,
        admin,
        buyer,
        lamp,
    }
}

async fn order_count(app: &TestApp) -> u64 {
    use sea_orm::{EntityTrait, PaginatorTrait};
    dispatch::orders::model::order::Entity::find()
        .count(app.state.db.conn())
        .await
        .unwrap()
}

async fn post_raw(shop: &Shop, key: Option<&str>, body: Value) -> reqwest::Response {
    let mut request = shop
        .app
        .post("/api/v1/orders")
        .bearer_auth(&shop.buyer.access_token)
        .json(&body);
    if let Some(key) = key {
        request = request.header("Idempotency-Key", key);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn malformed_orders_are_refused_naming_the_field_and_write_nothing() {
    let shop = shop().await;
    let lamp = shop.lamp;
    let many: Vec<Value> = (0..101)
        .map(|_| json!({"itemId": Uuid::new_v4(), "quantity": 1}))
        .collect();
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({"items": []}), 422, "items"),
        (json!({"items": many}), 422, "items"),
        (
            json!({"items": [{"itemId": lamp, "quantity": 0}]}),
            422,
            "items[0].quantity",
        ),
        (
            json!({"items": [{"itemId": lamp, "quantity": 10_001}]}),
            422,
            "items[0].quantity",
        ),
        (
            json!({"items": [{"itemId": lamp, "quantity": 1.5}]}),
            400,
            "items[0].quantity",
        ),
        (
            json!({"items": [{"itemId": lamp, "quantity": "2"}]}),
            400,
            "items[0].quantity",
        ),
        (
            json!({"items": [{"itemId": "not-a-uuid", "quantity": 1}]}),
            400,
            "items[0].itemId",
        ),
        (
            json!({"items": [{"itemId": lamp, "quantity": 1}, {"itemId": lamp, "quantity": 2}]}),
            422,
            "items",
        ),
        (
            json!({"items": [{"itemId": lamp, "quantity": 1, "price": 1}]}),
            400,
            "items[0].price",
        ),
        (json!({"lines": []}), 400, "lines"),
    ];
    for (body, status, field) in cases {
        let response = post_raw(&shop, Some(&Uuid::new_v4().to_string()), body.clone()).await;
        assert_eq!(response.status(), status, "{body}");
        let problem = problem(response).await;
        assert!(
            problem["errors"].get(field).is_some(),
            "{body}: expected an error on {field}, got {problem}"
        );
    }
    let missing_key = post_raw(
        &shop,
        None,
        json!({"items": [{"itemId": lamp, "quantity": 1}]}),
    )
    .await;
    assert_eq!(missing_key.status(), 400);
    assert_eq!(
        problem(missing_key).await["code"],
        "idempotency_key_required"
    );
    assert_eq!(order_count(&shop.app).await, 0);
    assert_eq!(shop.app.stock_of(lamp).await, 5);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn an_order_for_an_unknown_or_deleted_item_is_404_and_holds_no_stock() {
    let shop = shop().await;
    let ghost = Uuid::new_v4();
    let response = shop
        .app
        .place_order(&shop.buyer, &[(shop.lamp, 2), (ghost, 1)], "ghost")
        .await;
    assert_eq!(response.status(), 404);
    let body = problem(response).await;
    assert_eq!(body["code"], "item_not_found");
    assert!(body["errors"].get("items[1].itemId").is_some(), "{body}");
    assert_eq!(
        shop.app.stock_of(shop.lamp).await,
        5,
        "the lamp taken first was given back"
    );

    let deleted = shop
        .app
        .delete(&format!("/api/v1/admin/items/{}", shop.lamp))
        .bearer_auth(&shop.admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    let response = shop
        .app
        .place_order(&shop.buyer, &[(shop.lamp, 1)], "deleted")
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(order_count(&shop.app).await, 0);
    // A failed attempt frees its key: the same key may be used again.
    let retry = shop
        .app
        .place_order(&shop.buyer, &[(shop.lamp, 1)], "ghost")
        .await;
    assert_eq!(retry.status(), 404);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn an_order_beyond_the_stock_is_409_naming_the_item_in_the_callers_language() {
    let shop = shop().await;
    let response = shop
        .app
        .place_order(&shop.buyer, &[(shop.lamp, 6)], "too-many")
        .await;
    assert_eq!(response.status(), 409);
    let body = problem(response).await;
    assert_eq!(body["code"], "insufficient_stock");
    assert!(body["detail"].as_str().unwrap().contains("Lamp"), "{body}");
    assert_eq!(body["errors"]["items[0].quantity"][0], "only 5 left");
    let response = shop
        .app
        .post("/api/v1/orders")
        .bearer_auth(&shop.buyer.access_token)
        .header("Idempotency-Key", "too-many-pt")
        .header("Accept-Language", "pt-BR")
        .json(&json!({"items": [{"itemId": shop.lamp, "quantity": 6}]}))
        .send()
        .await
        .unwrap();
    let body = problem(response).await;
    assert_eq!(body["detail"], "Não há estoque suficiente de Lamp.");
    assert_eq!(body["errors"]["items[0].quantity"][0], "restam apenas 5");
    assert_eq!(order_count(&shop.app).await, 0);
    assert_eq!(shop.app.stock_of(shop.lamp).await, 5);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn an_order_outside_the_providers_charge_limits_is_422_before_any_provider_call() {
    let shop = shop().await;
    let item = |name: &'static str, price: i64| {
        let app = &shop.app;
        let admin = &shop.admin;
        async move {
            app.create_item(admin, name, price, 5).await["id"]
                .as_str()
                .unwrap()
                .parse::<Uuid>()
                .unwrap()
        }
    };
    // A free item is allowed in the catalogue (a gift beside paid items),
    // but an order of nothing else is below Stripe's 50-cent minimum.
    let gift = item("Gift", 0).await;
    let sticker = item("Sticker", 49).await;
    let piano = item("Piano", 60_000_000).await;
    for (name, lines, issue) in [
        ("free", vec![(gift, 1)], "below the smallest charge, 50"),
        (
            "49-cents",
            vec![(sticker, 1)],
            "below the smallest charge, 50",
        ),
        (
            "1.2-million",
            vec![(piano, 2)],
            "above the largest charge, 99999999",
        ),
    ] {
        let response = shop.app.place_order(&shop.buyer, &lines, name).await;
        assert_eq!(response.status(), 422, "{name}");
        let body = problem(response).await;
        assert_eq!(body["code"], "order_total_out_of_range", "{name}");
        let detail = body["detail"].as_str().unwrap();
        assert!(
            detail.contains("50") && detail.contains("99999999"),
            "{detail}"
        );
        let field = body["errors"]["items"][0].as_str().unwrap();
        assert!(field.contains(issue), "{name}: {field}");
    }
    assert_eq!(order_count(&shop.app).await, 0);
    assert_eq!(
        shop.app.simulated().payment_intent_count(),
        0,
        "no provider call"
    );
    for id in [gift, sticker, piano] {
        assert_eq!(shop.app.stock_of(id).await, 5, "no stock held");
    }
    // The same key is free again: with a paid item beside it, the gift ships.
    let response = shop
        .app
        .place_order(
            &shop.buyer,
            &[(gift, 1), (sticker, 1), (shop.lamp, 1)],
            "free",
        )
        .await;
    assert_eq!(response.status(), 201);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn an_order_refused_for_stock_holds_its_key_for_nothing_and_may_be_retried_with_it() {
    // A new key is claimed inside the checkout's transaction: when the
    // checkout is refused, the claim goes with it and the same key places
    // the order once the stock is there.
    let shop = shop().await;
    let refused = shop
        .app
        .place_order(&shop.buyer, &[(shop.lamp, 6)], "retry-after-restock")
        .await;
    assert_eq!(refused.status(), 409);
    assert_eq!(problem(refused).await["code"], "insufficient_stock");
    let restocked = shop
        .app
        .patch(&format!("/api/v1/admin/items/{}", shop.lamp))
        .bearer_auth(&shop.admin.access_token)
        .json(&json!({"stock": 6}))
        .send()
        .await
        .unwrap();
    assert_eq!(restocked.status(), 200);
    let placed = shop
        .app
        .place_order(&shop.buyer, &[(shop.lamp, 6)], "retry-after-restock")
        .await;
    assert_eq!(placed.status(), 201);
    assert!(!placed.headers().contains_key("idempotent-replayed"));
    assert_eq!(order_count(&shop.app).await, 1);
    assert_eq!(shop.app.stock_of(shop.lamp).await, 0);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn the_same_key_replays_the_order_and_another_body_is_refused() {
    let shop = shop().await;
    let first = shop
        .app
        .place_order(&shop.buyer, &[(shop.lamp, 1)], "k1")
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.unwrap();
    let again = shop
        .app
        .place_order(&shop.buyer, &[(shop.lamp, 1)], "k1")
        .await;
    assert_eq!(again.status(), 201);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["id"], first["id"]);
    let other = shop
        .app
        .place_order(&shop.buyer, &[(shop.lamp, 2)], "k1")
        .await;
    assert_eq!(other.status(), 422);
    assert_eq!(problem(other).await["code"], "idempotency_key_reused");
    assert_eq!(order_count(&shop.app).await, 1);
    assert_eq!(shop.app.stock_of(shop.lamp).await, 4);
    assert_eq!(shop.app.simulated().payment_intent_count(), 1);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn prices_are_snapshotted_when_ordered() {
    let shop = shop().await;
    let order = shop.app.placed_order(&shop.buyer, &[(shop.lamp, 2)]).await;
    let changed = shop
        .app
        .patch(&format!("/api/v1/admin/items/{}", shop.lamp))
        .bearer_auth(&shop.admin.access_token)
        .json(&json!({"name": "Lamp v2", "price": 9_999}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    let id = order["id"].as_str().unwrap();
    let view: Value = shop
        .app
        .get(&format!("/api/v1/orders/{id}"))
        .bearer_auth(&shop.buyer.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(view["items"][0]["name"], "Lamp");
    assert_eq!(view["items"][0]["unitPrice"], 1_000);
    assert_eq!(view["total"], 2_000);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn other_users_orders_are_404_and_lists_show_only_ones_own() {
    let shop = shop().await;
    let order = shop.app.placed_order(&shop.buyer, &[(shop.lamp, 1)]).await;
    let id = order["id"].as_str().unwrap();
    let stranger = shop.app.register_user().await;
    let response = shop
        .app
        .get(&format!("/api/v1/orders/{id}"))
        .bearer_auth(&stranger.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(problem(response).await["code"], "not_found");
    let theirs: Value = shop
        .app
        .get("/api/v1/orders/me")
        .bearer_auth(&stranger.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(theirs["items"].as_array().unwrap().len(), 0);
    let mine: Value = shop
        .app
        .get("/api/v1/orders/me?status=PENDING")
        .bearer_auth(&shop.buyer.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(mine["items"][0]["id"], id);
    assert!(mine["items"][0]["payment"]["clientSecret"].is_string());
    let none: Value = shop
        .app
        .get("/api/v1/orders/me?status=PAID")
        .bearer_auth(&shop.buyer.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(none["items"].as_array().unwrap().len(), 0);
    for bad in [
        "status=LOST",
        "from=yesterday",
        "from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z",
        "cursor=%%%",
    ] {
        let response = shop
            .app
            .get(&format!("/api/v1/orders/me?{bad}"))
            .bearer_auth(&shop.buyer.access_token)
            .send()
            .await
            .unwrap();
        assert!(matches!(response.status().as_u16(), 400 | 422), "{bad}");
        problem(response).await;
    }
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn order_lists_take_the_earlier_apis_date_names_and_refuse_unknown_parameters() {
    let shop = shop().await;
    shop.app
        .place_order(&shop.buyer, &[(shop.lamp, 1)], "dated")
        .await;
    let mine = |query: &'static str| {
        let request = shop
            .app
            .get(&format!("/api/v1/orders/me?{query}"))
            .bearer_auth(&shop.buyer.access_token);
        async move { request.send().await.unwrap() }
    };
    let count = |page: Value| page["items"].as_array().unwrap().len();
    let future = mine("startDate=2999-01-01T00:00:00Z").await;
    assert_eq!(future.status(), 200);
    assert_eq!(count(future.json().await.unwrap()), 0, "startDate filters");
    let past = mine("endDate=2000-01-01T00:00:00Z").await;
    assert_eq!(count(past.json().await.unwrap()), 0, "endDate filters");
    let all = mine("startDate=2000-01-01T00:00:00Z&endDate=2999-01-01T00:00:00Z&lang=pt-BR").await;
    assert_eq!(all.status(), 200, "lang is known everywhere");
    assert_eq!(count(all.json().await.unwrap()), 1);

    let unknown = mine("startdate=2999-01-01T00:00:00Z").await;
    assert_eq!(unknown.status(), 400);
    let body = problem(unknown).await;
    assert_eq!(body["code"], "invalid_request");
    assert_eq!(
        body["errors"]["startdate"][0],
        "is not a known query parameter of this route"
    );
    let staff = shop
        .app
        .get("/api/v1/admin/orders?endDate=2000-01-01T00:00:00Z")
        .bearer_auth(&shop.admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(staff.status(), 200);
    assert_eq!(count(staff.json().await.unwrap()), 0);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn each_staff_role_lists_and_reads_its_part_of_the_life_cycle() {
    let shop = shop().await;
    let stock = shop.app.create_item(&shop.admin, "Stock", 100, 100).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let mut by_status = Vec::new();
    for status in [
        "PENDING",
        "PAID",
        "PROCESSED",
        "SHIPPED",
        "DELIVERED",
        "CANCELED",
        "REFUNDED",
    ] {
        let id = shop
            .app
            .order_in_status(&shop.admin, &shop.buyer, stock, status)
            .await;
        by_status.push((status, id));
    }
    let visible: [(Role, &[&str]); 4] = [
        (
            Role::Financial,
            &[
                "PENDING",
                "PAID",
                "PROCESSED",
                "SHIPPED",
                "DELIVERED",
                "CANCELED",
                "REFUNDED",
            ],
        ),
        (Role::Shipper, &["PROCESSED", "SHIPPED", "DELIVERED"]),
        (Role::Delivery, &["SHIPPED", "DELIVERED"]),
        (
            Role::Admin,
            &[
                "PENDING",
                "PAID",
                "PROCESSED",
                "SHIPPED",
                "DELIVERED",
                "CANCELED",
                "REFUNDED",
            ],
        ),
    ];
    for (role, statuses) in visible {
        let staff = shop.app.create_user_with_role(role).await;
        let page: Value = shop
            .app
            .get("/api/v1/admin/orders?limit=100")
            .bearer_auth(&staff.access_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut listed: Vec<String> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["status"].as_str().unwrap().to_owned())
            .collect();
        listed.sort();
        let mut expected: Vec<String> = statuses.iter().map(|s| (*s).to_owned()).collect();
        expected.sort();
        assert_eq!(listed, expected, "{role:?}");
        for (status, id) in &by_status {
            let response = shop
                .app
                .get(&format!("/api/v1/admin/orders/{id}"))
                .bearer_auth(&staff.access_token)
                .send()
                .await
                .unwrap();
            let expected = if statuses.contains(status) { 200 } else { 404 };
            assert_eq!(
                response.status(),
                expected,
                "{role:?} reading a {status} order"
            );
        }
    }
    // Filters: by user and by status.
    let filtered: Value = shop
        .app
        .get(&format!(
            "/api/v1/admin/orders?userId={}&status=SHIPPED",
            shop.buyer.id
        ))
        .bearer_auth(&shop.admin.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(filtered["items"].as_array().unwrap().len(), 1);
    assert_eq!(filtered["items"][0]["userId"], shop.buyer.id.to_string());
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn deleting_an_order_is_limited_to_final_or_unpaid_ones() {
    let shop = shop().await;
    let pending = shop.app.placed_order(&shop.buyer, &[(shop.lamp, 2)]).await;
    let pending_id = pending["id"].as_str().unwrap();
    assert_eq!(shop.app.stock_of(shop.lamp).await, 3);
    let response = shop
        .app
        .delete(&format!("/api/v1/admin/orders/{pending_id}"))
        .bearer_auth(&shop.admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(
        shop.app.stock_of(shop.lamp).await,
        5,
        "a deleted PENDING order releases its stock"
    );
    let gone = shop
        .app
        .get(&format!("/api/v1/admin/orders/{pending_id}"))
        .bearer_auth(&shop.admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);

    let paid = shop
        .app
        .order_in_status(&shop.admin, &shop.buyer, shop.lamp, "PAID")
        .await;
    let response = shop
        .app
        .delete(&format!("/api/v1/admin/orders/{paid}"))
        .bearer_auth(&shop.admin.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(problem(response).await["code"], "order_not_deletable");
    let still = shop.app.staff_order(&shop.admin, &paid).await;
    assert_eq!(still["status"], "PAID");
    shop.app.drain_jobs().await;
}
