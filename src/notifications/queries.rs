//! Queries on `notifications`, always scoped to one user: another user's
//! notification is indistinguishable from a missing one.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, Condition, ConnectionTrait, DbErr, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use super::notification::{self, Entity as Notifications};
use crate::pagination::{Cursor, Page, PageRequest};

fn of_user(user_id: Uuid) -> sea_orm::Select<Notifications> {
    Notifications::find().filter(notification::Column::UserId.eq(user_id))
}

/// A page of the user's notifications, newest first.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    unread_only: bool,
    page: &PageRequest,
) -> Result<Page<notification::Model>, DbErr> {
    let mut select = of_user(user_id);
    if unread_only {
        select = select.filter(notification::Column::ReadAt.is_null());
    }
    let rows = page
        .apply(
            select,
            notification::Column::CreatedAt,
            notification::Column::Id,
        )
        .all(conn)
        .await?;
    Ok(page.finish(
        rows,
        |n| Cursor {
            created_at: n.created_at,
            id: n.id,
        },
        |n| n,
    ))
}

pub async fn unread_count<C: ConnectionTrait>(conn: &C, user_id: Uuid) -> Result<u64, DbErr> {
    of_user(user_id)
        .filter(notification::Column::ReadAt.is_null())
        .count(conn)
        .await
}

/// Whether anything arrived after `since`.
pub async fn has_new<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    since: DateTime<Utc>,
) -> Result<bool, DbErr> {
    Ok(of_user(user_id)
        .filter(notification::Column::CreatedAt.gt(since))
        .limit(1)
        .one(conn)
        .await?
        .is_some())
}

/// Whether any notification is unread: what "new since I last read" means.
pub async fn has_unread<C: ConnectionTrait>(conn: &C, user_id: Uuid) -> Result<bool, DbErr> {
    Ok(of_user(user_id)
        .filter(notification::Column::ReadAt.is_null())
        .limit(1)
        .one(conn)
        .await?
        .is_some())
}

pub async fn find<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<notification::Model>, DbErr> {
    of_user(user_id)
        .filter(notification::Column::Id.eq(id))
        .one(conn)
        .await
}

/// Marks one notification read (keeping the first read time); `None` if
/// the user has no such notification.
pub async fn mark_read<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    id: Uuid,
) -> Result<Option<notification::Model>, DbErr> {
    Notifications::update_many()
        .col_expr(notification::Column::ReadAt, Expr::value(crate::db::now()))
        .filter(notification::Column::Id.eq(id))
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::ReadAt.is_null())
        .exec(conn)
        .await?;
    find(conn, user_id, id).await
}

/// Marks every unread notification of the user read; how many changed.
pub async fn mark_all_read<C: ConnectionTrait>(conn: &C, user_id: Uuid) -> Result<u64, DbErr> {
    Ok(Notifications::update_many()
        .col_expr(notification::Column::ReadAt, Expr::value(crate::db::now()))
        .filter(notification::Column::UserId.eq(user_id))
        .filter(notification::Column::ReadAt.is_null())
        .exec(conn)
        .await?
        .rows_affected)
}

/// The user's notifications after `cursor`, oldest first (stream replay).
pub async fn after<C: ConnectionTrait>(
    conn: &C,
    user_id: Uuid,
    cursor: Cursor,
    limit: u64,
) -> Result<Vec<notification::Model>, DbErr> {
    of_user(user_id)
        .filter(
            Condition::any()
                .add(notification::Column::CreatedAt.gt(cursor.created_at))
                .add(
                    Condition::all()
                        .add(notification::Column::CreatedAt.eq(cursor.created_at))
                        .add(notification::Column::Id.gt(cursor.id)),
                ),
        )
        .order_by_asc(notification::Column::CreatedAt)
        .order_by_asc(notification::Column::Id)
        .limit(limit)
        .all(conn)
        .await
}

/// Removes read notifications older than `before` (`notification.cleanup`).
pub async fn delete_read_before<C: ConnectionTrait>(
    conn: &C,
    before: DateTime<Utc>,
) -> Result<u64, DbErr> {
    Ok(Notifications::delete_many()
        .filter(notification::Column::ReadAt.is_not_null())
        .filter(notification::Column::CreatedAt.lt(before))
        .exec(conn)
        .await?
        .rows_affected)
}
