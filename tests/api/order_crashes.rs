//! Checkouts that die half-way (docs/spec.md §4.2): a process killed while it waits
//! for the PaymentIntent, a checkout nobody comes back for, a provider that
//! is down. Stripe is imitated with wiremock at the network edge; the
//! killed process is a real `dispatch serve --role api` child sharing the
//! test app's database, so the kill is a real SIGKILL with no clean-up.
//!
//! The test app itself runs with `PAYMENT_GATEWAY=stripe` against the same
//! imitation from the start: it is the "next process" that picks the work
//! up (the retry, the expiry job), and the child inherits its settings, so
//! both talk to one database and one imitation of Stripe.

use std::{net::TcpListener as StdListener, process::Stdio, time::Duration};

use dispatch::{
    orders::model::{order, order_line},
    payments::model::payment::{self, PaymentStatus},
    users::role::Role,
};
use reqwest::Response;
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::{Value, json};
use tokio::process::{Child, Command};
use uuid::Uuid;
use wiremock::{
    Mock, MockBuilder, MockServer, Request, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::{TestApp, TestUser, problem, spawn_app_with, spawn_app_with_workers};

const PRICE: i64 = 2_500;
const STOCK: i64 = 10;
const INTENT_ID: &str = "pi_crash_1";
const INTENT_SECRET: &str = "pi_crash_1_secret_x";
/// Bounds every wait of these tests.
const WAIT: Duration = Duration::from_secs(30);

/// The settings that point an app (and its child processes) at the Stripe
/// imitation. The Stripe timeout outlasts the delayed answer's wait for
/// the kill, so the doomed request never gives up on its own.
fn stripe_settings(uri: &str) -> Vec<(&'static str, String)> {
    vec![
        ("PAYMENT_GATEWAY", "stripe".into()),
        ("STRIPE_API_BASE", uri.to_owned()),
        ("STRIPE_SECRET_KEY", "sk_test_x".into()),
        ("STRIPE_TIMEOUT", "30s".into()),
        ("IDEMPOTENCY_LEASE", "1s".into()),
    ]
}

fn pairs<'a>(settings: &'a [(&'static str, String)]) -> Vec<(&'static str, &'a str)> {
    settings.iter().map(|(k, v)| (*k, v.as_str())).collect()
}

/// Stripe's answer to a PaymentIntent create.
fn intent_created(amount: i64) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({
        "id": INTENT_ID,
        "object": "payment_intent",
        "client_secret": INTENT_SECRET,
        "status": "requires_payment_method",
        "amount": amount,
        "currency": "usd",
    }))
}

fn intent_creates() -> MockBuilder {
    Mock::given(method("POST")).and(path("/v1/payment_intents"))
}

/// Customer sync (registration enqueues it) succeeds quietly where workers run.
async fn mount_customers(stripe: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "cus_crash", "object": "customer"})),
        )
        .mount(stripe)
        .await;
}

/// The PaymentIntent creates the imitation has received so far.
async fn intent_requests(stripe: &MockServer) -> Vec<Request> {
    stripe
        .received_requests()
        .await
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.method.as_str() == "POST" && r.url.path() == "/v1/payment_intents")
        .collect()
}

async fn wait_for_intent_requests(stripe: &MockServer, count: usize) {
    crate::helpers::eventually(
        "the PaymentIntent request to reach Stripe",
        WAIT,
        || async { intent_requests(stripe).await.len() >= count },
    )
    .await;
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

fn form_field(request: &Request, name: &str) -> Option<String> {
    form_urlencoded::parse(&request.body)
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// A `dispatch serve --role api` process on the test app's database and
/// settings, killed with SIGKILL when the test says so (or dropped).
struct ApiProcess {
    child: Child,
    address: String,
}

impl ApiProcess {
    async fn start(app: &TestApp) -> Self {
        let port = {
            let probe = StdListener::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        let logs = std::env::var_os("TEST_LOG").is_some();
        let mut command = Command::new(env!("CARGO_BIN_EXE_dispatch"));
        command.args(["serve", "--role", "api"]).env_clear();
        for (name, value) in &app.settings {
            command.env(name, value);
        }
        command
            .env("BIND_ADDR", format!("127.0.0.1:{port}"))
            // The test app applied the migrations.
            .env("MIGRATE_ON_START", "false")
            .env("LOG_LEVEL", if logs { "info" } else { "error" })
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .kill_on_drop(true)
            .stdout(Stdio::null())
            .stderr(if logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            });
        let mut process = Self {
            child: command.spawn().expect("start an API process"),
            address: format!("http://127.0.0.1:{port}"),
        };
        process.wait_until_ready(app).await;
        process
    }

    async fn wait_until_ready(&mut self, app: &TestApp) {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(exit) = self.child.try_wait().unwrap() {
                panic!("the API process exited at start-up: {exit}");
            }
            let ready = app
                .client
                .get(self.url("/health/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            if ready {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the API process never became ready"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// SIGKILL: no drain, no clean-up, no answer to what is in flight.
    async fn kill(mut self) {
        self.child.kill().await.unwrap();
    }
}

struct Shop {
    app: TestApp,
    admin: TestUser,
    buyer: TestUser,
    item_id: Uuid,
}

async fn shop(app: TestApp) -> Shop {
    let admin = app.create_user_with_role(Role::Admin).await;
    let buyer = app.register_user().await;
    let item = app.create_item(&admin, "Fragile vase", PRICE, STOCK).await;
    let item_id = item["id"].as_str().unwrap().parse().unwrap();
    Shop {
        app,
        admin,
        buyer,
        item_id,
    }
}

fn order_body(item_id: Uuid, quantity: i64) -> Value {
    json!({"items": [{"itemId": item_id, "quantity": quantity}]})
}

async fn post_order(
    app: &TestApp,
    url: &str,
    buyer: &TestUser,
    key: &str,
    body: &Value,
) -> Response {
    app.client
        .post(url)
        .bearer_auth(&buyer.access_token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn orders_of(app: &TestApp, user_id: Uuid) -> Vec<order::Model> {
    order::Entity::find()
        .filter(order::Column::UserId.eq(user_id))
        .all(app.state.db.conn())
        .await
        .unwrap()
}

async fn payment_of(app: &TestApp, order_id: Uuid) -> payment::Model {
    dispatch::payments::queries::payment_of_order(app.state.db.conn(), order_id)
        .await
        .unwrap()
        .unwrap()
}

/// Places an order through a child API process that is killed while it
/// waits for Stripe's PaymentIntent; returns the order it left behind.
async fn checkout_killed_mid_way(
    shop: &Shop,
    key: &str,
    body: &Value,
    stripe: &MockServer,
) -> order::Model {
    let api = ApiProcess::start(&shop.app).await;
    let doomed = {
        let request = shop
            .app
            .client
            .post(api.url("/api/v1/orders"))
            .bearer_auth(&shop.buyer.access_token)
            .header("Idempotency-Key", key)
            .json(body);
        tokio::spawn(request.send())
    };
    wait_for_intent_requests(stripe, 1).await;
    api.kill().await;
    assert!(
        doomed.await.unwrap().is_err(),
        "the killed process cannot have answered"
    );
    let mut orders = orders_of(&shop.app, shop.buyer.id).await;
    assert_eq!(
        orders.len(),
        1,
        "the reservation committed before the crash"
    );
    let order = orders.remove(0);
    let payment = payment_of(&shop.app, order.id).await;
    assert_eq!(
        payment.provider_payment_id, None,
        "no PaymentIntent attached"
    );
    assert_eq!(payment.status, PaymentStatus::Creating);
    order
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_killed_before_its_payment_intent_resumes_with_the_same_key_and_one_intent() {
    let stripe = MockServer::start().await;
    // The first PaymentIntent create hangs: the process dies waiting for it.
    intent_creates()
        .respond_with(intent_created(2 * PRICE).set_delay(Duration::from_secs(60)))
        .up_to_n_times(1)
        .mount(&stripe)
        .await;
    mount_customers(&stripe).await;
    let settings = stripe_settings(&stripe.uri());
    let shop = shop(spawn_app_with(&pairs(&settings)).await).await;
    let app = &shop.app;
    let key = Uuid::new_v4().to_string();
    let body = order_body(shop.item_id, 2);

    let left = checkout_killed_mid_way(&shop, &key, &body, &stripe).await;
    assert_eq!(left.status.as_str(), "PENDING");
    assert_eq!(
        app.stock_of(shop.item_id).await,
        STOCK - 2,
        "stock reserved"
    );

    // Stripe answers at once from now on; the client retries with its key.
    intent_creates()
        .respond_with(intent_created(2 * PRICE))
        .mount(&stripe)
        .await;
    let url = app.url("/api/v1/orders");
    // The dead process's lease on the key runs out (on this app's clock).
    app.advance_clock(Duration::from_secs(2));
    let retry = post_order(app, &url, &shop.buyer, &key, &body).await;
    let status = retry.status();
    assert!(retry.headers().get("idempotent-replayed").is_none());
    let text = retry.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    let resumed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(resumed["id"], left.id.to_string(), "the same order resumed");
    assert_eq!(resumed["status"], "PENDING");
    assert_eq!(resumed["payment"]["clientSecret"], INTENT_SECRET);

    // Both creates carried the order's provider idempotency key, so Stripe
    // made one PaymentIntent.
    let requests = intent_requests(&stripe).await;
    assert_eq!(requests.len(), 2);
    let provider_key = format!("pi-create-{}", left.id);
    for request in &requests {
        assert_eq!(
            header(request, "idempotency-key"),
            Some(provider_key.as_str())
        );
        assert_eq!(
            form_field(request, "metadata[order_id]"),
            Some(left.id.to_string())
        );
        assert_eq!(form_field(request, "amount"), Some((2 * PRICE).to_string()));
    }
    assert_eq!(orders_of(app, shop.buyer.id).await.len(), 1);
    assert_eq!(app.stock_of(shop.item_id).await, STOCK - 2, "reserved once");
    let payment = payment_of(app, left.id).await;
    assert_eq!(payment.provider_payment_id.as_deref(), Some(INTENT_ID));
    assert_eq!(payment.status, PaymentStatus::RequiresPayment);

    // From now on the key replays the finished checkout.
    let replay = post_order(app, &url, &shop.buyer, &key, &body).await;
    assert_eq!(replay.status(), 201);
    assert_eq!(
        replay
            .headers()
            .get("idempotent-replayed")
            .map(|v| v.to_str().unwrap()),
        Some("true")
    );
    let replayed: Value = replay.json().await.unwrap();
    assert_eq!(replayed["id"], left.id.to_string());
    assert_eq!(
        intent_requests(&stripe).await.len(),
        2,
        "a replay asks nobody"
    );
    app.drain_jobs().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_left_in_flight_by_a_killed_process_answers_409_with_the_seconds_its_lease_has_left()
{
    let stripe = MockServer::start().await;
    intent_creates()
        .respond_with(intent_created(2 * PRICE).set_delay(Duration::from_secs(60)))
        .up_to_n_times(1)
        .mount(&stripe)
        .await;
    mount_customers(&stripe).await;
    let mut settings = stripe_settings(&stripe.uri());
    settings.retain(|(name, _)| *name != "IDEMPOTENCY_LEASE");
    settings.push(("IDEMPOTENCY_LEASE", "45s".into()));
    let shop = shop(spawn_app_with(&pairs(&settings)).await).await;
    let app = &shop.app;
    let key = Uuid::new_v4().to_string();
    let body = order_body(shop.item_id, 2);
    checkout_killed_mid_way(&shop, &key, &body, &stripe).await;
    intent_creates()
        .respond_with(intent_created(2 * PRICE))
        .mount(&stripe)
        .await;
    let url = app.url("/api/v1/orders");
    let retry_after = |response: &Response| -> u64 {
        response.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap()
    };

    let early = post_order(app, &url, &shop.buyer, &key, &body).await;
    assert_eq!(early.status(), 409);
    let wait = retry_after(&early);
    assert!(
        (30..=45).contains(&wait),
        "most of the 45 s lease is left: {wait}"
    );
    assert_eq!(problem(early).await["code"], "idempotency_key_in_flight");

    app.advance_clock(Duration::from_secs(40));
    let later = post_order(app, &url, &shop.buyer, &key, &body).await;
    assert_eq!(later.status(), 409);
    assert!(retry_after(&later) <= wait - 30, "the lease ran down");

    // Waiting as told is enough: the key is taken over and the checkout resumes.
    app.advance_clock(Duration::from_secs(retry_after(&later)));
    let resumed = post_order(app, &url, &shop.buyer, &key, &body).await;
    assert_eq!(resumed.status(), 201);
    app.drain_jobs().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_checkout_expires_and_releases_its_stock() {
    let stripe = MockServer::start().await;
    intent_creates()
        .respond_with(intent_created(3 * PRICE).set_delay(Duration::from_secs(60)))
        .mount(&stripe)
        .await;
    mount_customers(&stripe).await;
    let settings = stripe_settings(&stripe.uri());
    let shop = shop(spawn_app_with_workers(&pairs(&settings)).await).await;
    let app = &shop.app;
    let key = Uuid::new_v4().to_string();

    let left = checkout_killed_mid_way(&shop, &key, &order_body(shop.item_id, 3), &stripe).await;
    let id = left.id.to_string();

    // Nobody retries: once the payment timeout has passed (on this app's
    // clock), the order's expiry job cancels it.
    app.advance_clock(app.state.config.order_payment_timeout + Duration::from_secs(1));
    app.wait_for_order_status(&id, "CANCELED").await;
    assert_eq!(app.stock_of(shop.item_id).await, STOCK, "stock released");
    let view = app.staff_order(&shop.admin, &id).await;
    let timeline = view["timeline"].as_array().unwrap();
    let last = timeline.last().unwrap();
    assert_eq!(last["from"], "PENDING");
    assert_eq!(last["to"], "CANCELED");
    assert_eq!(last["actor"], "system");
    assert_eq!(last["reason"], "payment_timeout");

    app.wait_for_jobs_idle().await;
    let payment = payment_of(app, left.id).await;
    assert_eq!(payment.provider_payment_id, None);
    assert_eq!(
        intent_requests(&stripe).await.len(),
        1,
        "nothing asked Stripe again for an abandoned order"
    );
    assert_eq!(app.stock_of(shop.item_id).await, STOCK);
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn a_provider_outage_during_checkout_leaves_no_order_and_no_stock_held() {
    let stripe = MockServer::start().await;
    intent_creates()
        .respond_with(ResponseTemplate::new(500).set_body_json(json!({
            "error": {"type": "api_error", "message": "Stripe is having a bad day"}
        })))
        .mount(&stripe)
        .await;
    let settings = stripe_settings(&stripe.uri());
    let shop = shop(spawn_app_with(&pairs(&settings)).await).await;
    let app = &shop.app;
    let key = Uuid::new_v4().to_string();
    let lines = [(shop.item_id, 3)];

    let refused = app.place_order(&shop.buyer, &lines, &key).await;
    assert_eq!(refused.status(), 503);
    assert_eq!(
        problem(refused).await["code"],
        "payment_provider_unavailable"
    );
    let requests = intent_requests(&stripe).await;
    assert_eq!(requests.len(), 3, "the client tried three times");
    let first_key = header(&requests[0], "idempotency-key").unwrap().to_owned();
    assert!(
        requests
            .iter()
            .all(|r| header(r, "idempotency-key") == Some(first_key.as_str())),
        "its retries reused one provider idempotency key"
    );
    let conn = app.state.db.conn();
    assert_eq!(order::Entity::find().count(conn).await.unwrap(), 0);
    assert_eq!(order_line::Entity::find().count(conn).await.unwrap(), 0);
    assert_eq!(payment::Entity::find().count(conn).await.unwrap(), 0);
    assert_eq!(app.stock_of(shop.item_id).await, STOCK, "no stock held");

    // Stripe is back: the same key goes through.
    stripe.reset().await;
    mount_customers(&stripe).await;
    intent_creates()
        .respond_with(intent_created(3 * PRICE))
        .mount(&stripe)
        .await;
    let placed = app.place_order(&shop.buyer, &lines, &key).await;
    assert_eq!(placed.status(), 201);
    assert!(placed.headers().get("idempotent-replayed").is_none());
    let body: Value = placed.json().await.unwrap();
    assert_eq!(body["payment"]["clientSecret"], INTENT_SECRET);
    assert_eq!(orders_of(app, shop.buyer.id).await.len(), 1);
    assert_eq!(app.stock_of(shop.item_id).await, STOCK - 3);
    assert_eq!(intent_requests(&stripe).await.len(), 1);
    app.drain_jobs().await;
}
