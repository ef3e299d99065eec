//! Orders under real concurrency (docs/spec.md §4, §6.2, §7.2, §7.3): many requests at
//! once against one item, one event, one order or one idempotency key. Each
//! test asserts the invariant that must hold whatever the interleaving (no
//! oversell, one transition, one charge, one refund), never a timing.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use dispatch::{
    catalog::item,
    jobs::model::job,
    notifications::notification,
    orders::{
        model::{order, order_event, order_line},
        status::OrderStatus,
    },
    payments::{
        gateway::IntentStatus,
        model::{
            payment::{self, PaymentStatus},
            payment_event,
            refund::{self, RefundStatus},
        },
    },
    users::role::Role,
};
use futures::future::join_all;
use reqwest::Response;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use tokio::sync::Barrier;
use uuid::Uuid;

use crate::helpers::{
    TestApp, TestUser, eventually, intent_event, problem, spawn_app, spawn_app_with_workers,
};

/// Long enough for a loaded CI machine, short enough to fail clearly.
const SETTLE: Duration = Duration::from_secs(30);

fn uuid_of(value: &Value) -> Uuid {
    value["id"].as_str().unwrap().parse().unwrap()
}

async fn new_item(app: &TestApp, admin: &TestUser, price: i64, stock: i64) -> Uuid {
    uuid_of(&app.create_item(admin, "Contended lamp", price, stock).await)
}

/// A response's status and, for a problem, its `code`.
async fn status_and_code(response: Response) -> (u16, Option<String>) {
    let status = response.status().as_u16();
    if status < 400 {
        return (status, None);
    }
    let body = problem(response).await;
    (status, body["code"].as_str().map(str::to_owned))
}

async fn order_row(app: &TestApp, id: Uuid) -> order::Model {
    order::Entity::find_by_id(id)
        .one(app.state.db.conn())
        .await
        .unwrap()
        .unwrap()
}

async fn payment_row(app: &TestApp, order_id: Uuid) -> payment::Model {
    dispatch::payments::queries::payment_of_order(app.state.db.conn(), order_id)
        .await
        .unwrap()
        .unwrap()
}

async fn refund_rows(app: &TestApp, order_id: Uuid) -> Vec<refund::Model> {
    refund::Entity::find()
        .filter(refund::Column::OrderId.eq(order_id))
        .all(app.state.db.conn())
        .await
        .unwrap()
}

async fn orders_count(app: &TestApp) -> u64 {
    order::Entity::find()
        .count(app.state.db.conn())
        .await
        .unwrap()
}

/// Jobs of `kind` whose payload has `orderId` = `order_id` (or, for
/// notifications, `data.orderId`).
async fn jobs_for_order(app: &TestApp, kind: &str, order_id: Uuid) -> Vec<job::Model> {
    let id = order_id.to_string();
    job::Entity::find()
        .filter(job::Column::Kind.eq(kind))
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .filter(|j| {
            j.payload["orderId"].as_str() == Some(id.as_str())
                || j.payload["data"]["orderId"].as_str() == Some(id.as_str())
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_hundred_concurrent_orders_for_fifty_in_stock_sell_exactly_fifty() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let item_id = new_item(&app, &admin, 1_250, 50).await;
    let buyers = join_all((0..20).map(|_| app.register_user())).await;

    // A reader samples the stock while the orders run.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let db = app.state.db.clone();
        let stop = Arc::clone(&stop);
        tokio::spawn(async move {
            let (mut lowest, mut samples) = (i64::MAX, 0u32);
            while !stop.load(Ordering::Acquire) {
                let stock = item::Entity::find_by_id(item_id)
                    .one(db.conn())
                    .await
                    .unwrap()
                    .unwrap()
                    .stock;
                lowest = lowest.min(stock);
                samples += 1;
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (lowest, samples)
        })
    };

    // 20 shoppers × 10 orders of one unit, released together.
    let start = Arc::new(Barrier::new(200));
    let requests = buyers.iter().flat_map(|buyer| {
        (0..10).map(|_| {
            let client = app.client.clone();
            let url = app.url("/api/v1/orders");
            let token = buyer.access_token.clone();
            let start = Arc::clone(&start);
            tokio::spawn(async move {
                start.wait().await;
                let response = client
                    .post(url)
                    .bearer_auth(token)
                    .header("Idempotency-Key", Uuid::new_v4().to_string())
                    .json(&json!({"items": [{"itemId": item_id, "quantity": 1}]}))
                    .send()
                    .await
                    .unwrap();
                status_and_code(response).await
            })
        })
    });
    let outcomes: Vec<(u16, Option<String>)> = join_all(requests.collect::<Vec<_>>())
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    stop.store(true, Ordering::Release);
    let (lowest, samples) = sampler.await.unwrap();

    let created = outcomes.iter().filter(|(s, _)| *s == 201).count();
    let refused = outcomes
        .iter()
        .filter(|(s, code)| *s == 409 && code.as_deref() == Some("insufficient_stock"))
        .count();
    let others: Vec<_> = outcomes
        .iter()
        .filter(|(s, code)| {
            *s != 201 && !(*s == 409 && code.as_deref() == Some("insufficient_stock"))
        })
        .collect();
    assert!(others.is_empty(), "unexpected answers: {others:?}");
    assert_eq!((created, refused), (50, 150));

    assert!(samples > 0, "the sampler never read the stock");
    assert!(lowest >= 0, "the stock went negative: {lowest}");
    assert_eq!(app.stock_of(item_id).await, 0);
    assert_eq!(orders_count(&app).await, 50);
    let sold: i64 = order_line::Entity::find()
        .filter(order_line::Column::ItemId.eq(item_id))
        .all(app.state.db.conn())
        .await
        .unwrap()
        .iter()
        .map(|line| line.quantity)
        .sum();
    assert_eq!(sold, 50);
    app.drain_jobs().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_deliveries_of_one_succeeded_event_pay_the_order_once() {
    let app = spawn_app_with_workers(&[]).await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let buyer = app.register_user().await;
    let item_id = new_item(&app, &admin, 4_200, 5).await;
    let placed = app.placed_order(&buyer, &[(item_id, 1)]).await;
    let order_id = uuid_of(&placed);
    let id = order_id.to_string();
    let intent = app.intent_of(&id).await;
    let event = intent_event(
        "payment_intent.succeeded",
        &intent,
        &id,
        placed["total"].as_i64().unwrap(),
    );
    let event_id = event["id"].as_str().unwrap().to_owned();

    let deliveries = join_all((0..50).map(|_| app.send_webhook(&event))).await;
    let statuses: Vec<u16> = deliveries.iter().map(|r| r.status().as_u16()).collect();
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let mut duplicates = 0;
    for response in deliveries {
        let ack: Value = response.json().await.unwrap();
        assert_eq!(ack["received"], true);
        if ack["duplicate"] == true {
            duplicates += 1;
        }
    }
    assert_eq!(duplicates, 49, "exactly one delivery was processed");

    app.wait_for_order_status(&id, "PROCESSED").await;
    app.wait_for_jobs_idle().await;

    let conn = app.state.db.conn();
    let paid_steps = order_event::Entity::find()
        .filter(order_event::Column::OrderId.eq(order_id))
        .filter(order_event::Column::ToStatus.eq(OrderStatus::Paid))
        .count(conn)
        .await
        .unwrap();
    assert_eq!(paid_steps, 1, "one PAID step in the timeline");
    assert_eq!(
        jobs_for_order(&app, "order.process", order_id).await.len(),
        1
    );
    let paid_notices: Vec<job::Model> = jobs_for_order(&app, "notification.deliver", order_id)
        .await
        .into_iter()
        .filter(|j| j.payload["event"] == "order.paid")
        .collect();
    assert_eq!(paid_notices.len(), 1, "one order.paid notification job");
    eventually("the order.paid notification", SETTLE, || async {
        notification::Entity::find()
            .filter(notification::Column::UserId.eq(buyer.id))
            .filter(notification::Column::Event.eq("order.paid"))
            .count(conn)
            .await
            .unwrap()
            >= 1
    })
    .await;
    let notices = notification::Entity::find()
        .filter(notification::Column::UserId.eq(buyer.id))
        .filter(notification::Column::Event.eq("order.paid"))
        .count(conn)
        .await
        .unwrap();
    assert_eq!(notices, 1, "one order.paid notification");
    let recorded = payment_event::Entity::find()
        .filter(payment_event::Column::ProviderEventId.eq(event_id.as_str()))
        .count(conn)
        .await
        .unwrap();
    assert_eq!(recorded, 1);
    assert_eq!(
        payment_row(&app, order_id).await.status,
        PaymentStatus::Succeeded
    );
    app.drain_jobs().await;
}

/// How a canceled-or-paid order ended once every job has run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RaceEnd {
    /// The payment won: the cancel was refused and the order went on.
    Paid,
    /// The cancel won and the payment that landed was refunded.
    CanceledAndRefunded,
    /// The cancel won and its job canceled the PaymentIntent before the
    /// customer could pay: nobody was charged.
    CanceledBeforePayment,
}

/// The settled outcome of an order of the cancel/payment race, or why it is
/// not (yet) acceptable.
async fn race_end(app: &TestApp, order_id: Uuid, intent: &str) -> Result<RaceEnd, String> {
    let order = order_row(app, order_id).await;
    let payment = payment_row(app, order_id).await;
    let refunds = refund_rows(app, order_id).await;
    let provider = app.simulated().payment_intent(intent).map(|i| i.status);
    let seen = format!(
        "order {} payment {:?} refunds {:?} provider {provider:?}",
        order.status.as_str(),
        payment.status,
        refunds.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    match order.status {
        OrderStatus::Paid | OrderStatus::Processed
            if payment.status == PaymentStatus::Succeeded && refunds.is_empty() =>
        {
            Ok(RaceEnd::Paid)
        }
        OrderStatus::Canceled
            if payment.status == PaymentStatus::Refunded
                && refunds.len() == 1
                && refunds[0].status == RefundStatus::Succeeded
                && provider == Some(IntentStatus::Succeeded) =>
        {
            Ok(RaceEnd::CanceledAndRefunded)
        }
        OrderStatus::Canceled
            if payment.status == PaymentStatus::Canceled
                && refunds.is_empty()
                && provider == Some(IntentStatus::Canceled) =>
        {
            Ok(RaceEnd::CanceledBeforePayment)
        }
        _ => Err(seen),
    }
}

/// Waits (at most [`SETTLE`]) for the race over `order_id` to settle, and
/// says how it ended; `answered` is the staff request's status, for the
/// failure message.
async fn settled_end(app: &TestApp, order_id: Uuid, intent: &str, answered: u16) -> RaceEnd {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        match race_end(app, order_id, intent).await {
            Ok(end) => return end,
            Err(seen) => assert!(
                tokio::time::Instant::now() < deadline,
                "order {order_id} never settled (staff request answered {answered}): {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancel_racing_payment_success_never_leaves_a_charge_on_a_canceled_order() {
    // The customer pays (the simulated provider marks the PaymentIntent
    // succeeded and delivers its signed webhook, as Stripe would) at the
    // moment staff cancel the order.
    const ROUNDS: usize = 40;
    const STOCK: i64 = 100;
    let app = spawn_app_with_workers(&[]).await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let buyer = app.register_user().await;
    let item_id = new_item(&app, &admin, 3_100, STOCK).await;

    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let placed = app.placed_order(&buyer, &[(item_id, 1)]).await;
        let order_id = uuid_of(&placed);
        let intent = app.intent_of(&order_id.to_string()).await;
        let cancel = async {
            let response = app
                .patch(&format!("/api/v1/admin/orders/{order_id}/cancel"))
                .bearer_auth(&admin.access_token)
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            status_and_code(response).await
        };
        let ((status, code), _) = tokio::join!(cancel, app.simulated().confirm(&intent));
        assert!(
            matches!(status, 200 | 202) || (status == 409 && code.is_some()),
            "cancel answered {status} {code:?}"
        );
        rounds.push((order_id, intent, status));
    }

    let mut ends = Vec::with_capacity(ROUNDS);
    for (order_id, intent, cancel_status) in &rounds {
        let end = settled_end(&app, *order_id, intent, *cancel_status).await;
        match end {
            RaceEnd::Paid => assert_eq!(*cancel_status, 409, "order {order_id}"),
            RaceEnd::CanceledAndRefunded | RaceEnd::CanceledBeforePayment => {
                assert!(matches!(cancel_status, 200 | 202), "order {order_id}");
            }
        }
        ends.push(end);
    }
    app.wait_for_jobs_idle().await;

    let count = |what: RaceEnd| ends.iter().filter(|e| **e == what).count();
    let paid = count(RaceEnd::Paid);
    let refunded = count(RaceEnd::CanceledAndRefunded);
    let never_charged = count(RaceEnd::CanceledBeforePayment);
    println!(
        "cancel vs payment over {ROUNDS} rounds: {paid} paid (cancel refused), \
         {refunded} canceled and refunded, {never_charged} canceled before payment"
    );
    // Canceled orders gave their unit back; paid ones kept it.
    assert_eq!(
        app.stock_of(item_id).await,
        STOCK - i64::try_from(paid).unwrap()
    );
    assert_eq!(
        app.simulated().refund_count(),
        u64::try_from(refunded).unwrap(),
        "one provider refund per refunded order"
    );
    app.drain_jobs().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn twenty_concurrent_requests_with_one_idempotency_key_make_one_order_and_one_payment_intent()
{
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let buyer = app.register_user().await;
    let item_id = new_item(&app, &admin, 990, 30).await;
    let key = Uuid::new_v4().to_string();
    let lines = [(item_id, 2)];

    let responses = join_all((0..20).map(|_| app.place_order(&buyer, &lines, &key))).await;
    let mut order_ids = std::collections::HashSet::new();
    let mut in_flight = 0;
    for response in responses {
        match response.status().as_u16() {
            201 => {
                let body: Value = response.json().await.unwrap();
                order_ids.insert(uuid_of(&body));
            }
            409 => {
                let body = problem(response).await;
                assert_eq!(body["code"], "idempotency_key_in_flight");
                in_flight += 1;
            }
            other => panic!(
                "unexpected answer {other}: {}",
                response.text().await.unwrap()
            ),
        }
    }
    assert_eq!(order_ids.len(), 1, "every 201 names the same order");
    assert!(in_flight < 20, "at least one request got through");
    let order_id = *order_ids.iter().next().unwrap();

    let retry = app.place_order(&buyer, &lines, &key).await;
    assert_eq!(retry.status(), 201);
    assert_eq!(
        retry
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let body: Value = retry.json().await.unwrap();
    assert_eq!(uuid_of(&body), order_id);

    assert_eq!(orders_count(&app).await, 1);
    assert_eq!(app.simulated().payment_intent_count(), 1);
    assert_eq!(app.stock_of(item_id).await, 28);
    app.drain_jobs().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn delete_racing_payment_success_never_deletes_a_paid_order_or_refunds_it() {
    // Staff delete a PENDING order at the moment the customer pays. Either
    // the delete wins (canceled and deleted; the payment job cancels the
    // PaymentIntent or, had the charge landed, refunds it) or the payment
    // wins and the delete is 409 `order_not_deletable` with the order PAID
    // and charged once. A paid order canceled by a delete is the bug.
    const ROUNDS: usize = 40;
    const STOCK: i64 = 100;
    let app = spawn_app_with_workers(&[]).await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let buyer = app.register_user().await;
    let item_id = new_item(&app, &admin, 3_100, STOCK).await;

    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let placed = app.placed_order(&buyer, &[(item_id, 1)]).await;
        let order_id = uuid_of(&placed);
        let intent = app.intent_of(&order_id.to_string()).await;
        let delete = async {
            let response = app
                .delete(&format!("/api/v1/admin/orders/{order_id}"))
                .bearer_auth(&admin.access_token)
                .send()
                .await
                .unwrap();
            status_and_code(response).await
        };
        let ((status, code), _) = tokio::join!(delete, app.simulated().confirm(&intent));
        assert!(
            status == 204 || (status == 409 && code.as_deref() == Some("order_not_deletable")),
            "delete answered {status} {code:?}"
        );
        rounds.push((order_id, intent, status));
    }
    let mut deleted = 0;
    for (order_id, intent, delete_status) in &rounds {
        let end = settled_end(&app, *order_id, intent, *delete_status).await;
        let row = order_row(&app, *order_id).await;
        match end {
            RaceEnd::Paid => {
                assert_eq!(*delete_status, 409, "order {order_id}");
                assert!(row.deleted_at.is_none(), "a paid order stays");
            }
            RaceEnd::CanceledBeforePayment | RaceEnd::CanceledAndRefunded => {
                assert_eq!(*delete_status, 204, "order {order_id}: {end:?}");
                assert!(row.deleted_at.is_some());
                // The delete canceled it while it was still unpaid (a
                // charge that landed later was refunded by the cancel's
                // rules); it never canceled a PAID order.
                let deletion = order_event::Entity::find()
                    .filter(order_event::Column::OrderId.eq(*order_id))
                    .filter(order_event::Column::Reason.eq("deleted"))
                    .one(app.state.db.conn())
                    .await
                    .unwrap()
                    .expect("the delete's cancel is on the timeline");
                assert_eq!(
                    deletion.from_status,
                    Some(OrderStatus::Pending),
                    "order {order_id} was canceled by a delete after it was paid"
                );
                deleted += 1;
            }
        }
    }
    app.wait_for_jobs_idle().await;
    println!("delete vs payment over {ROUNDS} rounds: {deleted} deleted");
    app.drain_jobs().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_concurrent_refunds_of_one_order_refund_once() {
    let app = spawn_app_with_workers(&[]).await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let buyer = app.register_user().await;
    let item_id = new_item(&app, &admin, 5_600, 3).await;
    let placed = app.placed_order(&buyer, &[(item_id, 1)]).await;
    let order_id = uuid_of(&placed);
    let id = order_id.to_string();
    // Paid at the provider (so there is a charge to refund), then processed.
    let intent = app.intent_of(&id).await;
    assert_eq!(
        app.simulated().confirm(&intent).await,
        Some(IntentStatus::Succeeded)
    );
    app.wait_for_order_status(&id, "PROCESSED").await;

    let refund = || async {
        let response = app
            .patch(&format!("/api/v1/admin/orders/{id}/refund"))
            .bearer_auth(&admin.access_token)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        status_and_code(response).await
    };
    let (first, second) = tokio::join!(refund(), refund());
    let mut statuses = [first.0, second.0];
    statuses.sort_unstable();
    assert_eq!(statuses, [202, 409], "{first:?} {second:?}");

    eventually("the refund to succeed", SETTLE, || async {
        refund_rows(&app, order_id)
            .await
            .iter()
            .any(|r| r.status == RefundStatus::Succeeded)
    })
    .await;
    app.wait_for_jobs_idle().await;
    let refunds = refund_rows(&app, order_id).await;
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0].status, RefundStatus::Succeeded);
    assert_eq!(
        payment_row(&app, order_id).await.status,
        PaymentStatus::Refunded
    );
    assert_eq!(
        order_row(&app, order_id).await.status,
        OrderStatus::Refunded
    );
    assert_eq!(app.simulated().refund_count(), 1);
    assert_eq!(app.stock_of(item_id).await, 3, "the goods never left");
    app.drain_jobs().await;
}
