//! `/api/v1/orders`: a shopper places orders and reads their own.

use axum::{Json, extract::State, response::Response};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::{
    place::{PlaceOrderRequest, place_order},
    queries::{self, OrderFilter},
    status::OrderStatus,
    views::OrderView,
};
use crate::{
    auth::extract::AuthUser,
    http::{
        error::{ApiError, FieldIssue, Problem},
        extract::{ClientIp, Path, ValidJson, ValidQuery},
        pagination::{Page, PageRequest},
    },
    idempotency::IdempotencyKey,
    rate_limit::{Limit, check_ip_and_account},
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create_order))
        .routes(routes!(my_orders))
        .routes(routes!(get_order))
}

/// Places an order: reserves the stock and creates the payment.
///
/// Answers 201 with the order and `payment.clientSecret` (confirm it with
/// Stripe.js; the order becomes PAID when the provider says so). The same
/// `Idempotency-Key` with the same body replays the answer, and resumes an
/// attempt that was interrupted; a failed attempt (502/503) holds no stock
/// and may be retried with the same key.
#[utoipa::path(
    post, path = "/api/v1/orders", tag = "orders",
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Required; one value per order")),
    request_body = PlaceOrderRequest,
    responses(
        (status = 201, description = "Order placed, waiting for payment", body = OrderView),
        (status = 400, description = "Malformed body or missing Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "An item does not exist or is no longer sold", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not enough stock of an item, or the key is in flight", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid lines (count, quantity, duplicate item), a total outside the provider's charge limits (`order_total_out_of_range`), or the key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many orders", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The payment provider refused; nothing is held, retry with the same key", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "The payment provider is unreachable; nothing is held, retry with the same key", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_order(
    State(state): State<AppState>,
    customer: AuthUser,
    ClientIp(ip): ClientIp,
    key: IdempotencyKey,
    ValidJson {
        value: body,
        fingerprint,
    }: ValidJson<PlaceOrderRequest>,
) -> Result<Response, ApiError> {
    let account = customer.id.to_string();
    check_ip_and_account(
        state.rate_limiter.as_ref(),
        Limit::Orders,
        ip,
        Some(&account),
    )
    .await?;
    place_order(&state, &customer, &key, &fingerprint, body).await
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct MyOrdersQuery {
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

/// Checks that a `from`/`to` window is not inverted.
pub fn check_window(
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> Result<(), ApiError> {
    match (from, to) {
        (Some(from), Some(to)) if from > to => Err(ApiError::validation(Default::default())
            .with_field("from", FieldIssue::new("after_to"))),
        _ => Ok(()),
    }
}

/// The caller's orders, newest first.
#[utoipa::path(
    get, path = "/api/v1/orders/me", tag = "orders",
    security(("bearer" = [])),
    params(MyOrdersQuery),
    responses(
        (status = 200, description = "A page of the caller's orders", body = Page<OrderView>),
        (status = 400, description = "Malformed filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`from` is after `to`", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn my_orders(
    State(state): State<AppState>,
    customer: AuthUser,
    ValidQuery(query): ValidQuery<MyOrdersQuery>,
) -> Result<Json<Page<OrderView>>, ApiError> {
    check_window(query.from, query.to)?;
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let filter = OrderFilter {
        user_id: Some(customer.id),
        status: query.status,
        from: query.from,
        to: query.to,
        visible: None,
    };
    let orders = queries::list(state.db.conn(), &filter, &page).await?;
    Ok(Json(orders.map(OrderView::owner)))
}

/// One of the caller's orders (anyone else's is 404).
#[utoipa::path(
    get, path = "/api/v1/orders/{id}", tag = "orders",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Order id")),
    responses(
        (status = 200, description = "The order", body = OrderView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such order of the caller's", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_order(
    State(state): State<AppState>,
    customer: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<OrderView>, ApiError> {
    let order = queries::find(state.db.conn(), id)
        .await?
        .filter(|o| o.user_id == customer.id)
        .ok_or_else(ApiError::not_found)?;
    let record = queries::record(state.db.conn(), order).await?;
    Ok(Json(OrderView::owner(record)))
}
