//! `/api/v1/admin/orders`: staff read orders and act on them, each role on
//! its part of the life cycle (docs/spec.md §3.1, §4.4): financial staff see everything
//! and cancel or refund; shippers see PROCESSED and later and ship;
//! delivery staff see SHIPPED and later and deliver; admins do all. An order
//! a role may not see is 404 to it. Every action is a
//! [`transition`](super::transition::transition).

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::{
    model::order,
    queries::{self, OrderFilter},
    routes::check_window,
    status::OrderStatus,
    transition::{Actor, Change, Notify, Target, TransitionError, transition},
    views::{OrderCustomer, StaffOrderView},
};
use crate::{
    auth::extract::AuthUser,
    http::{
        error::{ApiError, Problem},
        extract::{Path, ValidJson, ValidQuery},
        pagination::{Page, PageRequest},
    },
    state::AppState,
    users::{queries as users, role::Role},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_orders))
        .routes(routes!(get_order, set_status, delete_order))
        .routes(routes!(ship_order))
        .routes(routes!(deliver_order))
        .routes(routes!(cancel_order))
        .routes(routes!(refund_order))
}

impl From<TransitionError> for ApiError {
    fn from(err: TransitionError) -> Self {
        match err {
            TransitionError::NotFound => ApiError::not_found(),
            TransitionError::Invalid { from, to } => {
                ApiError::new(StatusCode::CONFLICT, "invalid_transition")
                    .with("from", from)
                    .with("to", to)
            }
            TransitionError::Conflict { expected } => {
                ApiError::new(StatusCode::CONFLICT, "order_changed").with("status", expected)
            }
            TransitionError::Database(e) => ApiError::internal(&e),
        }
    }
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AdminOrdersQuery {
    pub user_id: Option<Uuid>,
    pub status: Option<OrderStatus>,
    /// Placed at or after this instant (RFC 3339). `startDate` is accepted
    /// as another name (the earlier API's).
    #[serde(alias = "startDate")]
    pub from: Option<DateTime<Utc>>,
    /// Placed before this instant (RFC 3339). `endDate` is accepted as
    /// another name (the earlier API's).
    #[serde(alias = "endDate")]
    pub to: Option<DateTime<Utc>>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    pub cursor: Option<String>,
}

/// Orders the caller's role may see, newest first.
#[utoipa::path(
    get, path = "/api/v1/admin/orders", tag = "admin orders",
    security(("bearer" = [])),
    params(AdminOrdersQuery),
    responses(
        (status = 200, description = "A page of orders", body = Page<StaffOrderView>),
        (status = 400, description = "Malformed filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not staff", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`from` is after `to`", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_orders(
    State(state): State<AppState>,
    staff: AuthUser,
    ValidQuery(query): ValidQuery<AdminOrdersQuery>,
) -> Result<Json<Page<StaffOrderView>>, ApiError> {
    staff.require(Role::is_staff)?;
    check_window(query.from, query.to)?;
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let filter = OrderFilter {
        user_id: query.user_id,
        status: query.status,
        from: query.from,
        to: query.to,
        visible: OrderFilter::visible_to(staff.role),
    };
    let orders = queries::list(state.db.conn(), &filter, &page).await?;
    Ok(Json(orders.map(StaffOrderView::summary)))
}

/// The order if `staff` may see it.
async fn visible_order(
    state: &AppState,
    staff: &AuthUser,
    id: Uuid,
) -> Result<order::Model, ApiError> {
    staff.require(Role::is_staff)?;
    queries::find(state.db.conn(), id)
        .await?
        .filter(|o| o.status.visible_to_staff(staff.role))
        .ok_or_else(ApiError::not_found)
}

/// The full staff view of an order.
async fn full_view(state: &AppState, order: order::Model) -> Result<StaffOrderView, ApiError> {
    let conn = state.db.conn();
    let customer = users::find_any(conn, order.user_id)
        .await?
        .map(|u| OrderCustomer {
            id: u.id,
            name: u.name,
            email: u.email,
        });
    let history = queries::history(conn, order.id).await?;
    let record = queries::record(conn, order).await?;
    Ok(StaffOrderView::full(record, customer, history))
}

/// One order with its customer, payment, refunds and timeline.
#[utoipa::path(
    get, path = "/api/v1/admin/orders/{id}", tag = "admin orders", operation_id = "admin_get_order",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = StaffOrderView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not staff", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or not one the caller's role may see)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_order(
    State(state): State<AppState>,
    staff: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<StaffOrderView>, ApiError> {
    let order = visible_order(&state, &staff, id).await?;
    Ok(Json(full_view(&state, order).await?))
}

/// Performs a staff transition: 200 with the order, or 202 when the
/// payment provider still has to act (refund, PaymentIntent cancel).
async fn act(
    state: &AppState,
    staff: &AuthUser,
    id: Uuid,
    change: Change,
) -> Result<Response, ApiError> {
    if !change.to.status().staff_may_set(staff.role) {
        return Err(ApiError::forbidden());
    }
    visible_order(state, staff, id).await?;
    let txn = state.db.begin_write().await?;
    let done = transition(&txn, id, change).await?;
    txn.commit().await?;
    let mut view = full_view(state, done.order).await?;
    view.pending_payment_action = done.payment_action;
    let status = if done.payment_action.is_some() {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)).into_response())
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ShipRequest {
    #[validate(length(min = 1, max = 100, code = "length"))]
    #[schema(min_length = 1, max_length = 100)]
    pub tracking_number: Option<String>,
    #[validate(length(min = 1, max = 100, code = "length"))]
    #[schema(min_length = 1, max_length = 100)]
    pub carrier: Option<String>,
}

/// PROCESSED → SHIPPED (shipper, admin).
#[utoipa::path(
    patch, path = "/api/v1/admin/orders/{id}/ship", tag = "admin orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    request_body = ShipRequest,
    responses(
        (status = 200, description = "Shipped", body = StaffOrderView),
        (status = 400, description = "Malformed id or body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not a shipper or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or not one the caller's role may see)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order is not PROCESSED (or changed meanwhile)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid values", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn ship_order(
    State(state): State<AppState>,
    staff: AuthUser,
    Path(id): Path<Uuid>,
    ValidJson { value: body, .. }: ValidJson<ShipRequest>,
) -> Result<Response, ApiError> {
    let target = Target::Shipped {
        tracking_number: body.tracking_number.map(|t| t.trim().to_owned()),
        carrier: body.carrier.map(|c| c.trim().to_owned()),
    };
    let change = Change::to(target, Actor::User(staff.id));
    act(&state, &staff, id, change).await
}

/// SHIPPED → DELIVERED (delivery, admin).
#[utoipa::path(
    patch, path = "/api/v1/admin/orders/{id}/deliver", tag = "admin orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "Delivered", body = StaffOrderView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not delivery staff or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or not one the caller's role may see)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order is not SHIPPED (or changed meanwhile)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn deliver_order(
    State(state): State<AppState>,
    staff: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let change = Change::to(Target::Delivered, Actor::User(staff.id));
    act(&state, &staff, id, change).await
}

#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CancelRequest {
    #[validate(length(min = 1, max = 500, code = "length"))]
    #[schema(min_length = 1, max_length = 500)]
    pub reason: Option<String>,
}

/// PENDING, PAID or PROCESSED → CANCELED (financial, admin): stock comes
/// back at once; the PaymentIntent is canceled, or the payment refunded,
/// by a job (202).
#[utoipa::path(
    patch, path = "/api/v1/admin/orders/{id}/cancel", tag = "admin orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    request_body = CancelRequest,
    responses(
        (status = 200, description = "Canceled; nothing left for the provider to do", body = StaffOrderView),
        (status = 202, description = "Canceled; the provider is being asked to cancel or refund the payment", body = StaffOrderView),
        (status = 400, description = "Malformed id or body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not financial staff or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order cannot be canceled from its status (or changed meanwhile)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn cancel_order(
    State(state): State<AppState>,
    staff: AuthUser,
    Path(id): Path<Uuid>,
    ValidJson { value: body, .. }: ValidJson<CancelRequest>,
) -> Result<Response, ApiError> {
    let mut change = Change::to(Target::Canceled, Actor::User(staff.id));
    change.reason = body.reason;
    act(&state, &staff, id, change).await
}

#[derive(Debug, Default, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RefundOrderRequest {
    #[validate(length(min = 1, max = 500, code = "length"))]
    #[schema(min_length = 1, max_length = 500)]
    pub reason: Option<String>,
    /// Put the goods back in stock even if they had left (SHIPPED,
    /// DELIVERED); from PAID and PROCESSED they always come back.
    #[serde(default)]
    pub restock: bool,
}

/// PAID, PROCESSED, SHIPPED or DELIVERED → REFUNDED (financial, admin):
/// the refund itself is made by a job (202).
#[utoipa::path(
    patch, path = "/api/v1/admin/orders/{id}/refund", tag = "admin orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    request_body = RefundOrderRequest,
    responses(
        (status = 202, description = "Refunded; the provider is being asked to return the money", body = StaffOrderView),
        (status = 400, description = "Malformed id or body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not financial staff or admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order cannot be refunded from its status (or changed meanwhile)", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn refund_order(
    State(state): State<AppState>,
    staff: AuthUser,
    Path(id): Path<Uuid>,
    ValidJson { value: body, .. }: ValidJson<RefundOrderRequest>,
) -> Result<Response, ApiError> {
    let target = Target::Refunded {
        restock: body.restock,
    };
    let mut change = Change::to(target, Actor::User(staff.id));
    change.reason = body.reason;
    act(&state, &staff, id, change).await
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct SetStatusRequest {
    /// SHIPPED, DELIVERED, CANCELED or REFUNDED, as the caller's role
    /// allows; the transition and its effects are those of the dedicated
    /// actions.
    pub status: OrderStatus,
}

/// The earlier API's generic status change, limited to the transitions of
/// the life cycle a staff member may trigger.
#[utoipa::path(
    patch, path = "/api/v1/admin/orders/{id}", tag = "admin orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    request_body = SetStatusRequest,
    responses(
        (status = 200, description = "Done", body = StaffOrderView),
        (status = 202, description = "Done; the provider is being asked to cancel or refund the payment", body = StaffOrderView),
        (status = 400, description = "Malformed id or body", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not staff, or its role may not trigger this transition (CANCELED and REFUNDED need financial staff or admin)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order (or not one the caller's role may see)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The life cycle has no such transition from the order's status; PENDING, PAID and PROCESSED are set by the system only, so asking for them is always 409", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn set_status(
    State(state): State<AppState>,
    staff: AuthUser,
    Path(id): Path<Uuid>,
    ValidJson { value: body, .. }: ValidJson<SetStatusRequest>,
) -> Result<Response, ApiError> {
    staff.require(Role::is_staff)?;
    let target = match body.status {
        OrderStatus::Shipped => Target::Shipped {
            tracking_number: None,
            carrier: None,
        },
        OrderStatus::Delivered => Target::Delivered,
        OrderStatus::Canceled => Target::Canceled,
        OrderStatus::Refunded => Target::Refunded { restock: false },
        OrderStatus::Pending | OrderStatus::Paid | OrderStatus::Processed => {
            // The system's transitions: no staff trigger exists for them.
            let order = visible_order(&state, &staff, id).await?;
            return Err(TransitionError::Invalid {
                from: order.status,
                to: body.status,
            }
            .into());
        }
    };
    let mut change = Change::to(target, Actor::User(staff.id)).because("status set by staff");
    // The earlier API's event for this route.
    change.notify = Notify::OwnerOfStatusChange;
    act(&state, &staff, id, change).await
}

/// Soft-deletes an order (admin): only a final one (CANCELED, REFUNDED) or
/// one never paid (PENDING, which is canceled first: its stock comes back).
#[utoipa::path(
    delete, path = "/api/v1/admin/orders/{id}", tag = "admin orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The order is paid and not final", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_order(
    State(state): State<AppState>,
    staff: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    staff.require(Role::is_admin)?;
    // Read and decided inside the transaction, each write guarded by the
    // status it was decided on: an order paid between the read and the
    // cancel is not deletable (409), never canceled and refunded instead.
    let txn = state.db.begin_write().await?;
    let order = queries::find(&*txn, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let not_deletable = |status: OrderStatus| {
        ApiError::new(StatusCode::CONFLICT, "order_not_deletable").with("status", status)
    };
    if order.status == OrderStatus::Pending {
        let mut change = Change::to(Target::Canceled, Actor::User(staff.id)).because("deleted");
        change.expect_from = Some(OrderStatus::Pending);
        match transition(&txn, id, change).await {
            Err(TransitionError::Conflict { .. }) => {
                let now = queries::find(&*txn, id)
                    .await?
                    .map_or(order.status, |o| o.status);
                return Err(not_deletable(now));
            }
            done => done?,
        };
    }
    let deletable = [
        OrderStatus::Pending,
        OrderStatus::Canceled,
        OrderStatus::Refunded,
    ];
    if !queries::soft_delete(&*txn, id, &deletable).await? {
        return Err(not_deletable(order.status));
    }
    txn.commit().await?;
    tracing::info!(actor.id = %staff.id, order.id = %id, "order deleted");
    Ok(StatusCode::NO_CONTENT)
}
