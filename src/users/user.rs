//! The `users` table.

use sea_orm::entity::prelude::*;

use super::{language::Language, role::Role};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    /// `name` folded for case-insensitive search (see `db::fold_for_search`).
    pub name_search: String,
    /// Normalised (trimmed, lower-case); unique among live users.
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub language: Language,
    pub stripe_customer_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
    pub deleted_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
