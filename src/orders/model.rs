//! The `orders`, `order_lines` and `order_events` tables.

pub mod order {
    use sea_orm::entity::prelude::*;

    use crate::orders::status::OrderStatus;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "orders")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub user_id: Uuid,
        /// Written only by `orders::transition` (and at creation).
        pub status: OrderStatus,
        pub currency: crate::money::Currency,
        /// Minor units: the sum of the line totals, computed by the server.
        pub total: i64,
        pub tracking_number: Option<String>,
        pub carrier: Option<String>,
        pub shipped_at: Option<DateTimeUtc>,
        pub delivered_at: Option<DateTimeUtc>,
        pub canceled_at: Option<DateTimeUtc>,
        pub refunded_at: Option<DateTimeUtc>,
        /// An unpaid order is canceled (and its stock released) after this.
        pub expires_at: DateTimeUtc,
        pub deleted_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl Model {
        /// `total` with its `currency`.
        pub fn total_money(&self) -> crate::money::Money {
            crate::money::Money::new(self.total, self.currency)
        }
    }
}

pub mod order_line {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_lines")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub order_id: Uuid,
        pub item_id: Uuid,
        /// As it was when ordered.
        pub item_name: String,
        /// As it was when ordered, minor units.
        pub unit_price: i64,
        pub quantity: i64,
        pub line_total: i64,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod order_event {
    use sea_orm::entity::prelude::*;

    use crate::orders::status::OrderStatus;

    /// One step of an order's timeline; append-only.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "order_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub order_id: Uuid,
        /// `None` for the order's creation.
        pub from_status: Option<OrderStatus>,
        pub to_status: OrderStatus,
        /// A user id, `system`, `webhook` or `job`.
        pub actor: String,
        pub reason: Option<String>,
        pub at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
