//! `/api/v1/notifications`: the caller's feed, counts and read marks; the
//! live stream is in [`super::stream`].

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::{
    queries, stream,
    views::{HasNew, NotificationView, ReadAll, UnreadCount},
};
use crate::{
    auth::extract::AuthUser,
    http::{
        error::{ApiError, Problem},
        extract::{Path, ValidQuery},
        pagination::{Page, PageRequest},
    },
    i18n::Lang,
    state::AppState,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(unread_count))
        .routes(routes!(has_new))
        .routes(routes!(mark_read))
        .routes(routes!(mark_all_read))
        .routes(routes!(stream::stream))
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only the unread ones.
    pub unread: Option<bool>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    pub cursor: Option<String>,
}

/// The caller's notifications, newest first, in their language.
#[utoipa::path(
    get, path = "/api/v1/notifications", tag = "notifications",
    security(("bearer" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "A page of notifications", body = Page<NotificationView>),
        (status = 400, description = "Malformed filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list(
    State(state): State<AppState>,
    reader: AuthUser,
    ValidQuery(query): ValidQuery<ListQuery>,
) -> Result<Json<Page<NotificationView>>, ApiError> {
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let rows = queries::list(
        state.db.conn(),
        reader.id,
        query.unread.unwrap_or(false),
        &page,
    )
    .await?;
    let lang = Lang::from(reader.language);
    Ok(Json(rows.map(|row| NotificationView::new(row, lang))))
}

/// How many of the caller's notifications are unread.
#[utoipa::path(
    get, path = "/api/v1/notifications/unread/count", tag = "notifications",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The count", body = UnreadCount),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn unread_count(
    State(state): State<AppState>,
    reader: AuthUser,
) -> Result<Json<UnreadCount>, ApiError> {
    let count = queries::unread_count(state.db.conn(), reader.id).await?;
    Ok(Json(UnreadCount { count }))
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct HasNewQuery {
    /// An instant (RFC 3339), usually the `createdAt` of the newest
    /// notification the client has. Without it: whether anything arrived
    /// since the caller last read, that is, whether any is unread (the
    /// earlier API's parameterless poll).
    pub since: Option<DateTime<Utc>>,
}

/// Whether a notification arrived after `since`, or, without it, whether
/// any is unread (cheap polling).
#[utoipa::path(
    get, path = "/api/v1/notifications/has-new", tag = "notifications",
    security(("bearer" = [])),
    params(HasNewQuery),
    responses(
        (status = 200, description = "The answer", body = HasNew),
        (status = 400, description = "Malformed `since`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn has_new(
    State(state): State<AppState>,
    reader: AuthUser,
    ValidQuery(query): ValidQuery<HasNewQuery>,
) -> Result<Json<HasNew>, ApiError> {
    let has_new = match query.since {
        Some(since) => queries::has_new(state.db.conn(), reader.id, since).await?,
        None => queries::has_unread(state.db.conn(), reader.id).await?,
    };
    Ok(Json(HasNew { has_new }))
}

/// Marks one notification read (reading it again keeps the first time).
#[utoipa::path(
    patch, path = "/api/v1/notifications/{id}/read", tag = "notifications",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "Notification id")),
    responses(
        (status = 200, description = "The notification, read", body = NotificationView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such notification of the caller's", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn mark_read(
    State(state): State<AppState>,
    reader: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<NotificationView>, ApiError> {
    let txn = state.db.begin_write().await?;
    let row = queries::mark_read(&*txn, reader.id, id)
        .await?
        .ok_or_else(ApiError::not_found)?;
    txn.commit().await?;
    Ok(Json(NotificationView::new(row, reader.language.into())))
}

/// Marks all of the caller's notifications read.
#[utoipa::path(
    patch, path = "/api/v1/notifications/read-all", tag = "notifications",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "How many changed", body = ReadAll),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn mark_all_read(
    State(state): State<AppState>,
    reader: AuthUser,
) -> Result<Json<ReadAll>, ApiError> {
    let txn = state.db.begin_write().await?;
    let updated = queries::mark_all_read(&*txn, reader.id).await?;
    txn.commit().await?;
    Ok(Json(ReadAll { updated }))
}
