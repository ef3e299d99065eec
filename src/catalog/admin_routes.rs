//! `/api/v1/admin/items`: catalogue management for admins.

use crate::http::whole_number::{optional_whole_number, whole_number};
use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::{Validate, ValidationError};

use super::{
    CACHE_NAMESPACE, invalidate_cache,
    queries::{self, ItemChanges, ItemFilter, NewItem},
    views::AdminItemView,
};
use crate::{
    auth::extract::AuthUser,
    cache::read_through,
    http::{
        error::{ApiError, FieldIssue, Problem},
        extract::{Path, ValidJson, ValidQuery, name_text},
        pagination::{Page, PageRequest},
    },
    idempotency::{self, Claimed, IdempotencyKey},
    money::{Currency, Money},
    state::AppState,
    users::{role::Role, views::present},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_items, create_item))
        .routes(routes!(get_item, update_item, delete_item))
}

/// Largest accepted price, in minor units (ten billion of the currency).
const MAX_PRICE: i64 = 1_000_000_000_000;
const MAX_STOCK: i64 = 1_000_000_000;

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AdminItemListQuery {
    /// Part of the name, any case.
    #[validate(length(min = 1, max = 100, code = "length"))]
    #[param(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    pub in_stock: Option<bool>,
    /// Include soft-deleted items.
    pub include_deleted: Option<bool>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    pub cursor: Option<String>,
}

/// Lists items with their staff fields, newest first.
#[utoipa::path(
    get, path = "/api/v1/admin/items", tag = "admin catalogue", operation_id = "admin_list_items",
    security(("bearer" = [])),
    params(AdminItemListQuery),
    responses(
        (status = 200, description = "A page of items", body = Page<AdminItemView>),
        (status = 400, description = "Malformed filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_items(
    State(state): State<AppState>,
    actor: AuthUser,
    ValidQuery(query): ValidQuery<AdminItemListQuery>,
) -> Result<Json<Page<AdminItemView>>, ApiError> {
    actor.require(Role::is_admin)?;
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let filter = ItemFilter {
        name: query.name,
        in_stock: query.in_stock,
        include_deleted: query.include_deleted.unwrap_or(false),
    };
    let key = format!("admin:{}", filter.cache_key(&page));
    let items = read_through(
        state.cache.as_ref(),
        CACHE_NAMESPACE,
        &key,
        state.config.cache_ttl,
        || queries::list(state.db.conn(), &filter, &page, AdminItemView::from),
    )
    .await?;
    Ok(Json(items))
}

fn currency_code(code: &str) -> Result<(), ValidationError> {
    Currency::parse(code)
        .map(drop)
        .map_err(|_| ValidationError::new("currency"))
}

/// States the configured shop currency in the served OpenAPI document: an
/// item's `currency` must be that code, in any case.
pub fn document_shop_currency(document: &mut utoipa::openapi::OpenApi, shop: Currency) {
    use utoipa::openapi::{RefOr, schema::Schema};
    let either_case: String = shop
        .as_str()
        .chars()
        .map(|c| format!("[{}{}]", c.to_ascii_uppercase(), c))
        .collect();
    let Some(components) = document.components.as_mut() else {
        return;
    };
    if let Some(RefOr::T(Schema::Object(request))) = components.schemas.get_mut("CreateItemRequest")
        && let Some(RefOr::T(Schema::Object(currency))) = request.properties.get_mut("currency")
    {
        currency.pattern = Some(format!("^{either_case}$"));
    }
}

/// An item name: 1 to 200 characters, not blank (stored trimmed).
fn item_name(name: &str) -> Result<(), ValidationError> {
    name_text(name, 1, 200)
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateItemRequest {
    #[validate(custom(function = "item_name"))]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F]*[^\\s\\x00-\\x1F\\x7F][^\\x00-\\x1F\\x7F]*$"
    )]
    pub name: String,
    #[serde(default)]
    #[validate(length(min = 0, max = 5000, code = "length"))]
    #[schema(min_length = 0, max_length = 5000)]
    pub description: String,
    /// Minor units of the shop currency.
    #[validate(range(min = 0, max = 1_000_000_000_000_i64, code = "range"))]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(deserialize_with = "whole_number")]
    pub price: i64,
    /// Must be the shop currency (`SHOP_CURRENCY`); defaults to it.
    #[validate(custom(function = "currency_code"))]
    #[schema(pattern = "^[A-Za-z]{3}$")]
    pub currency: Option<String>,
    #[validate(range(min = 0, max = 1_000_000_000_i64, code = "range"))]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    #[serde(deserialize_with = "whole_number")]
    pub stock: i64,
    /// Stripe price id.
    #[validate(length(min = 1, max = 255, code = "length"))]
    #[schema(min_length = 1, max_length = 255)]
    pub price_payment_id: Option<String>,
}

/// Adds an item to the catalogue.
#[utoipa::path(
    post, path = "/api/v1/admin/items", tag = "admin catalogue",
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Required; a unique value per item to create")),
    request_body = CreateItemRequest,
    responses(
        (status = 201, description = "Created", body = AdminItemView),
        (status = 400, description = "Malformed request or missing Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key is in flight", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid values, other currency, or the key was used with another body", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_item(
    State(state): State<AppState>,
    actor: AuthUser,
    key: IdempotencyKey,
    ValidJson {
        value: body,
        fingerprint,
    }: ValidJson<CreateItemRequest>,
) -> Result<Response, ApiError> {
    actor.require(Role::is_admin)?;
    let shop_currency = state.config.shop_currency;
    // The validator has checked the code's shape; an unreadable one is
    // refused like another currency.
    let currency = body
        .currency
        .as_deref()
        .map_or(Ok(shop_currency), Currency::parse);
    if currency != Ok(shop_currency) {
        return Err(ApiError::validation(Default::default()).with_field(
            "currency",
            FieldIssue::new("shop_currency").with("currency", shop_currency.code()),
        ));
    }
    let claim = match idempotency::claim(
        &state.db,
        &key,
        Some(actor.id),
        &fingerprint,
        state.config.idempotency_lease,
    )
    .await?
    {
        Claimed::Replay(response) => return Ok(response),
        Claimed::Proceed(claim) => claim,
    };
    let txn = state.db.begin_write().await?;
    let item = queries::insert(
        &*txn,
        NewItem {
            name: body.name.trim().to_owned(),
            description: body.description,
            price: Money::new(body.price.min(MAX_PRICE), shop_currency),
            stock: body.stock.min(MAX_STOCK),
            price_payment_id: body.price_payment_id,
        },
    )
    .await?;
    let view = AdminItemView::from(item);
    let response = claim.complete(&*txn, StatusCode::CREATED, &view).await?;
    txn.commit().await?;
    claim.committed();
    invalidate_cache(&state).await;
    tracing::info!(actor.id = %actor.id, item.id = %view.item.id, "item created");
    Ok(response)
}

/// One item with its staff fields (soft-deleted ones too).
#[utoipa::path(
    get, path = "/api/v1/admin/items/{id}", tag = "admin catalogue", operation_id = "admin_get_item",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Item id")),
    responses(
        (status = 200, description = "The item", body = AdminItemView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_item(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<AdminItemView>, ApiError> {
    actor.require(Role::is_admin)?;
    let key = format!("admin:item:{id}");
    let item = read_through(
        state.cache.as_ref(),
        CACHE_NAMESPACE,
        &key,
        state.config.cache_ttl,
        || async {
            Ok::<_, sea_orm::DbErr>(
                queries::find(state.db.conn(), id, true)
                    .await?
                    .map(AdminItemView::from),
            )
        },
    )
    .await?;
    item.map(Json).ok_or_else(ApiError::not_found)
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateItemRequest {
    #[validate(custom(function = "item_name"))]
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\x00-\\x1F\\x7F]*[^\\s\\x00-\\x1F\\x7F][^\\x00-\\x1F\\x7F]*$"
    )]
    pub name: Option<String>,
    #[validate(length(min = 0, max = 5000, code = "length"))]
    #[schema(min_length = 0, max_length = 5000)]
    pub description: Option<String>,
    #[validate(range(min = 0, max = 1_000_000_000_000_i64, code = "range"))]
    #[schema(minimum = 0, maximum = 1_000_000_000_000_i64)]
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub price: Option<i64>,
    /// Sets the stock to this count.
    #[validate(range(min = 0, max = 1_000_000_000_i64, code = "range"))]
    #[schema(minimum = 0, maximum = 1_000_000_000)]
    #[serde(default, deserialize_with = "optional_whole_number")]
    pub stock: Option<i64>,
    /// A Stripe price id; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<String>)]
    pub price_payment_id: Option<Option<String>>,
}

/// Changes a live item.
#[utoipa::path(
    patch, path = "/api/v1/admin/items/{id}", tag = "admin catalogue",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Item id")),
    request_body = UpdateItemRequest,
    responses(
        (status = 200, description = "Updated", body = AdminItemView),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid values", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_item(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<Uuid>,
    ValidJson { value: body, .. }: ValidJson<UpdateItemRequest>,
) -> Result<Json<AdminItemView>, ApiError> {
    actor.require(Role::is_admin)?;
    if let Some(Some(price_id)) = &body.price_payment_id
        && (price_id.is_empty() || price_id.len() > 255)
    {
        return Err(ApiError::validation(Default::default()).with_field(
            "pricePaymentId",
            FieldIssue::new("length").with("min", 1).with("max", 255),
        ));
    }
    let txn = state.db.begin_write().await?;
    let item = queries::find(&*txn, id, false)
        .await?
        .ok_or_else(ApiError::not_found)?;
    let changes = ItemChanges {
        name: body.name.map(|n| n.trim().to_owned()),
        description: body.description,
        price: body.price,
        stock: body.stock,
        price_payment_id: body.price_payment_id,
    };
    let item = queries::update(&*txn, item, changes).await?;
    txn.commit().await?;
    invalidate_cache(&state).await;
    tracing::info!(actor.id = %actor.id, item.id = %id, "item changed");
    Ok(Json(AdminItemView::from(item)))
}

/// Removes an item from the catalogue (soft delete; orders keep their lines).
#[utoipa::path(
    delete, path = "/api/v1/admin/items/{id}", tag = "admin catalogue",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Item id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_item(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    actor.require(Role::is_admin)?;
    let txn = state.db.begin_write().await?;
    let deleted = queries::soft_delete(&*txn, id).await?;
    txn.commit().await?;
    if !deleted {
        return Err(ApiError::not_found());
    }
    invalidate_cache(&state).await;
    tracing::info!(actor.id = %actor.id, item.id = %id, "item deleted");
    Ok(StatusCode::NO_CONTENT)
}
