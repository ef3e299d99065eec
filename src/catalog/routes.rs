//! `/api/v1/items`: the public catalogue, read through the cache.

use axum::{Json, extract::State};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::{
    CACHE_NAMESPACE,
    queries::{self, ItemFilter},
    views::ItemView,
};
use crate::{
    cache::read_through,
    http::{
        error::{ApiError, Problem},
        extract::{Path, ValidQuery},
        pagination::{Page, PageRequest},
    },
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_items))
        .routes(routes!(get_item))
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ItemListQuery {
    /// Part of the name, any case.
    #[validate(length(min = 1, max = 100, code = "length"))]
    #[param(min_length = 1, max_length = 100)]
    pub name: Option<String>,
    /// `true`: only items in stock; `false`: only sold-out items.
    pub in_stock: Option<bool>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Lists live items, newest first.
#[utoipa::path(
    get, path = "/api/v1/items", tag = "catalogue",
    params(ItemListQuery),
    responses(
        (status = 200, description = "A page of items", body = Page<ItemView>),
        (status = 400, description = "Malformed filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Out-of-range filter", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_items(
    State(state): State<AppState>,
    ValidQuery(query): ValidQuery<ItemListQuery>,
) -> Result<Json<Page<ItemView>>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let filter = ItemFilter {
        name: query.name,
        in_stock: query.in_stock,
        include_deleted: false,
    };
    let key = format!("public:{}", filter.cache_key(&page));
    let items = read_through(
        state.cache.as_ref(),
        CACHE_NAMESPACE,
        &key,
        state.config.cache_ttl,
        || queries::list(state.db.conn(), &filter, &page, ItemView::from),
    )
    .await?;
    Ok(Json(items))
}

/// One live item.
#[utoipa::path(
    get, path = "/api/v1/items/{id}", tag = "catalogue",
    params(("id" = Uuid, Path, description = "Item id")),
    responses(
        (status = 200, description = "The item", body = ItemView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such item", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_item(
    State(state): State<AppState>,
    Path(id): Path<Uuid>,
) -> Result<Json<ItemView>, ApiError> {
    let key = format!("public:item:{id}");
    let item = read_through(
        state.cache.as_ref(),
        CACHE_NAMESPACE,
        &key,
        state.config.cache_ttl,
        || async {
            Ok::<_, sea_orm::DbErr>(
                queries::find(state.db.conn(), id, false)
                    .await?
                    .map(ItemView::from),
            )
        },
    )
    .await?;
    item.map(Json).ok_or_else(ApiError::not_found)
}
