//! Notifications: one per event, texts in both languages, the feed and its
//! counters, and the live stream (same process, other process, replay,
//! revocation).

use std::time::Duration;

use dispatch::{
    jobs::{self, Job, NewJob, registry::JobServices},
    money::{Currency, Money},
    notifications::{
        deliver::Deliver,
        event::{NotificationEvent, OrderSummary},
        notification,
    },
    users::role::Role,
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp, TestUser, eventually, problem, spawn_app, spawn_app_with, spawn_app_with_workers,
};

const WAIT: Duration = Duration::from_secs(20);

async fn set_language(app: &TestApp, user: &TestUser, language: &str) {
    let response = app
        .patch("/api/v1/users/me")
        .bearer_auth(&user.access_token)
        .json(&json!({ "language": language }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

async fn feed(app: &TestApp, user: &TestUser, query: &str) -> Value {
    let response = app
        .get(&format!("/api/v1/notifications{query}"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn count_of(app: &TestApp, user: Uuid, event: &str) -> u64 {
    notification::Entity::find()
        .filter(notification::Column::UserId.eq(user))
        .filter(notification::Column::Event.eq(event))
        .count(app.state.db.conn())
        .await
        .unwrap()
}

/// An order event's summary for tests that only need some order.
fn usd(minor: i64) -> Money {
    Money::new(minor, Currency::parse("usd").unwrap())
}

fn summary(order_id: Uuid, status: &str) -> OrderSummary {
    OrderSummary {
        order_id,
        status: status.to_owned(),
        total: usd(1_000),
    }
}

/// Records a notification for `user` as its job would, with a fresh job id.
async fn record(app: &TestApp, user: Uuid, event: NotificationEvent) -> Uuid {
    let id = Uuid::new_v4();
    let ctx = JobServices::from_state(&app.state).context(id, 1, Uuid::new_v4());
    Deliver {
        user_id: user,
        event,
    }
    .run(&ctx)
    .await
    .unwrap();
    id
}

#[tokio::test]
async fn each_event_of_an_order_is_recorded_once_with_its_text_in_both_languages() {
    let app = spawn_app_with_workers(&[]).await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let buyer = app.register_user().await;
    let item: Uuid = app.create_item(&admin, "Chair", 123_450, 10).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    // Placed, paid, processed, shipped, delivered, refunded; and a second
    // order canceled; and a generic status change.
    let delivered = app.order_in_status(&admin, &buyer, item, "DELIVERED").await;
    app.staff_action(&admin, &delivered, "refund", json!({}))
        .await;
    let canceled = app.placed_order(&buyer, &[(item, 1)]).await;
    let canceled = canceled["id"].as_str().unwrap().to_owned();
    app.staff_action(&admin, &canceled, "cancel", json!({}))
        .await;
    let third = app.order_in_status(&admin, &buyer, item, "PROCESSED").await;
    let changed = app
        .patch(&format!("/api/v1/admin/orders/{third}"))
        .bearer_auth(&admin.access_token)
        .json(&json!({"status": "SHIPPED"}))
        .send()
        .await
        .unwrap();
    assert_eq!(changed.status(), 200);
    app.wait_for_jobs_idle().await;

    let expected = [
        ("auth.login", 1),
        ("order.created", 3),
        ("order.paid", 2),
        ("order.processed", 2),
        ("order.shipped", 1),
        ("order.status_changed", 1),
        ("order.delivered", 1),
        ("order.refunded", 1),
        ("order.canceled", 1),
    ];
    for (event, count) in expected {
        assert_eq!(count_of(&app, buyer.id, event).await, count, "{event}");
    }

    let page = feed(&app, &buyer, "?limit=100").await;
    let refunded = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["event"] == "order.refunded")
        .unwrap()
        .clone();
    assert_eq!(refunded["title"], "Order refunded");
    assert_eq!(
        refunded["message"],
        format!("We refunded $1,234.50 for your order {delivered}.")
    );
    let status_changed = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["event"] == "order.status_changed")
        .unwrap()
        .clone();
    assert_eq!(
        status_changed["message"],
        format!("Your order {third} is now shipped.")
    );
    for notification in page["items"].as_array().unwrap() {
        let message = notification["message"].as_str().unwrap();
        assert!(!message.contains("%{"), "unfilled placeholder: {message}");
        assert!(!message.contains("{orderId}"), "{message}");
    }

    set_language(&app, &buyer, "pt-BR").await;
    let page = feed(&app, &buyer, "?limit=100").await;
    let refunded = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["event"] == "order.refunded")
        .unwrap()
        .clone();
    assert_eq!(refunded["title"], "Pedido reembolsado");
    assert_eq!(
        refunded["message"],
        format!("Reembolsamos $ 1.234,50 referentes ao seu pedido {delivered}.")
    );
    let status_changed = page["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["event"] == "order.status_changed")
        .unwrap()
        .clone();
    assert_eq!(
        status_changed["message"],
        format!("Seu pedido {third} agora está enviado.")
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn every_event_has_a_title_and_message_in_both_languages() {
    use dispatch::i18n::{Lang, has_text};
    let events = [
        "auth.login",
        "account.email_changed",
        "order.created",
        "order.paid",
        "order.processed",
        "order.shipped",
        "order.delivered",
        "order.canceled",
        "order.refunded",
        "order.failed",
        "order.status_changed",
    ];
    for lang in [Lang::En, Lang::PtBr] {
        for event in events {
            for field in ["title", "message"] {
                assert!(
                    has_text(lang, &format!("notifications.{event}.{field}")),
                    "{event}.{field} in {lang:?}"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_failed_order_notifies_order_failed_once() {
    let app = spawn_app().await;
    let admin = app.create_user_with_role(Role::Admin).await;
    let buyer = app.register_user().await;
    let item: Uuid = app.create_item(&admin, "Desk", 5_000, 3).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let paid = app.order_in_status(&admin, &buyer, item, "PAID").await;
    // Processing failed for good: its compensation runs (twice, as a retry would).
    let ctx = JobServices::from_state(&app.state).context(Uuid::new_v4(), 1, Uuid::new_v4());
    let compensation = dispatch::orders::jobs::ProcessingFailed {
        order_id: paid.parse().unwrap(),
    };
    compensation.run(&ctx).await.unwrap();
    compensation.run(&ctx).await.unwrap();
    let order = app.staff_order(&admin, &paid).await;
    assert_eq!(order["status"], "REFUNDED");
    assert_eq!(app.stock_of(item).await, 3, "the goods never left");
    let workers = dispatch::startup::Workers::start_standard(&app.state);
    app.wait_for_jobs_idle().await;
    assert_eq!(count_of(&app, buyer.id, "order.failed").await, 1);
    assert_eq!(count_of(&app, buyer.id, "order.refunded").await, 0);
    workers.shutdown().await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_retried_delivery_does_not_record_twice() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let ctx = JobServices::from_state(&app.state).context(Uuid::new_v4(), 1, Uuid::new_v4());
    let job = Deliver {
        user_id: user.id,
        event: NotificationEvent::OrderShipped(summary(Uuid::new_v4(), "SHIPPED")),
    };
    job.run(&ctx).await.unwrap();
    // The worker died after the insert committed; the job runs again.
    let retry = JobServices::from_state(&app.state).context(ctx.job_id, 2, Uuid::new_v4());
    job.run(&retry).await.unwrap();
    assert_eq!(count_of(&app, user.id, "order.shipped").await, 1);
    app.drain_jobs().await;
}

#[tokio::test]
async fn unread_counts_and_has_new_follow_reads() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let before = dispatch::db::now();
    let first = record(
        &app,
        user.id,
        NotificationEvent::OrderShipped(summary(Uuid::new_v4(), "SHIPPED")),
    )
    .await;
    record(
        &app,
        user.id,
        NotificationEvent::OrderDelivered(summary(Uuid::new_v4(), "DELIVERED")),
    )
    .await;
    record(
        &app,
        user.id,
        NotificationEvent::OrderPaid(OrderSummary {
            total: usd(100),
            ..summary(Uuid::new_v4(), "PAID")
        }),
    )
    .await;
    let count = |app: &TestApp| {
        let request = app
            .get("/api/v1/notifications/unread/count")
            .bearer_auth(&user.access_token);
        async move {
            let body: Value = request.send().await.unwrap().json().await.unwrap();
            body["count"].as_u64().unwrap()
        }
    };
    assert_eq!(count(&app).await, 3);
    let since = before.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let has_new: Value = app
        .get(&format!(
            "/api/v1/notifications/has-new?since={}",
            urlencode(&since)
        ))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(has_new["hasNew"], true);
    let latest = feed(&app, &user, "?limit=1").await["items"][0]["createdAt"]
        .as_str()
        .unwrap()
        .to_owned();
    let nothing_newer: Value = app
        .get(&format!(
            "/api/v1/notifications/has-new?since={}",
            urlencode(&latest)
        ))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(nothing_newer["hasNew"], false);

    let read = app
        .patch(&format!("/api/v1/notifications/{first}/read"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    let read: Value = read.json().await.unwrap();
    assert_eq!(read["read"], true);
    let read_at = read["readAt"].clone();
    let again: Value = app
        .patch(&format!("/api/v1/notifications/{first}/read"))
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        again["readAt"], read_at,
        "reading again keeps the first time"
    );
    assert_eq!(count(&app).await, 2);
    assert_eq!(
        feed(&app, &user, "?unread=true").await["items"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    // Without `since`: "since I last read", as the earlier API's poll asked.
    let poll = |app: &TestApp| {
        let request = app
            .get("/api/v1/notifications/has-new")
            .bearer_auth(&user.access_token);
        async move {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), 200);
            let body: Value = response.json().await.unwrap();
            body["hasNew"].as_bool().unwrap()
        }
    };
    assert!(poll(&app).await, "two are still unread");
    let all: Value = app
        .patch("/api/v1/notifications/read-all")
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(all["updated"], 2);
    assert_eq!(count(&app).await, 0);
    assert!(!poll(&app).await, "everything is read");
    let malformed_since = app
        .get("/api/v1/notifications/has-new?since=yesterday")
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(malformed_since.status(), 400);
    problem(malformed_since).await;
    app.drain_jobs().await;
}

fn urlencode(text: &str) -> String {
    text.replace('+', "%2B").replace(':', "%3A")
}

#[tokio::test]
async fn another_users_notification_is_404_and_stays_unread() {
    let app = spawn_app().await;
    let owner = app.register_user().await;
    let stranger = app.register_user().await;
    let id = record(
        &app,
        owner.id,
        NotificationEvent::OrderShipped(summary(Uuid::new_v4(), "SHIPPED")),
    )
    .await;
    for target in [id, Uuid::new_v4()] {
        let response = app
            .patch(&format!("/api/v1/notifications/{target}/read"))
            .bearer_auth(&stranger.access_token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
        assert_eq!(problem(response).await["code"], "not_found");
    }
    assert_eq!(
        feed(&app, &owner, "?unread=true").await["items"][0]["id"],
        id.to_string()
    );
    assert_eq!(
        feed(&app, &stranger, "").await["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn read_notifications_past_retention_are_cleaned_up_and_unread_ones_stay() {
    use sea_orm::sea_query::Expr;
    let app = spawn_app_with(&[("NOTIFICATION_RETENTION", "1h")]).await;
    let user = app.register_user().await;
    let order = summary(Uuid::new_v4(), "PAID");
    let old_read = record(
        &app,
        user.id,
        NotificationEvent::OrderShipped(order.clone()),
    )
    .await;
    let old_unread = record(
        &app,
        user.id,
        NotificationEvent::OrderDelivered(order.clone()),
    )
    .await;
    let recent_read = record(&app, user.id, NotificationEvent::OrderPaid(order)).await;
    let two_hours_ago = dispatch::db::now() - chrono::Duration::hours(2);
    let txn = app.state.db.begin_write().await.unwrap();
    notification::Entity::update_many()
        .col_expr(notification::Column::CreatedAt, Expr::value(two_hours_ago))
        .filter(notification::Column::Id.is_in([old_read, old_unread]))
        .exec(&*txn)
        .await
        .unwrap();
    notification::Entity::update_many()
        .col_expr(
            notification::Column::ReadAt,
            Expr::value(dispatch::db::now()),
        )
        .filter(notification::Column::Id.is_in([old_read, recent_read]))
        .exec(&*txn)
        .await
        .unwrap();
    txn.commit().await.unwrap();
    let ctx = JobServices::from_state(&app.state).context(Uuid::new_v4(), 1, Uuid::new_v4());
    dispatch::notifications::retention::Cleanup::default()
        .run(&ctx)
        .await
        .unwrap();
    let left: Vec<Uuid> = notification::Entity::find()
        .filter(notification::Column::UserId.eq(user.id))
        .all(app.state.db.conn())
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.id)
        .collect();
    assert!(!left.contains(&old_read));
    assert!(left.contains(&old_unread));
    assert!(left.contains(&recent_read));
    app.drain_jobs().await;
}

/// A minimal Server-Sent Events reader.
struct EventStream {
    response: reqwest::Response,
    buffer: String,
}

#[derive(Debug, Clone)]
struct SseEvent {
    id: Option<String>,
    event: Option<String>,
    data: String,
}

impl EventStream {
    async fn open(app: &TestApp, user: &TestUser, last_event_id: Option<&str>) -> Self {
        let mut request = app
            .get("/api/v1/notifications/stream")
            .bearer_auth(&user.access_token)
            .timeout(Duration::from_secs(120));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/event-stream")
        );
        Self {
            response,
            buffer: String::new(),
        }
    }

    /// The next event (comments skipped), `None` when the stream ends or
    /// nothing comes within `limit`.
    async fn next(&mut self, limit: Duration) -> Option<SseEvent> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = SseEvent {
                    id: None,
                    event: None,
                    data: String::new(),
                };
                let mut any = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = Some(v.trim().to_owned());
                        any = true;
                    } else if let Some(v) = line.strip_prefix("data:") {
                        event.data.push_str(v.trim_start());
                        any = true;
                    }
                }
                if any {
                    return Some(event);
                }
                continue;
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk()).await;
            match chunk {
                Ok(Ok(Some(bytes))) => self.buffer.push_str(&String::from_utf8_lossy(&bytes)),
                Ok(Ok(None) | Err(_)) | Err(_) => return None,
            }
        }
    }

    /// Whether the server ended the stream within `limit`.
    async fn ends_within(&mut self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, self.response.chunk()).await {
                Ok(Ok(Some(_))) => continue,
                Ok(Ok(None) | Err(_)) => return true,
                Err(_) => return false,
            }
        }
    }
}

/// Enqueues a notification job in its own transaction (a worker records it).
async fn enqueue_notification(app: &TestApp, user: Uuid, order: Uuid) {
    let txn = app.state.db.begin_write().await.unwrap();
    jobs::enqueue(
        &txn,
        NewJob::of(&Deliver {
            user_id: user,
            event: NotificationEvent::OrderShipped(summary(order, "SHIPPED")),
        }),
    )
    .await
    .unwrap();
    txn.commit().await.unwrap();
}

#[tokio::test]
async fn a_stream_receives_a_notification_recorded_by_a_job_in_another_process_or_this_one() {
    // PostgreSQL: a separate worker process records it, and this API process
    // hears of it through the database's notification channel. SQLite (one
    // process): this app's own workers record it.
    let postgres = std::env::var("DATABASE_URL").is_ok_and(|u| u.starts_with("postgres"));
    let app = if postgres {
        spawn_app().await
    } else {
        spawn_app_with_workers(&[]).await
    };
    let user = app.register_user().await;
    let mut stream = EventStream::open(&app, &user, None).await;
    let mut worker = postgres.then(|| crate::jobs::spawn_worker_process(&app));
    let order = Uuid::new_v4();
    enqueue_notification(&app, user.id, order).await;
    // auth.login from registration may arrive first: wait for ours.
    let event = loop {
        let event = stream.next(WAIT).await.expect("a notification event");
        let body: Value = serde_json::from_str(&event.data).unwrap();
        if body["event"] == "order.shipped" {
            break (event, body);
        }
    };
    assert_eq!(event.0.event.as_deref(), Some("notification"));
    assert_eq!(
        event.1["message"],
        format!("Your order {order} is on its way.")
    );
    assert_eq!(event.0.id.as_deref(), event.1["id"].as_str());
    // The rest of the jobs (registration's) finish before the worker goes.
    app.wait_for_jobs_idle().await;
    if let Some(worker) = worker.as_mut() {
        worker.kill().await.unwrap();
    }
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_reconnecting_stream_gets_what_it_missed_and_nothing_twice() {
    let app = spawn_app().await;
    let user = app.register_user().await;
    let first = record(
        &app,
        user.id,
        NotificationEvent::OrderPaid(OrderSummary {
            total: usd(100),
            ..summary(Uuid::new_v4(), "PAID")
        }),
    )
    .await;
    // Connected from the first one: only what came after it.
    let mut missed = Vec::new();
    for _ in 0..3 {
        missed.push(
            record(
                &app,
                user.id,
                NotificationEvent::OrderShipped(summary(Uuid::new_v4(), "SHIPPED")),
            )
            .await,
        );
    }
    let mut stream = EventStream::open(&app, &user, Some(&first.to_string())).await;
    let mut received = Vec::new();
    for _ in 0..3 {
        let event = stream.next(WAIT).await.expect("a replayed event");
        received.push(event.id.unwrap().parse::<Uuid>().unwrap());
    }
    assert_eq!(received, missed, "in order, from after the last one seen");
    // Live from here: a new one arrives once, none of the replayed again.
    let live = record(
        &app,
        user.id,
        NotificationEvent::OrderDelivered(summary(Uuid::new_v4(), "DELIVERED")),
    )
    .await;
    let event = stream.next(WAIT).await.expect("the live event");
    assert_eq!(event.id.unwrap(), live.to_string());
    assert!(
        stream.next(Duration::from_millis(500)).await.is_none(),
        "nothing else"
    );
    app.drain_jobs().await;
}

#[tokio::test]
async fn a_stream_ends_when_its_session_is_revoked_and_sends_keep_alives_meanwhile() {
    let app = spawn_app_with(&[("SSE_KEEP_ALIVE", "200ms")]).await;
    let user = app.register_user().await;
    let mut stream = EventStream::open(&app, &user, None).await;
    let comment = tokio::time::timeout(Duration::from_secs(5), stream.response.chunk())
        .await
        .expect("a keep-alive within the interval")
        .unwrap()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&comment).starts_with(':'),
        "a comment line"
    );
    let logout = app
        .post("/api/v1/auth/logout")
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert!(
        stream.ends_within(Duration::from_secs(5)).await,
        "the stream ended"
    );
    eventually("the stream to be gone", WAIT, || async {
        app.state.notifications.listeners() == 0
    })
    .await;
    app.drain_jobs().await;
}

#[tokio::test]
async fn the_stream_keeps_delivering_while_redis_is_down() {
    // Fan-out never goes through Redis (the database announces new
    // notifications); with Redis unreachable, sessions and caches fall back
    // to the database and the stream still works.
    let app = spawn_app_with_workers(&[("REDIS_URL", "redis://127.0.0.1:1")]).await;
    let user = app.register_user().await;
    let mut stream = EventStream::open(&app, &user, None).await;
    let order = Uuid::new_v4();
    enqueue_notification(&app, user.id, order).await;
    let body = loop {
        let event = stream.next(WAIT).await.expect("a notification event");
        let body: Value = serde_json::from_str(&event.data).unwrap();
        if body["event"] == "order.shipped" {
            break body;
        }
    };
    assert_eq!(
        body["message"],
        format!("Your order {order} is on its way.")
    );
    app.drain_jobs().await;
}
