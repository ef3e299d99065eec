//! The order life cycle over HTTP and signed webhooks (docs/spec.md §4, §7.2):
//! placing, paying, processing, shipping, delivering, canceling, refunding,
//! and every way a request can be wrong.

use std::time::Duration;

use dispatch::{
    jobs::Job, jobs::registry::JobServices, orders::model::order_event,
    orders::reconcile::Reconcile, users::role::Role,
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp, TestUser, intent_event, problem, spawn_app, spawn_app_with, spawn_app_with_workers,
};

struct Shop {
    app: TestApp,
    admin: TestUser,
    buyer: TestUser,
}

async fn shop(app: TestApp) -> Shop {
    let admin = app.create_user_with_role(Role::Admin).await;
    let buyer = app.register_user().await;
    Shop { app, admin, buyer }
}

async fn item(shop: &Shop, price: i64, stock: i64) -> Uuid {
    shop.app
        .create_item(&shop.admin, "Lamp", price, stock)
        .await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap()
}

fn id_of(order: &Value) -> String {
    order["id"].as_str().unwrap().to_owned()
}

fn timeline(order: &Value) -> Vec<(Option<String>, String, String)> {
    order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_str().map(str::to_owned),
                e["to"].as_str().unwrap().to_owned(),
                e["actor"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_order_goes_from_pending_to_delivered_over_http_and_signed_webhooks() {
    // The simulated gateway confirms the payment with a signed webhook to
    // our own endpoint, like Stripe would.
    let shop = shop(spawn_app_with_workers(&[("SIMULATED_PAYMENT_DELAY", "50ms")]).await).await;
    let lamp = item(&shop, 1_250, 10).await;
    let order = shop.app.placed_order(&shop.buyer, &[(lamp, 3)]).await;
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["total"], 3_750);
    assert_eq!(order["currency"], "usd");
    assert_eq!(order["items"][0]["name"], "Lamp");
    assert_eq!(order["items"][0]["unitPrice"], 1_250);
    assert_eq!(order["items"][0]["lineTotal"], 3_750);
    assert!(
        order["payment"]["clientSecret"]
            .as_str()
            .is_some_and(|s| !s.is_empty())
    );
    assert_eq!(shop.app.stock_of(lamp).await, 7);
    let id = id_of(&order);

    shop.app.wait_for_order_status(&id, "PROCESSED").await;
    let shipped = shop
        .app
        .staff_action(
            &shop.admin,
            &id,
            "ship",
            json!({"trackingNumber": "1Z999", "carrier": "UPS"}),
        )
        .await;
    assert_eq!(shipped["status"], "SHIPPED");
    assert_eq!(shipped["trackingNumber"], "1Z999");
    assert!(shipped["shippedAt"].is_string());
    let delivered = shop
        .app
        .staff_action(&shop.admin, &id, "deliver", json!({}))
        .await;
    assert_eq!(delivered["status"], "DELIVERED");
    assert!(delivered["deliveredAt"].is_string());

    let staff_view = shop.app.staff_order(&shop.admin, &id).await;
    let admin = shop.admin.id.to_string();
    let buyer = shop.buyer.id.to_string();
    assert_eq!(
        timeline(&staff_view),
        vec![
            (None, "PENDING".into(), buyer),
            (Some("PENDING".into()), "PAID".into(), "webhook".into()),
            (Some("PAID".into()), "PROCESSED".into(), "job".into()),
            (Some("PROCESSED".into()), "SHIPPED".into(), admin.clone()),
            (Some("SHIPPED".into()), "DELIVERED".into(), admin),
        ]
    );
    assert_eq!(staff_view["payment"]["status"], "succeeded");
    assert!(
        staff_view["payment"].get("clientSecret").is_none(),
        "staff never see the client secret"
    );
    assert_eq!(staff_view["user"]["id"], shop.buyer.id.to_string());
    assert_eq!(
        shop.app.stock_of(lamp).await,
        7,
        "delivered goods stay sold"
    );

    // The owner reads it too; the public catalogue shows the new stock.
    let mine = shop
        .app
        .get(&format!("/api/v1/orders/{id}"))
        .bearer_auth(&shop.buyer.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(mine.status(), 200);
    assert_eq!(mine.json::<Value>().await.unwrap()["status"], "DELIVERED");
    let public: Value = shop
        .app
        .get(&format!("/api/v1/items/{lamp}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(public["stock"], 7);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn a_declined_payment_cancels_the_order_and_restores_its_stock() {
    let shop = shop(spawn_app_with_workers(&[("SIMULATED_PAYMENT_DELAY", "50ms")]).await).await;
    // Totals ending in 02 are declined by the simulated gateway.
    let lamp = item(&shop, 1_002, 5).await;
    let order = shop.app.placed_order(&shop.buyer, &[(lamp, 1)]).await;
    assert_eq!(shop.app.stock_of(lamp).await, 4);
    let id = id_of(&order);
    shop.app.wait_for_order_status(&id, "CANCELED").await;
    assert_eq!(shop.app.stock_of(lamp).await, 5);
    shop.app.wait_for_jobs_idle().await;
    let view = shop.app.staff_order(&shop.admin, &id).await;
    let last = timeline(&view).pop().unwrap();
    assert_eq!(
        last,
        (Some("PENDING".into()), "CANCELED".into(), "webhook".into())
    );
    assert_eq!(view["timeline"][1]["reason"], "payment_failed");
    // Its PaymentIntent is canceled at the provider, so it can never be paid.
    let intent = shop.app.intent_of(&id).await;
    assert_eq!(
        shop.app.simulated().payment_intent(&intent).unwrap().status,
        dispatch::payments::gateway::IntentStatus::Canceled
    );
    shop.app.drain_jobs().await;
}

/// Refund from each allowed status: (status, restock flag, stock comes back).
#[tokio::test]
async fn a_refund_from_each_allowed_status_follows_its_restock_rule() {
    let shop = shop(spawn_app().await).await;
    let cases = [
        ("PAID", false, true),
        ("PROCESSED", false, true),
        ("SHIPPED", false, false),
        ("SHIPPED", true, true),
        ("DELIVERED", false, false),
        ("DELIVERED", true, true),
    ];
    for (status, restock, restored) in cases {
        let lamp = item(&shop, 500, 10).await;
        let id = shop
            .app
            .order_in_status(&shop.admin, &shop.buyer, lamp, status)
            .await;
        assert_eq!(shop.app.stock_of(lamp).await, 9);
        let response = shop
            .app
            .patch(&format!("/api/v1/admin/orders/{id}/refund"))
            .bearer_auth(&shop.admin.access_token)
            .json(&json!({"reason": "customer asked", "restock": restock}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "refund from {status}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], "REFUNDED");
        assert_eq!(body["pendingPaymentAction"], "refund");
        assert_eq!(body["refunds"][0]["status"], "pending");
        let expected = if restored { 10 } else { 9 };
        assert_eq!(
            shop.app.stock_of(lamp).await,
            expected,
            "stock after refund from {status} (restock {restock})"
        );
        // The refund job gives the money back.
        let ctx =
            JobServices::from_state(&shop.app.state).context(Uuid::new_v4(), 1, Uuid::new_v4());
        dispatch::orders::refunds::Refund {
            order_id: id.parse().unwrap(),
        }
        .run(&ctx)
        .await
        .unwrap();
        let view = shop.app.staff_order(&shop.admin, &id).await;
        assert_eq!(view["refunds"][0]["status"], "succeeded", "from {status}");
        assert_eq!(view["payment"]["status"], "refunded");
        assert_eq!(
            view["timeline"].as_array().unwrap().last().unwrap()["actor"],
            shop.admin.id.to_string()
        );
    }
    assert_eq!(shop.app.simulated().refund_count(), 6);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn every_transition_the_life_cycle_lacks_is_a_409_problem() {
    let shop = shop(spawn_app().await).await;
    let lamp = item(&shop, 100, 1_000).await;
    // The staff actions and the statuses from which they are allowed.
    let actions: [(&str, Value, &[&str]); 4] = [
        ("ship", json!({}), &["PROCESSED"]),
        ("deliver", json!({}), &["SHIPPED"]),
        ("cancel", json!({}), &["PENDING", "PAID", "PROCESSED"]),
        (
            "refund",
            json!({}),
            &["PAID", "PROCESSED", "SHIPPED", "DELIVERED"],
        ),
    ];
    for status in [
        "PENDING",
        "PAID",
        "PROCESSED",
        "SHIPPED",
        "DELIVERED",
        "CANCELED",
        "REFUNDED",
    ] {
        for (action, body, allowed) in &actions {
            if allowed.contains(&status) {
                continue;
            }
            let id = shop
                .app
                .order_in_status(&shop.admin, &shop.buyer, lamp, status)
                .await;
            let stock_before = shop.app.stock_of(lamp).await;
            let response = shop
                .app
                .patch(&format!("/api/v1/admin/orders/{id}/{action}"))
                .bearer_auth(&shop.admin.access_token)
                .json(body)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 409, "{action} from {status}");
            let problem = problem(response).await;
            assert_eq!(
                problem["code"], "invalid_transition",
                "{action} from {status}"
            );
            assert!(
                problem["detail"].as_str().unwrap().contains(status),
                "{problem}"
            );
            let view = shop.app.staff_order(&shop.admin, &id).await;
            assert_eq!(view["status"], status, "nothing changed");
            assert_eq!(shop.app.stock_of(lamp).await, stock_before);
        }
        // The generic PATCH cannot set what only the system sets.
        let id = shop
            .app
            .order_in_status(&shop.admin, &shop.buyer, lamp, status)
            .await;
        for target in ["PENDING", "PAID", "PROCESSED"] {
            let response = shop
                .app
                .patch(&format!("/api/v1/admin/orders/{id}"))
                .bearer_auth(&shop.admin.access_token)
                .json(&json!({"status": target}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 409, "{status} → {target}");
            assert_eq!(problem(response).await["code"], "invalid_transition");
        }
    }
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn the_generic_status_patch_performs_the_transition_with_its_effects() {
    let shop = shop(spawn_app().await).await;
    let lamp = item(&shop, 100, 10).await;
    let id = shop
        .app
        .order_in_status(&shop.admin, &shop.buyer, lamp, "PROCESSED")
        .await;
    let response = shop
        .app
        .patch(&format!("/api/v1/admin/orders/{id}"))
        .bearer_auth(&shop.admin.access_token)
        .json(&json!({"status": "SHIPPED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "SHIPPED");
    assert!(body["shippedAt"].is_string());
    let response = shop
        .app
        .patch(&format!("/api/v1/admin/orders/{id}"))
        .bearer_auth(&shop.admin.access_token)
        .json(&json!({"status": "SHIPPED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.status(),
        409,
        "SHIPPED → SHIPPED is not a transition"
    );
    let unknown = shop
        .app
        .patch(&format!("/api/v1/admin/orders/{id}"))
        .bearer_auth(&shop.admin.access_token)
        .json(&json!({"status": "LOST"}))
        .send()
        .await
        .unwrap();
    assert!(matches!(unknown.status().as_u16(), 400 | 422));
    problem(unknown).await;
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn canceling_a_paid_order_restocks_and_refunds_it() {
    let shop = shop(spawn_app_with_workers(&[]).await).await;
    let lamp = item(&shop, 300, 10).await;
    let order = shop.app.placed_order(&shop.buyer, &[(lamp, 2)]).await;
    let id = id_of(&order);
    let intent = shop.app.intent_of(&id).await;
    shop.app.simulated().confirm(&intent).await;
    shop.app.wait_for_order_status(&id, "PROCESSED").await;
    let response = shop
        .app
        .patch(&format!("/api/v1/admin/orders/{id}/cancel"))
        .bearer_auth(&shop.admin.access_token)
        .json(&json!({"reason": "out of paint"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(shop.app.stock_of(lamp).await, 10);
    shop.app.wait_for_jobs_idle().await;
    let view = shop.app.staff_order(&shop.admin, &id).await;
    assert_eq!(view["status"], "CANCELED");
    assert_eq!(view["refunds"][0]["status"], "succeeded");
    assert_eq!(view["refunds"][0]["reason"], "out of paint");
    assert_eq!(view["payment"]["status"], "refunded");
    assert_eq!(shop.app.simulated().refund_count(), 1);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn a_payment_that_lands_on_a_canceled_order_is_refunded_automatically() {
    let shop = shop(spawn_app_with_workers(&[]).await).await;
    let lamp = item(&shop, 400, 3).await;
    let order = shop.app.placed_order(&shop.buyer, &[(lamp, 1)]).await;
    let id = id_of(&order);
    let intent = shop.app.intent_of(&id).await;
    // The customer pays at the provider, but its webhook is late…
    shop.app.simulated().confirm_without_webhook(&intent).await;
    let event = intent_event("payment_intent.succeeded", &intent, &id, 400);
    // …and staff cancel the order meanwhile.
    let canceled = shop
        .app
        .staff_action(&shop.admin, &id, "cancel", json!({}))
        .await;
    assert_eq!(canceled["status"], "CANCELED");
    assert_eq!(shop.app.stock_of(lamp).await, 3);
    let late = shop.app.send_webhook(&event).await;
    assert_eq!(late.status(), 200);
    shop.app.wait_for_jobs_idle().await;
    let view = shop.app.staff_order(&shop.admin, &id).await;
    assert_eq!(
        view["status"], "CANCELED",
        "a late payment never re-opens the order"
    );
    assert_eq!(view["refunds"].as_array().unwrap().len(), 1);
    assert_eq!(view["refunds"][0]["status"], "succeeded");
    assert_eq!(view["payment"]["status"], "refunded");
    assert_eq!(shop.app.stock_of(lamp).await, 3);
    assert_eq!(shop.app.simulated().refund_count(), 1);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn payment_events_in_any_order_and_any_number_of_times_leave_one_outcome() {
    let shop = shop(spawn_app().await).await;
    let lamp = item(&shop, 700, 5).await;
    let id = id_of(&shop.app.placed_order(&shop.buyer, &[(lamp, 1)]).await);
    let intent = shop.app.intent_of(&id).await;
    let succeeded = intent_event("payment_intent.succeeded", &intent, &id, 700);
    for _ in 0..3 {
        let response = shop.app.send_webhook(&succeeded).await;
        assert_eq!(response.status(), 200);
    }
    let duplicate: Value = shop
        .app
        .send_webhook(&succeeded)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(duplicate["duplicate"], true);
    // A stale failure and a cancellation after the success change nothing.
    for kind in ["payment_intent.payment_failed", "payment_intent.canceled"] {
        let response = shop
            .app
            .send_webhook(&intent_event(kind, &intent, &id, 700))
            .await;
        assert_eq!(response.status(), 200);
    }
    let view = shop.app.staff_order(&shop.admin, &id).await;
    assert_eq!(view["status"], "PAID");
    assert_eq!(view["payment"]["status"], "succeeded");
    assert_eq!(shop.app.stock_of(lamp).await, 4);
    let paid_events = order_event::Entity::find()
        .filter(order_event::Column::OrderId.eq(id.parse::<Uuid>().unwrap()))
        .count(shop.app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(paid_events, 2, "created and paid, once each");
    // Unknown types and events about unknown PaymentIntents are ignored.
    let unknown =
        json!({"id": "evt_unknown_type", "type": "customer.created", "data": {"object": {}}});
    assert_eq!(shop.app.send_webhook(&unknown).await.status(), 200);
    let foreign = intent_event(
        "payment_intent.succeeded",
        "pi_not_ours",
        &Uuid::new_v4().to_string(),
        1,
    );
    assert_eq!(shop.app.send_webhook(&foreign).await.status(), 200);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn a_webhook_with_a_bad_or_missing_signature_is_refused_and_stores_nothing() {
    use dispatch::payments::model::payment_event;
    let shop = shop(spawn_app().await).await;
    let lamp = item(&shop, 700, 5).await;
    let id = id_of(&shop.app.placed_order(&shop.buyer, &[(lamp, 1)]).await);
    let intent = shop.app.intent_of(&id).await;
    let body = intent_event("payment_intent.succeeded", &intent, &id, 700).to_string();
    let now = dispatch::db::now().timestamp();
    let signed =
        dispatch::payments::signature::sign(body.as_bytes(), crate::helpers::WEBHOOK_SECRET, now);
    let tampered = body.replace("700", "1");
    let cases: Vec<(Option<String>, String)> = vec![
        (None, body.clone()),
        (Some("garbage".into()), body.clone()),
        (Some(signed.clone()), tampered),
        (
            Some(dispatch::payments::signature::sign(
                body.as_bytes(),
                "whsec_other",
                now,
            )),
            body.clone(),
        ),
        (
            Some(dispatch::payments::signature::sign(
                body.as_bytes(),
                crate::helpers::WEBHOOK_SECRET,
                now - 600,
            )),
            body.clone(),
        ),
    ];
    for (header, payload) in cases {
        let mut request = shop
            .app
            .post("/api/v1/payments/webhook")
            .header("Content-Type", "application/json")
            .body(payload);
        if let Some(header) = &header {
            request = request.header("Stripe-Signature", header);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 400, "{header:?}");
        assert_eq!(problem(response).await["code"], "invalid_signature");
    }
    let stored = payment_event::Entity::find()
        .count(shop.app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(stored, 0);
    let view = shop.app.staff_order(&shop.admin, &id).await;
    assert_eq!(view["status"], "PENDING");
    // A correctly signed but unreadable event is a 400 as well.
    let junk = "not json";
    let header =
        dispatch::payments::signature::sign(junk.as_bytes(), crate::helpers::WEBHOOK_SECRET, now);
    let response = shop
        .app
        .post("/api/v1/payments/webhook")
        .header("Stripe-Signature", header)
        .body(junk)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(problem(response).await["code"], "invalid_event");
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn a_signed_event_with_ids_or_a_type_longer_than_the_providers_formats_is_a_400_on_both_backends()
 {
    use dispatch::payments::model::payment_event;
    let shop = shop(spawn_app().await).await;
    let lamp = item(&shop, 700, 5).await;
    let id = id_of(&shop.app.placed_order(&shop.buyer, &[(lamp, 1)]).await);
    let intent = shop.app.intent_of(&id).await;
    let long = "x".repeat(300);
    let mut long_event_id = intent_event("payment_intent.succeeded", &intent, &id, 700);
    long_event_id["id"] = json!(format!("evt_{long}"));
    let mut long_type = intent_event("payment_intent.succeeded", &intent, &id, 700);
    long_type["type"] = json!(format!("payment_intent.{long}"));
    let mut long_intent_id = intent_event("payment_intent.succeeded", &intent, &id, 700);
    long_intent_id["data"]["object"]["id"] = json!(format!("pi_{long}"));
    let long_refund_id = json!({
        "id": format!("evt_test_{}", Uuid::new_v4().simple()),
        "type": "refund.updated",
        "data": {"object": {
            "id": format!("re_{long}"),
            "status": "succeeded",
            "metadata": {"order_id": id},
        }},
    });
    for (case, event) in [
        ("event id", long_event_id),
        ("type", long_type),
        ("intent id", long_intent_id),
        ("refund id", long_refund_id),
    ] {
        let response = shop.app.send_webhook(&event).await;
        assert_eq!(response.status(), 400, "{case}");
        assert_eq!(problem(response).await["code"], "invalid_event", "{case}");
    }
    let stored = payment_event::Entity::find()
        .count(shop.app.state.db.conn())
        .await
        .unwrap();
    assert_eq!(stored, 0);
    assert_eq!(
        shop.app.staff_order(&shop.admin, &id).await["status"],
        "PENDING"
    );
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn an_unpaid_order_expires_releasing_its_stock_and_canceling_its_payment_intent() {
    let shop = shop(spawn_app_with_workers(&[]).await).await;
    let lamp = item(&shop, 900, 2).await;
    let id = id_of(&shop.app.placed_order(&shop.buyer, &[(lamp, 2)]).await);
    assert_eq!(shop.app.stock_of(lamp).await, 0);
    // The payment timeout passes (on the app's clock).
    shop.app
        .advance_clock(shop.app.state.config.order_payment_timeout + Duration::from_secs(1));
    shop.app.wait_for_order_status(&id, "CANCELED").await;
    assert_eq!(shop.app.stock_of(lamp).await, 2);
    shop.app.wait_for_jobs_idle().await;
    let intent = shop.app.intent_of(&id).await;
    assert_eq!(
        shop.app.simulated().payment_intent(&intent).unwrap().status,
        dispatch::payments::gateway::IntentStatus::Canceled
    );
    let view = shop.app.staff_order(&shop.admin, &id).await;
    let last = view["timeline"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["actor"], "system");
    assert_eq!(last["reason"], "payment_timeout");
    assert_eq!(view["payment"]["status"], "canceled");
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn reconciliation_pays_an_order_whose_webhook_was_lost() {
    let shop = shop(spawn_app_with(&[]).await).await;
    let lamp = item(&shop, 800, 2).await;
    let id = id_of(&shop.app.placed_order(&shop.buyer, &[(lamp, 1)]).await);
    let intent = shop.app.intent_of(&id).await;
    // Paid at the provider; its webhook is lost.
    shop.app.simulated().confirm_without_webhook(&intent).await;
    // Long enough ago for reconciliation to ask the provider (on the app's clock).
    let config = &shop.app.state.config;
    shop.app.advance_clock(
        config
            .payment_reconcile_after
            .max(config.order_recovery_after)
            + Duration::from_secs(1),
    );
    let ctx = JobServices::from_state(&shop.app.state).context(Uuid::new_v4(), 1, Uuid::new_v4());
    Reconcile::default().run(&ctx).await.unwrap();
    let view = shop.app.staff_order(&shop.admin, &id).await;
    assert_eq!(view["status"], "PAID");
    assert_eq!(view["timeline"][1]["actor"], "job");
    shop.app.drain_jobs().await;
}

/// Stock taken by a checkout and given back by a cancel shows in the cached
/// public catalogue at once: the invalidation runs from the commit itself.
#[tokio::test]
async fn the_public_catalogue_shows_stock_taken_and_given_back_at_once() {
    let shop = shop(spawn_app().await).await;
    let lamp = item(&shop, 1_000, 5).await;
    let public_stock = || async {
        let response = shop
            .app
            .get(&format!("/api/v1/items/{lamp}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json::<Value>().await.unwrap()["stock"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(public_stock().await, 5); // now cached
    let order = shop.app.placed_order(&shop.buyer, &[(lamp, 2)]).await;
    assert_eq!(public_stock().await, 3);
    shop.app
        .staff_action(&shop.admin, &id_of(&order), "cancel", json!({}))
        .await;
    assert_eq!(public_stock().await, 5);
    shop.app.drain_jobs().await;
}
