//! The jobs real flows enqueue today: customer sync on registration, change
//! and deletion, and the `auth.login` notification.

use dispatch::{
    jobs::{
        model::job::{self, Entity as Jobs, JobState},
        registry::JobServices,
        worker::{WorkerPool, WorkerSettings},
    },
    notifications::notification::{self, Entity as Notifications},
    payments::gateway::{CustomerDetails, GatewayError},
    users::queries,
};
use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter};
use serde_json::json;
use std::time::Duration;
use uuid::Uuid;

use crate::helpers::{TestApp, eventually, spawn_app_with};

const WAIT: Duration = Duration::from_secs(30);

async fn app_with_workers() -> (TestApp, WorkerPool) {
    let app = spawn_app_with(&[("JOB_POLL_INTERVAL", "200ms")]).await;
    let pool = WorkerPool::start(
        JobServices::from_state(&app.state),
        dispatch::startup::job_registry(),
        WorkerSettings::from_config(&app.state.config),
    );
    (app, pool)
}

async fn customer_of(app: &TestApp, user: Uuid) -> Option<String> {
    queries::find_any(app.state.db.conn(), user)
        .await
        .unwrap()
        .and_then(|u| u.stripe_customer_id)
}

async fn succeeded_syncs(app: &TestApp) -> u64 {
    Jobs::find()
        .filter(job::Column::Kind.eq("payment.customer_sync"))
        .filter(job::Column::State.eq(JobState::Succeeded))
        .count(app.state.db.conn())
        .await
        .unwrap()
}

#[tokio::test]
async fn registering_creates_exactly_one_payment_customer() {
    let (app, pool) = app_with_workers().await;
    let user = app.register_user().await;
    eventually("the customer to be created", WAIT, || async {
        customer_of(&app, user.id).await.is_some()
    })
    .await;
    let customer = customer_of(&app, user.id).await.unwrap();
    assert!(customer.starts_with("cus_sim_"), "{customer}");

    // The job's provider idempotency key maps to that one customer: a second
    // creation (a retried job) gets the same id back.
    let details = CustomerDetails {
        user_id: user.id,
        email: user.email.clone(),
        name: "Test Shopper".into(),
    };
    let again = app
        .state
        .gateway
        .create_customer(&details, &format!("customer-create-{}", user.id))
        .await
        .unwrap();
    assert_eq!(again, customer);
    // Registering also signed in: its `auth.login` notification may still be
    // waiting for a worker when the customer is already there.
    app.wait_for_jobs_idle().await;
    pool.shutdown().await;
}

#[tokio::test]
async fn changing_the_name_syncs_the_customer_and_deleting_the_account_deletes_it() {
    let (app, pool) = app_with_workers().await;
    let user = app.register_user().await;
    eventually("the customer to be created", WAIT, || async {
        customer_of(&app, user.id).await.is_some()
    })
    .await;
    let customer = customer_of(&app, user.id).await.unwrap();

    let renamed = app
        .patch("/api/v1/users/me")
        .bearer_auth(&user.access_token)
        .json(&json!({"name": "Renamed Shopper"}))
        .send()
        .await
        .unwrap();
    assert_eq!(renamed.status(), 200);
    eventually("the update sync to succeed", WAIT, || async {
        succeeded_syncs(&app).await == 2
    })
    .await;

    let deleted = app
        .delete("/api/v1/users/me")
        .bearer_auth(&user.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    eventually("the delete sync to succeed", WAIT, || async {
        succeeded_syncs(&app).await == 3
    })
    .await;
    let details = CustomerDetails {
        user_id: user.id,
        email: user.email.clone(),
        name: "x".into(),
    };
    assert_eq!(
        app.state.gateway.update_customer(&customer, &details).await,
        Err(GatewayError::NotFound),
        "the provider no longer has the customer"
    );
    app.wait_for_jobs_idle().await;
    pool.shutdown().await;
}

#[tokio::test]
async fn each_login_records_one_auth_login_notification() {
    let (app, pool) = app_with_workers().await;
    let user = app.register_user().await; // signs in once
    let second = app.login(&user.email, crate::helpers::PASSWORD).await;
    assert_eq!(second.status(), 200);
    let count = || async {
        Notifications::find()
            .filter(notification::Column::UserId.eq(user.id))
            .filter(notification::Column::Event.eq("auth.login"))
            .count(app.state.db.conn())
            .await
            .unwrap()
    };
    eventually("two login notifications", WAIT, || async {
        count().await == 2
    })
    .await;
    pool.shutdown().await;
    let recorded = Notifications::find()
        .filter(notification::Column::UserId.eq(user.id))
        .all(app.state.db.conn())
        .await
        .unwrap();
    assert!(
        recorded.iter().all(|n| n.data["sessionId"].is_string()),
        "{recorded:?}"
    );
}
