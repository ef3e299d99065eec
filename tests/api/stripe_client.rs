//! The Stripe REST client against a local stand-in for api.stripe.com
//! (wiremock): the shape of every call, how Stripe's answers map to job
//! outcomes (declines permanent and made once, outages retried under the same
//! idempotency key), and a whole order life cycle through the real client.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use dispatch::{
    jobs::{
        JobError,
        model::job::{self, Entity as Jobs, JobState},
    },
    money::{Currency, Money},
    payments::{
        gateway::{
            CustomerDetails, GatewayError, IntentRequest, IntentStatus, PaymentGateway,
            PaymentIntent, ProviderRefund, ProviderRefundStatus, RefundRequest,
        },
        stripe::{STRIPE_VERSION, StripeGateway},
    },
    users::{queries as users, role::Role},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder};
use secrecy::SecretString;
use serde_json::{Value, json};
use uuid::Uuid;
use wiremock::{
    Mock, MockServer, Request, ResponseTemplate,
    matchers::{method, path},
};

use crate::helpers::{TestApp, TestUser, eventually, intent_event, spawn_app_with_workers};

const SECRET_KEY: &str = "sk_test_123";
const WAIT: Duration = Duration::from_secs(20);

// ---------------------------------------------------------------------------
// The client alone.

fn gateway_with_timeout(server: &MockServer, timeout: Duration) -> StripeGateway {
    // reqwest is built without a default rustls provider: without one, building a client panics.
    let _ = rustls::crypto::ring::default_provider().install_default();
    StripeGateway::new(&server.uri(), SecretString::from(SECRET_KEY), timeout)
        .expect("Stripe client")
}

fn gateway(server: &MockServer) -> StripeGateway {
    gateway_with_timeout(server, Duration::from_secs(10))
}

async fn requests(server: &MockServer) -> Vec<Request> {
    server
        .received_requests()
        .await
        .expect("request recording is on")
}

/// The form fields of a request, decoded, in the order sent.
fn form(request: &Request) -> Vec<(String, String)> {
    form_urlencoded::parse(&request.body).into_owned().collect()
}

fn field(request: &Request, name: &str) -> Option<String> {
    form(request)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

fn header<'a>(request: &'a Request, name: &str) -> Option<&'a str> {
    request.headers.get(name).and_then(|v| v.to_str().ok())
}

/// What every call carries: the secret key and the pinned API version.
fn assert_authenticated(request: &Request) {
    assert_eq!(
        header(request, "authorization"),
        Some(format!("Bearer {SECRET_KEY}").as_str()),
        "{} {}",
        request.method,
        request.url
    );
    assert_eq!(header(request, "stripe-version"), Some(STRIPE_VERSION));
    assert_eq!(STRIPE_VERSION, "2024-06-20");
}

fn assert_form_encoded(request: &Request) {
    assert_eq!(
        header(request, "content-type"),
        Some("application/x-www-form-urlencoded")
    );
}

fn assert_no_body(request: &Request) {
    assert!(
        request.body.is_empty(),
        "{} {} has a body",
        request.method,
        request.url
    );
}

fn intent_body(id: &str, status: &str) -> Value {
    json!({
        "id": id,
        "object": "payment_intent",
        "amount": 2_500,
        "currency": "usd",
        "client_secret": format!("{id}_secret_abc"),
        "status": status,
        "livemode": false,
        "metadata": {},
    })
}

fn refund_body(id: &str, status: &str) -> Value {
    json!({
        "id": id,
        "object": "refund",
        "amount": 2_500,
        "currency": "usd",
        "payment_intent": "pi_123",
        "status": status,
    })
}

fn stripe_error(kind: &str, code: &str, message: &str) -> Value {
    json!({"error": {"type": kind, "code": code, "message": message}})
}

fn card_declined() -> ResponseTemplate {
    ResponseTemplate::new(402).set_body_json(stripe_error(
        "card_error",
        "card_declined",
        "Your card was declined.",
    ))
}

fn intent_request(customer: Option<&str>) -> IntentRequest {
    IntentRequest {
        order_id: Uuid::new_v4(),
        amount: Money::new(2_500, Currency::parse("usd").unwrap()),
        customer_id: customer.map(str::to_owned),
    }
}

fn is_retryable(err: &GatewayError) -> bool {
    matches!(JobError::from(err.clone()), JobError::Retryable(_))
}

fn is_permanent(err: &GatewayError) -> bool {
    matches!(JobError::from(err.clone()), JobError::Permanent(_))
}

#[tokio::test]
async fn creating_a_payment_intent_posts_the_form_with_key_version_and_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(intent_body("pi_123", "requires_payment_method")),
        )
        .mount(&server)
        .await;
    let stripe = gateway(&server);

    let request = intent_request(Some("cus_42"));
    let intent = stripe
        .create_payment_intent(&request, "pi-create-key-1")
        .await
        .unwrap();
    assert_eq!(
        intent,
        PaymentIntent {
            id: "pi_123".into(),
            client_secret: Some("pi_123_secret_abc".into()),
            status: IntentStatus::RequiresPayment,
            amount: 2_500,
            currency: "usd".into(),
        }
    );

    let received = requests(&server).await;
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.method.as_str(), "POST");
    assert_eq!(sent.url.path(), "/v1/payment_intents");
    assert_authenticated(sent);
    assert_form_encoded(sent);
    assert_eq!(header(sent, "idempotency-key"), Some("pi-create-key-1"));
    let mut fields = form(sent);
    fields.sort();
    let mut expected = vec![
        ("amount".to_owned(), "2500".to_owned()),
        ("currency".to_owned(), "usd".to_owned()),
        (
            "metadata[order_id]".to_owned(),
            request.order_id.to_string(),
        ),
        (
            "automatic_payment_methods[enabled]".to_owned(),
            "true".to_owned(),
        ),
        ("customer".to_owned(), "cus_42".to_owned()),
    ];
    expected.sort();
    assert_eq!(fields, expected);
}

#[tokio::test]
async fn a_payment_intent_without_a_customer_sends_no_customer_field() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(intent_body("pi_456", "requires_payment_method")),
        )
        .mount(&server)
        .await;

    let request = intent_request(None);
    gateway(&server)
        .create_payment_intent(&request, "pi-create-key-2")
        .await
        .unwrap();

    let received = requests(&server).await;
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(field(sent, "customer"), None, "{:?}", form(sent));
    assert_eq!(field(sent, "amount").as_deref(), Some("2500"));
    assert_eq!(
        field(sent, "metadata[order_id]"),
        Some(request.order_id.to_string())
    );
    assert_eq!(header(sent, "idempotency-key"), Some("pi-create-key-2"));
}

#[tokio::test]
async fn retrieving_a_payment_intent_is_a_get_that_maps_stripe_statuses() {
    let server = MockServer::start().await;
    let cases = [
        (
            "pi_a",
            "requires_payment_method",
            IntentStatus::RequiresPayment,
        ),
        (
            "pi_b",
            "requires_confirmation",
            IntentStatus::RequiresPayment,
        ),
        ("pi_c", "requires_action", IntentStatus::RequiresPayment),
        ("pi_d", "requires_capture", IntentStatus::RequiresPayment),
        ("pi_e", "processing", IntentStatus::Processing),
        ("pi_f", "succeeded", IntentStatus::Succeeded),
        ("pi_g", "canceled", IntentStatus::Canceled),
    ];
    for (id, status, _) in cases {
        Mock::given(method("GET"))
            .and(path(format!("/v1/payment_intents/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(intent_body(id, status)))
            .mount(&server)
            .await;
    }
    let stripe = gateway(&server);

    for (id, stripe_status, expected) in cases {
        let intent = stripe.retrieve_payment_intent(id).await.unwrap();
        assert_eq!(intent.id, id);
        assert_eq!(intent.status, expected, "{stripe_status}");
        assert_eq!(intent.amount, 2_500);
        assert_eq!(intent.currency, "usd");
    }

    let received = requests(&server).await;
    assert_eq!(received.len(), cases.len(), "one request each, no retries");
    for (sent, (id, _, _)) in received.iter().zip(cases) {
        assert_eq!(sent.method.as_str(), "GET");
        assert_eq!(sent.url.path(), format!("/v1/payment_intents/{id}"));
        assert_authenticated(sent);
        assert_no_body(sent);
    }
}

#[tokio::test]
async fn canceling_a_payment_intent_posts_to_its_cancel_path_with_the_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents/pi_123/cancel"))
        .respond_with(ResponseTemplate::new(200).set_body_json(intent_body("pi_123", "canceled")))
        .mount(&server)
        .await;

    let intent = gateway(&server)
        .cancel_payment_intent("pi_123", "pi-cancel-order-1")
        .await
        .unwrap();
    assert_eq!(intent.id, "pi_123");
    assert_eq!(intent.status, IntentStatus::Canceled);

    let received = requests(&server).await;
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.method.as_str(), "POST");
    assert_eq!(sent.url.path(), "/v1/payment_intents/pi_123/cancel");
    assert_authenticated(sent);
    assert_eq!(header(sent, "idempotency-key"), Some("pi-cancel-order-1"));
}

#[tokio::test]
async fn creating_a_refund_posts_the_intent_amount_and_order_with_the_idempotency_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(refund_body("re_1", "succeeded")))
        .mount(&server)
        .await;

    let request = RefundRequest {
        payment_intent_id: "pi_123".into(),
        amount: Money::new(2_500, Currency::parse("usd").unwrap()),
        order_id: Uuid::new_v4(),
    };
    let refund = gateway(&server)
        .create_refund(&request, "refund-abc")
        .await
        .unwrap();
    assert_eq!(
        refund,
        ProviderRefund {
            id: "re_1".into(),
            status: ProviderRefundStatus::Succeeded,
        }
    );

    let received = requests(&server).await;
    assert_eq!(received.len(), 1);
    let sent = &received[0];
    assert_eq!(sent.method.as_str(), "POST");
    assert_eq!(sent.url.path(), "/v1/refunds");
    assert_authenticated(sent);
    assert_form_encoded(sent);
    assert_eq!(header(sent, "idempotency-key"), Some("refund-abc"));
    let mut fields = form(sent);
    fields.sort();
    assert_eq!(
        fields,
        vec![
            ("amount".to_owned(), "2500".to_owned()),
            (
                "metadata[order_id]".to_owned(),
                request.order_id.to_string()
            ),
            ("payment_intent".to_owned(), "pi_123".to_owned()),
        ]
    );
}

#[tokio::test]
async fn retrieving_a_refund_is_a_get_that_maps_stripe_statuses() {
    let server = MockServer::start().await;
    let cases = [
        ("re_a", "pending", ProviderRefundStatus::Pending),
        ("re_b", "requires_action", ProviderRefundStatus::Pending),
        ("re_c", "succeeded", ProviderRefundStatus::Succeeded),
        ("re_d", "failed", ProviderRefundStatus::Failed),
        ("re_e", "canceled", ProviderRefundStatus::Canceled),
    ];
    for (id, status, _) in cases {
        Mock::given(method("GET"))
            .and(path(format!("/v1/refunds/{id}")))
            .respond_with(ResponseTemplate::new(200).set_body_json(refund_body(id, status)))
            .mount(&server)
            .await;
    }
    let stripe = gateway(&server);

    for (id, stripe_status, expected) in cases {
        let refund = stripe.retrieve_refund(id).await.unwrap();
        assert_eq!(refund.id, id);
        assert_eq!(refund.status, expected, "{stripe_status}");
    }

    let received = requests(&server).await;
    assert_eq!(received.len(), cases.len());
    for (sent, (id, _, _)) in received.iter().zip(cases) {
        assert_eq!(sent.method.as_str(), "GET");
        assert_eq!(sent.url.path(), format!("/v1/refunds/{id}"));
        assert_authenticated(sent);
        assert_no_body(sent);
    }
}

#[tokio::test]
async fn customers_are_created_with_an_idempotency_key_then_updated_and_deleted() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(
                json!({"id": "cus_1", "object": "customer", "email": "a@example.com"}),
            ),
        )
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/customers/cus_1"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(json!({"id": "cus_1", "object": "customer"})),
        )
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/customers/cus_1"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "cus_1", "object": "customer", "deleted": true})),
        )
        .mount(&server)
        .await;
    let stripe = gateway(&server);
    let details = CustomerDetails {
        user_id: Uuid::new_v4(),
        email: "a@example.com".into(),
        name: "Ada Lovelace".into(),
    };

    let customer = stripe
        .create_customer(&details, "customer-create-1")
        .await
        .unwrap();
    assert_eq!(customer, "cus_1");
    let renamed = CustomerDetails {
        name: "Ada King".into(),
        ..details.clone()
    };
    stripe.update_customer(&customer, &renamed).await.unwrap();
    stripe.delete_customer(&customer).await.unwrap();

    let received = requests(&server).await;
    assert_eq!(received.len(), 3);
    for sent in &received {
        assert_authenticated(sent);
    }
    let created = &received[0];
    assert_eq!(created.method.as_str(), "POST");
    assert_eq!(created.url.path(), "/v1/customers");
    assert_form_encoded(created);
    assert_eq!(
        header(created, "idempotency-key"),
        Some("customer-create-1")
    );
    assert_eq!(field(created, "email").as_deref(), Some("a@example.com"));
    assert_eq!(field(created, "name").as_deref(), Some("Ada Lovelace"));
    assert_eq!(
        field(created, "metadata[user_id]"),
        Some(details.user_id.to_string())
    );

    let updated = &received[1];
    assert_eq!(updated.method.as_str(), "POST");
    assert_eq!(updated.url.path(), "/v1/customers/cus_1");
    assert_form_encoded(updated);
    assert_eq!(field(updated, "name").as_deref(), Some("Ada King"));
    assert_eq!(field(updated, "email").as_deref(), Some("a@example.com"));

    let deleted = &received[2];
    assert_eq!(deleted.method.as_str(), "DELETE");
    assert_eq!(deleted.url.path(), "/v1/customers/cus_1");
    assert_no_body(deleted);
}

// ---------------------------------------------------------------------------
// Errors, retries and what a job makes of them.

#[tokio::test]
async fn a_card_decline_is_declined_permanent_and_made_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(card_declined())
        .mount(&server)
        .await;

    let err = gateway(&server)
        .create_payment_intent(&intent_request(None), "pi-create-declined")
        .await
        .unwrap_err();
    let GatewayError::Declined(detail) = &err else {
        panic!("expected Declined, got {err:?}");
    };
    assert!(detail.contains("card_declined"), "{detail}");
    assert!(is_permanent(&err), "a decline is never retried by a job");
    assert_eq!(requests(&server).await.len(), 1, "no retry of a decline");
}

#[tokio::test]
async fn an_invalid_request_is_refused_permanent_and_made_once() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(400).set_body_json(stripe_error(
            "invalid_request_error",
            "charge_already_refunded",
            "Charge ch_1 has already been refunded.",
        )))
        .mount(&server)
        .await;

    let request = RefundRequest {
        payment_intent_id: "pi_123".into(),
        amount: Money::new(2_500, Currency::parse("usd").unwrap()),
        order_id: Uuid::new_v4(),
    };
    let err = gateway(&server)
        .create_refund(&request, "refund-invalid")
        .await
        .unwrap_err();
    let GatewayError::Refused(detail) = &err else {
        panic!("expected Refused, got {err:?}");
    };
    assert!(detail.contains("charge_already_refunded"), "{detail}");
    assert!(is_permanent(&err));
    assert_eq!(requests(&server).await.len(), 1, "no retry of a 400");
}

#[tokio::test]
async fn a_missing_object_is_not_found_and_permanent() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/payment_intents/pi_gone"))
        .respond_with(ResponseTemplate::new(404).set_body_json(stripe_error(
            "invalid_request_error",
            "resource_missing",
            "No such payment_intent: 'pi_gone'",
        )))
        .mount(&server)
        .await;

    let err = gateway(&server)
        .retrieve_payment_intent("pi_gone")
        .await
        .unwrap_err();
    assert_eq!(err, GatewayError::NotFound);
    assert!(is_permanent(&err));
    assert_eq!(requests(&server).await.len(), 1);
}

#[tokio::test]
async fn a_server_error_is_tried_three_times_under_one_idempotency_key_then_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(500).set_body_json(stripe_error(
            "api_error",
            "internal",
            "Something went wrong.",
        )))
        .mount(&server)
        .await;

    let err = gateway(&server)
        .create_payment_intent(&intent_request(None), "pi-create-500")
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    assert!(is_retryable(&err), "a job tries again later");
    let received = requests(&server).await;
    assert_eq!(received.len(), 3, "three attempts");
    for sent in &received {
        assert_eq!(header(sent, "idempotency-key"), Some("pi-create-500"));
    }
}

#[tokio::test]
async fn a_server_error_then_success_succeeds_on_the_second_attempt_with_the_same_key() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(intent_body("pi_789", "requires_payment_method")),
        )
        .mount(&server)
        .await;

    let request = intent_request(Some("cus_1"));
    let intent = gateway(&server)
        .create_payment_intent(&request, "pi-create-retry")
        .await
        .unwrap();
    assert_eq!(intent.id, "pi_789");

    let received = requests(&server).await;
    assert_eq!(received.len(), 2);
    for sent in &received {
        assert_eq!(header(sent, "idempotency-key"), Some("pi-create-retry"));
        assert_authenticated(sent);
    }
    assert_eq!(
        form(&received[0]),
        form(&received[1]),
        "the same request again"
    );
}

#[tokio::test]
async fn a_rate_limit_is_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(429).set_body_json(stripe_error(
            "invalid_request_error",
            "rate_limit",
            "Too many requests hit the API too quickly.",
        )))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(refund_body("re_9", "pending")))
        .mount(&server)
        .await;

    let request = RefundRequest {
        payment_intent_id: "pi_123".into(),
        amount: Money::new(2_500, Currency::parse("usd").unwrap()),
        order_id: Uuid::new_v4(),
    };
    let refund = gateway(&server)
        .create_refund(&request, "refund-429")
        .await
        .unwrap();
    assert_eq!(refund.id, "re_9");
    assert_eq!(refund.status, ProviderRefundStatus::Pending);
    let received = requests(&server).await;
    assert_eq!(received.len(), 2);
    for sent in &received {
        assert_eq!(header(sent, "idempotency-key"), Some("refund-429"));
    }
}

#[tokio::test]
async fn a_rate_limit_that_persists_ends_unavailable_after_three_attempts() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/refunds/re_1"))
        .respond_with(ResponseTemplate::new(429))
        .mount(&server)
        .await;

    let err = gateway(&server).retrieve_refund("re_1").await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    assert!(is_retryable(&err));
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn stripe_should_retry_false_on_a_server_error_stops_the_retries() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(500)
                .insert_header("Stripe-Should-Retry", "false")
                .set_body_json(stripe_error("api_error", "internal", "Do not retry.")),
        )
        .mount(&server)
        .await;

    let err = gateway(&server)
        .create_payment_intent(&intent_request(None), "pi-create-no-retry")
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    assert_eq!(requests(&server).await.len(), 1, "Stripe said not to retry");
}

#[tokio::test]
async fn a_timeout_is_tried_three_times_then_unavailable_and_retryable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(intent_body("pi_slow", "requires_payment_method"))
                .set_delay(Duration::from_secs(10)),
        )
        .mount(&server)
        .await;
    let stripe = gateway_with_timeout(&server, Duration::from_millis(300));

    let started = Instant::now();
    let err = stripe
        .create_payment_intent(&intent_request(None), "pi-create-slow")
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    assert!(is_retryable(&err));
    assert!(
        took < Duration::from_secs(5),
        "each attempt is cut off at the timeout, not at the 10 s answer: {took:?}"
    );
    let received = requests(&server).await;
    assert_eq!(received.len(), 3, "three attempts");
    for sent in &received {
        assert_eq!(header(sent, "idempotency-key"), Some("pi-create-slow"));
    }
}

#[tokio::test]
async fn an_unreadable_success_body_is_unavailable() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>gateway says hi</html>"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/refunds/re_1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "re_1"})))
        .mount(&server)
        .await;
    let stripe = gateway(&server);

    let err = stripe
        .create_payment_intent(&intent_request(None), "pi-create-html")
        .await
        .unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    assert!(is_retryable(&err));

    // Valid JSON missing a field we need is unreadable too.
    let err = stripe.retrieve_refund("re_1").await.unwrap_err();
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
}

// ---------------------------------------------------------------------------
// A whole order through the real client.

struct StripeShop {
    server: MockServer,
    app: TestApp,
    admin: TestUser,
    buyer: TestUser,
    item: Uuid,
}

/// The mocks every order needs: customer creation (registration syncs a
/// customer) and PaymentIntent creation (answering with the amount and
/// currency asked for; the first PaymentIntent is `pi_123`).
async fn mount_customer_and_intent(server: &MockServer) {
    Mock::given(method("POST"))
        .and(path("/v1/customers"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({"id": "cus_123", "object": "customer"})),
        )
        .mount(server)
        .await;
    let created = AtomicUsize::new(0);
    Mock::given(method("POST"))
        .and(path("/v1/payment_intents"))
        .respond_with(move |request: &Request| {
            let id = match created.fetch_add(1, Ordering::SeqCst) {
                0 => "pi_123".to_owned(),
                n => format!("pi_123_{n}"),
            };
            let amount: i64 = field(request, "amount")
                .and_then(|a| a.parse().ok())
                .unwrap_or_default();
            let currency = field(request, "currency").unwrap_or_default();
            ResponseTemplate::new(200).set_body_json(json!({
                "client_secret": format!("{id}_secret_xyz"),
                "id": id,
                "object": "payment_intent",
                "amount": amount,
                "currency": currency,
                "status": "requires_payment_method",
            }))
        })
        .mount(server)
        .await;
}

/// An app on the Stripe gateway pointed at `server`, with workers, an admin,
/// a registered buyer whose customer sync went through, and an item
/// (1 250 a piece, 10 in stock).
async fn stripe_shop(server: MockServer) -> StripeShop {
    let base = server.uri();
    let app = spawn_app_with_workers(&[
        ("PAYMENT_GATEWAY", "stripe"),
        ("STRIPE_API_BASE", &base),
        ("STRIPE_SECRET_KEY", SECRET_KEY),
    ])
    .await;
    assert_eq!(app.state.gateway.provider(), "stripe");
    let admin = app.create_user_with_role(Role::Admin).await;
    let buyer = app.register_user().await;
    let db = app.state.db.clone();
    eventually("the buyer's Stripe customer", WAIT, || {
        let db = db.clone();
        async move {
            users::find_any(db.conn(), buyer.id)
                .await
                .ok()
                .flatten()
                .and_then(|u| u.stripe_customer_id)
                .is_some_and(|c| c == "cus_123")
        }
    })
    .await;
    let item = app.create_item(&admin, "Lamp", 1_250, 10).await["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    StripeShop {
        server,
        app,
        admin,
        buyer,
        item,
    }
}

/// Places an order of two lamps, pays it by webhook and waits until it is
/// PROCESSED. Returns its id.
async fn processed_order(shop: &StripeShop) -> String {
    let order = shop.app.placed_order(&shop.buyer, &[(shop.item, 2)]).await;
    let id = order["id"].as_str().unwrap().to_owned();
    let intent = shop.app.intent_of(&id).await;
    let paid = shop
        .app
        .send_webhook(&intent_event(
            "payment_intent.succeeded",
            &intent,
            &id,
            2_500,
        ))
        .await;
    assert_eq!(paid.status(), 200);
    shop.app.wait_for_order_status(&id, "PROCESSED").await;
    id
}

async fn refund(shop: &StripeShop, id: &str) -> Value {
    let response = shop
        .app
        .patch(&format!("/api/v1/admin/orders/{id}/refund"))
        .bearer_auth(&shop.admin.access_token)
        .json(&json!({"restock": false}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "the refund itself is a job");
    response.json().await.unwrap()
}

async fn stripe_requests_to(server: &MockServer, verb: &str, at: &str) -> Vec<Request> {
    requests(server)
        .await
        .into_iter()
        .filter(|r| r.method.as_str() == verb && r.url.path() == at)
        .collect()
}

async fn refund_jobs(app: &TestApp) -> Vec<job::Model> {
    Jobs::find()
        .filter(job::Column::Kind.eq("order.refund"))
        .order_by_asc(job::Column::CreatedAt)
        .all(app.state.db.conn())
        .await
        .unwrap()
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
async fn an_order_lives_from_placement_to_refund_through_the_stripe_client() {
    let server = MockServer::start().await;
    mount_customer_and_intent(&server).await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(ResponseTemplate::new(200).set_body_json(refund_body("re_123", "succeeded")))
        .mount(&server)
        .await;
    let shop = stripe_shop(server).await;
    let app = &shop.app;

    // Registration made the customer, with its idempotency key.
    let customers = stripe_requests_to(&shop.server, "POST", "/v1/customers").await;
    assert_eq!(customers.len(), 1);
    assert_eq!(
        header(&customers[0], "idempotency-key"),
        Some(format!("customer-create-{}", shop.buyer.id).as_str())
    );
    assert_eq!(
        field(&customers[0], "email").as_deref(),
        Some(shop.buyer.email.as_str())
    );

    // Placing the order creates the PaymentIntent; the owner gets its secret.
    let response = app
        .place_order(&shop.buyer, &[(shop.item, 2)], &Uuid::new_v4().to_string())
        .await;
    assert_eq!(response.status(), 201);
    let order: Value = response.json().await.unwrap();
    let id = order["id"].as_str().unwrap().to_owned();
    assert_eq!(order["status"], "PENDING");
    assert_eq!(order["total"], 2_500);
    assert_eq!(order["payment"]["clientSecret"], "pi_123_secret_xyz");
    assert_eq!(app.intent_of(&id).await, "pi_123");
    assert_eq!(app.stock_of(shop.item).await, 8);
    let intents = stripe_requests_to(&shop.server, "POST", "/v1/payment_intents").await;
    assert_eq!(intents.len(), 1);
    let intent = &intents[0];
    assert_authenticated(intent);
    assert_form_encoded(intent);
    assert_eq!(
        header(intent, "idempotency-key"),
        Some(format!("pi-create-{id}").as_str())
    );
    assert_eq!(field(intent, "amount").as_deref(), Some("2500"));
    assert_eq!(field(intent, "currency").as_deref(), Some("usd"));
    assert_eq!(field(intent, "metadata[order_id]"), Some(id.clone()));
    assert_eq!(field(intent, "customer").as_deref(), Some("cus_123"));
    assert_eq!(
        field(intent, "automatic_payment_methods[enabled]").as_deref(),
        Some("true")
    );

    // Stripe's signed event pays it; the process job takes it on.
    let paid = app
        .send_webhook(&intent_event(
            "payment_intent.succeeded",
            "pi_123",
            &id,
            2_500,
        ))
        .await;
    assert_eq!(paid.status(), 200);
    app.wait_for_order_status(&id, "PROCESSED").await;

    let shipped = app
        .staff_action(&shop.admin, &id, "ship", json!({"trackingNumber": "1Z"}))
        .await;
    assert_eq!(shipped["status"], "SHIPPED");
    assert_eq!(shipped["trackingNumber"], "1Z");
    let delivered = app
        .staff_action(&shop.admin, &id, "deliver", json!({}))
        .await;
    assert_eq!(delivered["status"], "DELIVERED");

    // The refund: 202 at once, then the job asks Stripe.
    let refunded = refund(&shop, &id).await;
    assert_eq!(refunded["status"], "REFUNDED");
    assert_eq!(refunded["pendingPaymentAction"], "refund");
    eventually("the refund to succeed at Stripe", WAIT, || async {
        app.staff_order(&shop.admin, &id).await["refunds"][0]["status"] == "succeeded"
    })
    .await;
    let view = app.staff_order(&shop.admin, &id).await;
    assert_eq!(view["status"], "REFUNDED");
    assert_eq!(view["payment"]["status"], "refunded");
    let refunds = view["refunds"].as_array().unwrap();
    assert_eq!(refunds.len(), 1);
    assert_eq!(refunds[0]["amount"], 2_500);

    let calls = stripe_requests_to(&shop.server, "POST", "/v1/refunds").await;
    assert_eq!(calls.len(), 1, "one refund call");
    let call = &calls[0];
    assert_authenticated(call);
    assert_form_encoded(call);
    let key = header(call, "idempotency-key").unwrap();
    assert!(key.starts_with("refund-"), "{key}");
    assert_eq!(
        key,
        format!("refund-{}", refunds[0]["id"].as_str().unwrap())
    );
    assert_eq!(field(call, "payment_intent").as_deref(), Some("pi_123"));
    assert_eq!(field(call, "amount").as_deref(), Some("2500"));
    assert_eq!(field(call, "metadata[order_id]"), Some(id.clone()));
    // The job's success is written after its effects (batched by the pool).
    app.wait_for_jobs_idle().await;
    let jobs = refund_jobs(app).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, JobState::Succeeded);
    assert_eq!(jobs[0].attempt, 1);

    let buyer = shop.buyer.id.to_string();
    let admin = shop.admin.id.to_string();
    assert_eq!(
        timeline(&view),
        vec![
            (None, "PENDING".into(), buyer),
            (Some("PENDING".into()), "PAID".into(), "webhook".into()),
            (Some("PAID".into()), "PROCESSED".into(), "job".into()),
            (Some("PROCESSED".into()), "SHIPPED".into(), admin.clone()),
            (Some("SHIPPED".into()), "DELIVERED".into(), admin.clone()),
            (Some("DELIVERED".into()), "REFUNDED".into(), admin),
        ]
    );
    assert_eq!(
        app.stock_of(shop.item).await,
        8,
        "delivered goods refunded without restock stay out of stock"
    );
    shop.app.drain_jobs().await;
}

#[tokio::test]
async fn a_declined_refund_fails_its_job_at_once_and_marks_the_refund_failed() {
    let server = MockServer::start().await;
    mount_customer_and_intent(&server).await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(card_declined())
        .mount(&server)
        .await;
    let shop = stripe_shop(server).await;
    let app = &shop.app;
    let id = processed_order(&shop).await;

    refund(&shop, &id).await;
    let db = app.state.db.clone();
    eventually("the refund job to fail", WAIT, || {
        let db = db.clone();
        async move {
            Jobs::find()
                .filter(job::Column::Kind.eq("order.refund"))
                .filter(job::Column::State.eq(JobState::Failed))
                .one(db.conn())
                .await
                .ok()
                .flatten()
                .is_some()
        }
    })
    .await;

    let jobs = refund_jobs(app).await;
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].state, JobState::Failed);
    assert_eq!(
        jobs[0].attempt, 1,
        "a decline is permanent: no second attempt"
    );
    let error = jobs[0].last_error.clone().unwrap_or_default();
    assert!(error.contains("declined"), "{error}");
    assert_eq!(
        stripe_requests_to(&shop.server, "POST", "/v1/refunds")
            .await
            .len(),
        1,
        "the client does not retry a decline either"
    );
    let view = app.staff_order(&shop.admin, &id).await;
    assert_eq!(view["refunds"][0]["status"], "failed");
    assert_eq!(
        view["payment"]["status"], "succeeded",
        "the money was not returned"
    );
    app.drain_jobs().await;
    app.expect_leftover_jobs(&["order.refund"]);
}

#[tokio::test]
async fn a_second_declined_refund_is_recorded_failed_too() {
    let server = MockServer::start().await;
    mount_customer_and_intent(&server).await;
    Mock::given(method("POST"))
        .and(path("/v1/refunds"))
        .respond_with(card_declined())
        .mount(&server)
        .await;
    let shop = stripe_shop(server).await;
    let app = &shop.app;

    // A declined refund has no Stripe refund id; two of them (on two
    // orders) must both be recorded.
    let mut orders = Vec::new();
    for _ in 0..2 {
        let id = processed_order(&shop).await;
        refund(&shop, &id).await;
        orders.push(id);
        let expected = orders.len();
        eventually("the refund job's first attempt to end", WAIT, || async {
            let jobs = refund_jobs(app).await;
            jobs.len() == expected
                && jobs
                    .iter()
                    .all(|j| j.attempt >= 1 && j.state != JobState::Running)
        })
        .await;
    }

    for job in refund_jobs(app).await {
        assert_eq!(job.state, JobState::Failed, "{:?}", job.last_error);
        assert_eq!(job.attempt, 1, "{:?}", job.last_error);
    }
    for id in &orders {
        let view = app.staff_order(&shop.admin, id).await;
        assert_eq!(view["refunds"][0]["status"], "failed", "order {id}");
    }
    app.drain_jobs().await;
    app.expect_leftover_jobs(&["order.refund"]);
}
