//! `payment.customer_sync`: keeps the provider's customer of a user in step
//! with the account (created at registration, updated when the name or email
//! changes, deleted with the account).
//!
//! It lives in `users` (not `payments`) because it is the account's side of
//! the provider: it reads the user, asks the gateway, and writes the user's
//! `stripe_customer_id`; `payments` stays the provider side only and never
//! imports a domain that imports it.
//!
//! Idempotent: creation uses the provider idempotency key
//! `customer-create-<user id>` and stores the id with a conditional write, so
//! a retried or duplicated job never makes a second customer.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{queries as users, user};
use crate::{
    jobs::{Job, JobContext, JobError, JobOptions, Queue},
    payments::gateway::{CustomerDetails, GatewayError},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncAction {
    Create,
    Update,
    Delete,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerSync {
    pub user_id: Uuid,
    pub action: SyncAction,
}

impl CustomerSync {
    pub fn new(user_id: Uuid, action: SyncAction) -> Self {
        Self { user_id, action }
    }
}

#[async_trait]
impl Job for CustomerSync {
    const KIND: &'static str = "payment.customer_sync";
    const QUEUE: Queue = Queue::Payments;

    fn options() -> JobOptions {
        JobOptions {
            max_attempts: 8,
            ..JobOptions::default()
        }
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let Some(account) = users::find_any(ctx.db.conn(), self.user_id).await? else {
            return Ok(()); // never existed here: nothing to mirror
        };
        if account.deleted_at.is_some() || self.action == SyncAction::Delete {
            return delete_customer(ctx, &account).await;
        }
        let details = CustomerDetails {
            user_id: account.id,
            email: account.email.clone(),
            name: account.name.clone(),
        };
        match (&account.stripe_customer_id, self.action) {
            (Some(customer), SyncAction::Update) => {
                match ctx.gateway.update_customer(customer, &details).await {
                    Err(GatewayError::NotFound) => create_customer(ctx, &account, &details).await,
                    other => Ok(other?),
                }
            }
            (Some(_), _) => Ok(()),
            (None, _) => create_customer(ctx, &account, &details).await,
        }
    }
}

async fn create_customer(
    ctx: &JobContext,
    account: &user::Model,
    details: &CustomerDetails,
) -> Result<(), JobError> {
    let key = format!("customer-create-{}", account.id);
    let customer = ctx.gateway.create_customer(details, &key).await?;
    let txn = ctx.db.begin_write().await?;
    users::set_stripe_customer_id(&*txn, account.id, &customer).await?;
    txn.commit().await?;
    // Deleted while we were creating: take the customer down again.
    if users::find_any(ctx.db.conn(), account.id)
        .await?
        .is_some_and(|u| u.deleted_at.is_some())
    {
        return forget(ctx, &customer).await;
    }
    tracing::info!(user.id = %account.id, "payment customer created");
    Ok(())
}

async fn delete_customer(ctx: &JobContext, account: &user::Model) -> Result<(), JobError> {
    match &account.stripe_customer_id {
        Some(customer) => forget(ctx, customer).await,
        None => Ok(()),
    }
}

async fn forget(ctx: &JobContext, customer: &str) -> Result<(), JobError> {
    match ctx.gateway.delete_customer(customer).await {
        Ok(()) | Err(GatewayError::NotFound) => Ok(()),
        Err(e) => Err(e.into()),
    }
}
