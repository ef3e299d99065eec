//! Reads of orders and their parts, and the writes of placing one (the only
//! writes of `orders` outside `transition`).

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbErr, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, sea_query::Expr,
};
use uuid::Uuid;

use super::{
    model::{
        order::{self, Entity as Orders},
        order_event::{self, Entity as OrderEvents},
        order_line::{self, Entity as OrderLines},
    },
    status::OrderStatus,
};
use crate::{
    catalog::queries as catalog,
    db::WriteTxn,
    money::Money,
    pagination::{Cursor, Page, PageRequest},
    payments::model::{payment, refund},
    users::role::Role,
};

/// An order with everything its views show.
#[derive(Debug, Clone)]
pub struct OrderRecord {
    pub order: order::Model,
    pub lines: Vec<order_line::Model>,
    pub payment: Option<payment::Model>,
}

/// The staff view's extra parts.
#[derive(Debug, Clone)]
pub struct OrderHistory {
    pub refunds: Vec<refund::Model>,
    pub timeline: Vec<order_event::Model>,
}

pub async fn find<C: ConnectionTrait>(conn: &C, id: Uuid) -> Result<Option<order::Model>, DbErr> {
    Orders::find_by_id(id)
        .filter(order::Column::DeletedAt.is_null())
        .one(conn)
        .await
}

/// One order with its lines and payment ([`records`] for one).
pub async fn record<C: ConnectionTrait>(
    conn: &C,
    order: order::Model,
) -> Result<OrderRecord, DbErr> {
    let mut records = records(conn, vec![order]).await?;
    records
        .pop()
        .ok_or_else(|| DbErr::RecordNotFound("the order read no record".into()))
}

pub async fn history<C: ConnectionTrait>(conn: &C, order_id: Uuid) -> Result<OrderHistory, DbErr> {
    let timeline = OrderEvents::find()
        .filter(order_event::Column::OrderId.eq(order_id))
        .order_by_asc(order_event::Column::At)
        .order_by_asc(order_event::Column::Id)
        .all(conn)
        .await?;
    let refunds = crate::payments::queries::refunds_of_order(conn, order_id).await?;
    Ok(OrderHistory { refunds, timeline })
}

/// Who may see which orders in a list.
#[derive(Debug, Clone, Default)]
pub struct OrderFilter {
    pub user_id: Option<Uuid>,
    pub status: Option<OrderStatus>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    /// Statuses the caller may see (staff roles see part of the life cycle).
    pub visible: Option<Vec<OrderStatus>>,
}

impl OrderFilter {
    /// The statuses `role` may list, or `None` for all.
    pub fn visible_to(role: Role) -> Option<Vec<OrderStatus>> {
        let visible: Vec<OrderStatus> = OrderStatus::ALL
            .into_iter()
            .filter(|s| s.visible_to_staff(role))
            .collect();
        (visible.len() < OrderStatus::ALL.len()).then_some(visible)
    }
}

/// A page of orders, newest first, each with its lines and payment.
pub async fn list<C: ConnectionTrait>(
    conn: &C,
    filter: &OrderFilter,
    page: &PageRequest,
) -> Result<Page<OrderRecord>, DbErr> {
    let mut select = Orders::find().filter(order::Column::DeletedAt.is_null());
    if let Some(user_id) = filter.user_id {
        select = select.filter(order::Column::UserId.eq(user_id));
    }
    if let Some(status) = filter.status {
        select = select.filter(order::Column::Status.eq(status));
    }
    if let Some(visible) = &filter.visible {
        select = select.filter(order::Column::Status.is_in(visible.iter().copied()));
    }
    if let Some(from) = filter.from {
        select = select.filter(order::Column::CreatedAt.gte(from));
    }
    if let Some(to) = filter.to {
        select = select.filter(order::Column::CreatedAt.lt(to));
    }
    let rows = page
        .apply(select, order::Column::CreatedAt, order::Column::Id)
        .all(conn)
        .await?;
    let page = page.finish(
        rows,
        |o| Cursor {
            created_at: o.created_at,
            id: o.id,
        },
        |o| o,
    );
    let next_cursor = page.next_cursor.clone();
    let has_more = page.has_more;
    let items = records(conn, page.items).await?;
    Ok(Page {
        items,
        next_cursor,
        has_more,
    })
}

/// Many orders with their lines and payments, in three queries.
pub async fn records<C: ConnectionTrait>(
    conn: &C,
    orders: Vec<order::Model>,
) -> Result<Vec<OrderRecord>, DbErr> {
    let ids: Vec<Uuid> = orders.iter().map(|o| o.id).collect();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut lines: std::collections::HashMap<Uuid, Vec<order_line::Model>> =
        std::collections::HashMap::new();
    for line in OrderLines::find()
        .filter(order_line::Column::OrderId.is_in(ids.iter().copied()))
        .order_by_asc(order_line::Column::ItemId)
        .all(conn)
        .await?
    {
        lines.entry(line.order_id).or_default().push(line);
    }
    let mut payments: std::collections::HashMap<Uuid, payment::Model> = payment::Entity::find()
        .filter(payment::Column::OrderId.is_in(ids))
        .all(conn)
        .await?
        .into_iter()
        .map(|p| (p.order_id, p))
        .collect();
    Ok(orders
        .into_iter()
        .map(|order| OrderRecord {
            lines: lines.remove(&order.id).unwrap_or_default(),
            payment: payments.remove(&order.id),
            order,
        })
        .collect())
}

/// A new PENDING order with its lines (name and price as they are now).
pub struct NewOrder {
    pub id: Uuid,
    pub user_id: Uuid,
    /// The sum of the line totals, in the order's currency.
    pub total: Money,
    pub expires_at: DateTime<Utc>,
    pub lines: Vec<NewLine>,
}

pub struct NewLine {
    pub item_id: Uuid,
    pub item_name: String,
    pub unit_price: Money,
    pub quantity: i64,
    pub line_total: Money,
}

/// Writes a new order and its lines; returns them as written (lines in item
/// order, as [`record`] reads them), without a payment.
pub async fn insert<C: ConnectionTrait>(conn: &C, new: NewOrder) -> Result<OrderRecord, DbErr> {
    let now = crate::db::now();
    let order = order::Model {
        id: new.id,
        user_id: new.user_id,
        status: OrderStatus::Pending,
        currency: new.total.currency,
        total: new.total.minor,
        tracking_number: None,
        carrier: None,
        shipped_at: None,
        delivered_at: None,
        canceled_at: None,
        refunded_at: None,
        expires_at: new.expires_at,
        deleted_at: None,
        created_at: now,
        updated_at: now,
    };
    Orders::insert(order.clone().into_active_model().reset_all())
        .exec_without_returning(conn)
        .await?;
    let mut lines: Vec<order_line::Model> = new
        .lines
        .into_iter()
        .map(|line| order_line::Model {
            id: crate::db::new_id(),
            order_id: new.id,
            item_id: line.item_id,
            item_name: line.item_name,
            unit_price: line.unit_price.minor,
            quantity: line.quantity,
            line_total: line.line_total.minor,
        })
        .collect();
    lines.sort_by_key(|line| line.item_id);
    OrderLines::insert_many(
        lines
            .iter()
            .map(|line| line.clone().into_active_model().reset_all()),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(OrderRecord {
        order,
        lines,
        payment: None,
    })
}

/// Undoes a checkout whose payment could not be created: the order and its
/// parts go, its stock comes back. Only while its payment has no
/// PaymentIntent (a concurrent resume that attached one wins); `false` if
/// there was nothing to undo.
pub async fn undo_checkout(txn: &WriteTxn, order_id: Uuid) -> Result<bool, DbErr> {
    let conn = &**txn;
    if !crate::payments::queries::delete_unattached_payment(conn, order_id).await? {
        return Ok(false);
    }
    return_stock(txn, order_id).await?;
    OrderLines::delete_many()
        .filter(order_line::Column::OrderId.eq(order_id))
        .exec(conn)
        .await?;
    OrderEvents::delete_many()
        .filter(order_event::Column::OrderId.eq(order_id))
        .exec(conn)
        .await?;
    Orders::delete_many()
        .filter(order::Column::Id.eq(order_id))
        .filter(order::Column::Status.eq(OrderStatus::Pending))
        .exec(conn)
        .await?;
    Ok(true)
}

/// Gives an order's goods back to the catalogue, items in id order (the
/// order placement takes them in, so the two never deadlock).
pub async fn return_stock(txn: &WriteTxn, order_id: Uuid) -> Result<(), DbErr> {
    let lines = OrderLines::find()
        .filter(order_line::Column::OrderId.eq(order_id))
        .order_by_asc(order_line::Column::ItemId)
        .all(&**txn)
        .await?;
    for line in lines {
        catalog::put_back_stock(txn, line.item_id, line.quantity).await?;
    }
    Ok(())
}

/// Soft-deletes an order (staff); only from a final or never-paid status.
pub async fn soft_delete<C: ConnectionTrait>(
    conn: &C,
    order_id: Uuid,
    allowed: &[OrderStatus],
) -> Result<bool, DbErr> {
    let now = crate::db::now();
    let deleted = Orders::update_many()
        .col_expr(order::Column::DeletedAt, Expr::value(now))
        .col_expr(order::Column::UpdatedAt, Expr::value(now))
        .filter(order::Column::Id.eq(order_id))
        .filter(order::Column::DeletedAt.is_null())
        .filter(order::Column::Status.is_in(allowed.iter().copied()))
        .exec(conn)
        .await?;
    Ok(deleted.rows_affected == 1)
}
