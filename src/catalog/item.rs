//! The `items` table. `stock >= 0` and `price >= 0` are CHECK constraints, so
//! no code path can oversell even by mistake.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "items")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// `name` folded for case-insensitive search (see `db::fold_for_search`).
    pub name_search: String,
    pub description: String,
    /// Minor units of `currency`.
    pub price: i64,
    pub currency: crate::money::Currency,
    pub stock: i64,
    /// Stripe price id; staff only.
    pub price_payment_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
