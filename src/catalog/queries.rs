//! Queries on items.

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::item::{self, Entity as Items};
use crate::{
    db::{WriteTxn, contains_folded},
    money::Money,
    pagination::{Cursor, Page, PageRequest},
};

/// Filters of item lists.
#[derive(Debug, Default, Clone)]
pub struct ItemFilter {
    pub name: Option<String>,
    pub in_stock: Option<bool>,
    /// Staff only: include soft-deleted items.
    pub include_deleted: bool,
}

impl ItemFilter {
    /// A stable text form, part of the cache key of a list page.
    pub fn cache_key(&self, page: &PageRequest) -> String {
        format!(
            "list:name={}:in_stock={:?}:deleted={}:limit={}:after={}",
            self.name.as_deref().unwrap_or_default(),
            self.in_stock,
            self.include_deleted,
            page.limit,
            page.after.map(|c| c.encode()).unwrap_or_default(),
        )
    }
}

pub async fn find<C: ConnectionTrait>(
    conn: &C,
    id: Uuid,
    include_deleted: bool,
) -> Result<Option<item::Model>, DbErr> {
    let mut select = Items::find_by_id(id);
    if !include_deleted {
        select = select.filter(item::Column::DeletedAt.is_null());
    }
    select.one(conn).await
}

pub async fn list<C, T>(
    conn: &C,
    filter: &ItemFilter,
    page: &PageRequest,
    view: impl FnMut(item::Model) -> T,
) -> Result<Page<T>, DbErr>
where
    C: ConnectionTrait,
{
    let mut select = Items::find();
    if !filter.include_deleted {
        select = select.filter(item::Column::DeletedAt.is_null());
    }
    if let Some(name) = &filter.name {
        select = select.filter(contains_folded(item::Column::NameSearch, name));
    }
    match filter.in_stock {
        Some(true) => select = select.filter(item::Column::Stock.gt(0)),
        Some(false) => select = select.filter(item::Column::Stock.eq(0)),
        None => {}
    }
    let rows = page
        .apply(select, item::Column::CreatedAt, item::Column::Id)
        .all(conn)
        .await?;
    Ok(page.finish(
        rows,
        |i| Cursor {
            created_at: i.created_at,
            id: i.id,
        },
        view,
    ))
}

pub struct NewItem {
    pub name: String,
    pub description: String,
    pub price: Money,
    pub stock: i64,
    pub price_payment_id: Option<String>,
}

pub async fn insert<C: ConnectionTrait>(conn: &C, new: NewItem) -> Result<item::Model, DbErr> {
    let now = crate::db::now();
    item::ActiveModel {
        id: Set(crate::db::new_id()),
        name_search: Set(crate::db::fold_for_search(&new.name)),
        name: Set(new.name),
        description: Set(new.description),
        price: Set(new.price.minor),
        currency: Set(new.price.currency),
        stock: Set(new.stock),
        price_payment_id: Set(new.price_payment_id),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
    }
    .insert(conn)
    .await
}

/// Changes to an item; `None` leaves a column alone.
#[derive(Debug, Default)]
pub struct ItemChanges {
    pub name: Option<String>,
    pub description: Option<String>,
    pub price: Option<i64>,
    pub stock: Option<i64>,
    pub price_payment_id: Option<Option<String>>,
}

pub async fn update<C: ConnectionTrait>(
    conn: &C,
    item: item::Model,
    changes: ItemChanges,
) -> Result<item::Model, DbErr> {
    let mut model: item::ActiveModel = item.into();
    if let Some(name) = changes.name {
        model.name_search = Set(crate::db::fold_for_search(&name));
        model.name = Set(name);
    }
    if let Some(description) = changes.description {
        model.description = Set(description);
    }
    if let Some(price) = changes.price {
        model.price = Set(price);
    }
    if let Some(stock) = changes.stock {
        model.stock = Set(stock);
    }
    if let Some(price_payment_id) = changes.price_payment_id {
        model.price_payment_id = Set(price_payment_id);
    }
    model.updated_at = Set(crate::db::now());
    model.update(conn).await
}

/// Soft-deletes a live item. False if already gone.
pub async fn soft_delete<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<bool, DbErr> {
    let now = crate::db::now();
    let result = Items::update_many()
        .col_expr(item::Column::DeletedAt, Expr::value(now))
        .col_expr(item::Column::UpdatedAt, Expr::value(now))
        .filter(item::Column::Id.eq(id))
        .filter(item::Column::DeletedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Takes `quantity` of an item if enough remains; the item as it is now,
/// or `None` if it is missing, deleted or short. The condition is in the
/// `UPDATE` itself, so concurrent orders can never oversell. The cached
/// catalogue is invalidated when `txn` commits.
pub async fn take_stock(
    txn: &WriteTxn,
    item_id: Uuid,
    quantity: i64,
) -> Result<Option<item::Model>, DbErr> {
    txn.after_commit(super::STOCK_CHANGED);
    let taken = Items::update_many()
        .col_expr(
            item::Column::Stock,
            Expr::col(item::Column::Stock).sub(quantity),
        )
        .col_expr(item::Column::UpdatedAt, Expr::value(crate::db::now()))
        .filter(item::Column::Id.eq(item_id))
        .filter(item::Column::DeletedAt.is_null())
        .filter(item::Column::Stock.gte(quantity))
        .exec_with_returning(&**txn)
        .await?;
    Ok(taken.into_iter().next())
}

/// Gives `quantity` of an item back (a canceled or undone order), deleted
/// or not: the goods came back either way. The cached catalogue is
/// invalidated when `txn` commits.
pub async fn put_back_stock(txn: &WriteTxn, item_id: Uuid, quantity: i64) -> Result<(), DbErr> {
    txn.after_commit(super::STOCK_CHANGED);
    Items::update_many()
        .col_expr(
            item::Column::Stock,
            Expr::col(item::Column::Stock).add(quantity),
        )
        .col_expr(item::Column::UpdatedAt, Expr::value(crate::db::now()))
        .filter(item::Column::Id.eq(item_id))
        .exec(&**txn)
        .await?;
    Ok(())
}
