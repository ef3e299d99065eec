//! Placing an order (docs/spec.md §4.2), in three steps with recovery points:
//!
//! 1. **Reserve** (one transaction): take each item's stock with a
//!    conditional `UPDATE` (never below zero), lines in item-id order so
//!    concurrent orders cannot deadlock; write the order, its lines with
//!    name and price snapshots, its payment (no PaymentIntent yet), the
//!    timeline's first step and the expiry job; record the order id on the
//!    idempotency key as its recovery point.
//! 2. **Ask the provider** for a PaymentIntent, no transaction open, with
//!    the provider idempotency key `pi-create-<order id>`: however often this
//!    step runs for an order, one PaymentIntent exists.
//! 3. **Attach** the PaymentIntent and complete the idempotency key with the
//!    response, in one transaction.
//!
//! A retry with the same key after a crash resumes from the recovery point
//! (step 2 again, same PaymentIntent). If the provider refuses or stays
//! unreachable, the attempt is undone in one transaction (order removed,
//! stock back, key freed) and the client may retry with the same key. An
//! attempt abandoned mid-way is undone by the reconciliation sweep after
//! `ORDER_RECOVERY_AFTER`, and in any case expires with its order.

use crate::http::whole_number::whole_number;
use axum::{http::StatusCode, response::Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::{Validate, ValidationError};

use super::{
    jobs::Expire,
    queries::{self, NewLine, NewOrder, OrderRecord},
    status::OrderStatus,
    transition::{Actor, notify, record_timeline_step},
    views::OrderView,
};
use crate::{
    auth::extract::AuthUser,
    catalog::queries as catalog,
    db::WriteTxn,
    http::error::{ApiError, FieldIssue},
    idempotency::{self, Claim, Claimed, IdempotencyKey},
    jobs::{self, NewJob},
    money::Money,
    notifications::event::NotificationEvent,
    payments::{
        charge_limits::ChargeLimits,
        gateway::{GatewayError, IntentRequest},
        queries as payments,
    },
    state::AppState,
    users::queries as users,
};

pub const MAX_LINES: u64 = 100;
pub const MAX_QUANTITY: i64 = 10_000;

#[derive(Debug, Serialize, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PlaceOrderRequest {
    /// 1 to 100 lines, each item at most once.
    #[validate(
        length(min = 1, max = MAX_LINES, code = "lines"),
        nested,
        custom(function = "distinct_items")
    )]
    #[schema(min_items = 1, max_items = 100)]
    pub items: Vec<OrderLineRequest>,
}

#[derive(Debug, Serialize, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct OrderLineRequest {
    pub item_id: Uuid,
    /// 1 to 10 000.
    #[validate(range(min = 1, max = MAX_QUANTITY, code = "range"))]
    #[schema(minimum = 1, maximum = 10_000)]
    #[serde(deserialize_with = "whole_number")]
    pub quantity: i64,
}

fn distinct_items(lines: &[OrderLineRequest]) -> Result<(), ValidationError> {
    let mut seen = std::collections::HashSet::new();
    if lines.iter().all(|line| seen.insert(line.item_id)) {
        Ok(())
    } else {
        Err(ValidationError::new("duplicate_item"))
    }
}

/// Why a checkout could not go on.
#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("item {item_id} does not exist or is no longer sold")]
    ItemNotFound { index: usize, item_id: Uuid },
    #[error("not enough stock of {name}")]
    InsufficientStock {
        index: usize,
        name: String,
        available: i64,
    },
    /// The total is outside what the provider charges at once (or overflowed).
    #[error("the order total is outside the provider's charge limits")]
    TotalOutOfRange { limits: ChargeLimits, below: bool },
    #[error(transparent)]
    Provider(#[from] GatewayError),
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
}

impl From<CheckoutError> for ApiError {
    fn from(err: CheckoutError) -> Self {
        match err {
            CheckoutError::ItemNotFound { index, item_id } => {
                ApiError::new(StatusCode::NOT_FOUND, "item_not_found")
                    .with("item", item_id)
                    .with_field(
                        format!("items[{index}].itemId"),
                        FieldIssue::new("item_not_found"),
                    )
            }
            CheckoutError::InsufficientStock {
                index,
                name,
                available,
            } => ApiError::new(StatusCode::CONFLICT, "insufficient_stock")
                .with("item", name)
                .with_field(
                    format!("items[{index}].quantity"),
                    FieldIssue::new("insufficient_stock").with("available", available),
                ),
            CheckoutError::TotalOutOfRange { limits, below } => {
                let issue = if below {
                    "below_minimum_charge"
                } else {
                    "above_maximum_charge"
                };
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "order_total_out_of_range")
                    .with("minimum", limits.minimum.minor)
                    .with("maximum", limits.maximum.minor)
                    .with("currency", limits.minimum.currency)
                    .with_field(
                        "items",
                        FieldIssue::new(issue)
                            .with("minimum", limits.minimum.minor)
                            .with("maximum", limits.maximum.minor),
                    )
            }
            CheckoutError::Provider(GatewayError::Unavailable(why)) => {
                tracing::warn!(error = %why, "payment provider unavailable during checkout");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "payment_provider_unavailable",
                )
            }
            CheckoutError::Provider(other) => {
                tracing::warn!(error = %other, "payment provider refused a checkout");
                ApiError::new(StatusCode::BAD_GATEWAY, "payment_provider_unavailable")
            }
            CheckoutError::Database(e) => ApiError::internal(&e),
        }
    }
}

/// Runs the checkout for `key`; answers 201 with the owner's view, or
/// replays the key's stored answer.
pub async fn place_order(
    state: &AppState,
    customer: &AuthUser,
    key: &IdempotencyKey,
    fingerprint: &str,
    request: PlaceOrderRequest,
) -> Result<Response, ApiError> {
    let lease = state.config.idempotency_lease;
    // The usual case, a key never seen: claimed by the reserve transaction
    // itself (one statement fewer, and nothing to free if it rolls back).
    let txn = state.db.begin_write().await?;
    let (
        claim,
        Reserved {
            mut record,
            customer_id,
        },
    ) = match idempotency::claim_in(&*txn, &state.db, key, Some(customer.id), fingerprint, lease)
        .await?
    {
        Some(mut claim) => {
            let reserved = reserve(state, txn, customer.id, &mut claim, &request).await?;
            (claim, reserved)
        }
        None => {
            txn.rollback().await?;
            let claim =
                match idempotency::claim(&state.db, key, Some(customer.id), fingerprint, lease)
                    .await?
                {
                    Claimed::Replay(response) => return Ok(response),
                    Claimed::Proceed(claim) => claim,
                };
            resume_or_reserve(state, customer, claim, &request).await?
        }
    };
    let order_id = record.order.id;
    let needs_intent = record.order.status == OrderStatus::Pending
        && record
            .payment
            .as_ref()
            .is_some_and(|p| p.provider_payment_id.is_none());
    if needs_intent {
        let request = IntentRequest {
            order_id,
            amount: record.order.total_money(),
            customer_id,
        };
        let key = format!("pi-create-{order_id}");
        let intent = match state.gateway.create_payment_intent(&request, &key).await {
            Ok(intent) => intent,
            Err(e) => {
                undo(state, order_id, &claim).await?;
                return Err(CheckoutError::Provider(e).into());
            }
        };
        let txn = state.db.begin_write().await?;
        match payments::attach_intent(&*txn, order_id, &intent).await? {
            Some(payment) => {
                record.payment = Some(payment);
                notify(&txn, &record.order, NotificationEvent::OrderCreated).await?;
            }
            // A concurrent resume attached the same PaymentIntent (and
            // announced the order) first: answer with the order as stored.
            None => record = queries::record(&*txn, record.order).await?,
        }
        let response = claim
            .complete(&*txn, StatusCode::CREATED, &OrderView::owner(record))
            .await?;
        txn.commit().await?;
        claim.committed();
        tracing::info!(order.id = %order_id, "order placed");
        return Ok(response);
    }
    // Resumed after the PaymentIntent was attached, or the order moved on
    // (expired, paid): answer with the order as it is.
    let txn = state.db.begin_write().await?;
    let response = claim
        .complete(&*txn, StatusCode::CREATED, &OrderView::owner(record))
        .await?;
    txn.commit().await?;
    claim.committed();
    Ok(response)
}

/// A key seen before and claimed again: resume the order its earlier
/// attempt made (after a crash), or start afresh (the earlier attempt failed
/// and freed nothing, or its lease ran out before it reserved anything).
async fn resume_or_reserve(
    state: &AppState,
    customer: &AuthUser,
    mut claim: Claim,
    request: &PlaceOrderRequest,
) -> Result<(Claim, Reserved), ApiError> {
    let reserved = match claim.resource_id() {
        Some(order_id) => {
            let Some(order) = queries::find(state.db.conn(), order_id).await? else {
                return Err(ApiError::not_found());
            };
            Reserved {
                record: queries::record(state.db.conn(), order).await?,
                customer_id: users::stripe_customer_id(state.db.conn(), customer.id).await?,
            }
        }
        None => {
            let txn = state.db.begin_write().await?;
            match reserve(state, txn, customer.id, &mut claim, request).await {
                Ok(reserved) => reserved,
                Err(e) => {
                    claim.abandon().await;
                    return Err(e);
                }
            }
        }
    };
    Ok((claim, reserved))
}

/// What step 2 needs: the order as written, and the customer to charge.
struct Reserved {
    record: OrderRecord,
    customer_id: Option<String>,
}

/// Step 1: stock, order, lines, payment, timeline, expiry, recovery point;
/// also reads the customer's Stripe id for step 2. Returns the order as
/// written.
///
/// The read is inside the transaction only to save a pool checkout: sqlx
/// tests every connection it gets back with a round trip of its own, so a
/// statement sent on its own costs two round trips (benchmarks doc, Orders).
async fn reserve(
    state: &AppState,
    txn: WriteTxn,
    user_id: Uuid,
    claim: &mut Claim,
    request: &PlaceOrderRequest,
) -> Result<Reserved, ApiError> {
    let mut wanted: Vec<(usize, &OrderLineRequest)> = request.items.iter().enumerate().collect();
    wanted.sort_by_key(|(_, line)| line.item_id);
    let mut lines = Vec::with_capacity(wanted.len());
    let currency = state.config.shop_currency;
    let limits = ChargeLimits::of(currency);
    let too_large = || CheckoutError::TotalOutOfRange {
        limits,
        below: false,
    };
    let mut total = Money::zero(currency);
    for (index, line) in wanted {
        let Some(item) = catalog::take_stock(&txn, line.item_id, line.quantity).await? else {
            return Err(shortfall(&*txn, index, line.item_id).await?.into());
        };
        // Prices are in the shop currency (the admin API refuses any other),
        // so an order is charged in it, as it always was.
        let unit_price = Money::new(item.price, currency);
        let line_total = unit_price
            .checked_mul(line.quantity)
            .ok_or_else(too_large)?;
        total = total.checked_add(line_total).ok_or_else(too_large)?;
        lines.push(NewLine {
            item_id: item.id,
            item_name: item.name,
            unit_price,
            quantity: line.quantity,
            line_total,
        });
    }
    if !limits.allow(total) {
        // Before any provider call: the provider would refuse this charge
        // on every retry. The transaction (and a new key's claim) rolls back.
        return Err(CheckoutError::TotalOutOfRange {
            limits,
            below: total.minor < limits.minimum.minor,
        }
        .into());
    }
    let order_id = crate::db::new_id();
    let timeout = crate::duration::to_delta(state.config.order_payment_timeout);
    let expires_at = txn.now() + timeout;
    let mut record = queries::insert(
        &*txn,
        NewOrder {
            id: order_id,
            user_id,
            total,
            expires_at,
            lines,
        },
    )
    .await?;
    record.payment =
        Some(payments::insert_payment(&*txn, order_id, state.gateway.provider(), total).await?);
    record_timeline_step(
        &*txn,
        order_id,
        None,
        OrderStatus::Pending,
        Actor::User(user_id),
        None,
    )
    .await?;
    jobs::enqueue(&txn, NewJob::of(&Expire { order_id }).at(expires_at)).await?;
    claim.checkpoint(&*txn, order_id).await?;
    let customer_id = users::stripe_customer_id(&*txn, user_id).await?;
    txn.commit().await?;
    Ok(Reserved {
        record,
        customer_id,
    })
}

/// Why the stock of `item_id` could not be taken.
async fn shortfall(
    conn: &impl sea_orm::ConnectionTrait,
    index: usize,
    item_id: Uuid,
) -> Result<CheckoutError, sea_orm::DbErr> {
    Ok(match catalog::find(conn, item_id, false).await? {
        Some(item) => CheckoutError::InsufficientStock {
            index,
            name: item.name,
            available: item.stock,
        },
        None => CheckoutError::ItemNotFound { index, item_id },
    })
}

/// The provider said no: remove the attempt and free the key, together.
async fn undo(state: &AppState, order_id: Uuid, claim: &Claim) -> Result<(), ApiError> {
    let txn = state.db.begin_write().await?;
    queries::undo_checkout(&txn, order_id).await?;
    claim.release(&*txn).await?;
    txn.commit().await?;
    Ok(())
}
