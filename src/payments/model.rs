//! The `payments`, `refunds` and `payment_events` tables.

pub mod payment {
    use sea_orm::entity::prelude::*;
    use serde::{Deserialize, Serialize};
    use utoipa::ToSchema;

    /// A payment's state, kept in step with the provider's PaymentIntent.
    #[derive(
        Debug,
        Clone,
        Copy,
        PartialEq,
        Eq,
        EnumIter,
        DeriveActiveEnum,
        Serialize,
        Deserialize,
        ToSchema,
    )]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
    #[serde(rename_all = "snake_case")]
    pub enum PaymentStatus {
        /// The order exists; the PaymentIntent is being created.
        #[sea_orm(string_value = "creating")]
        Creating,
        /// Waiting for the customer to pay.
        #[sea_orm(string_value = "requires_payment")]
        RequiresPayment,
        #[sea_orm(string_value = "processing")]
        Processing,
        #[sea_orm(string_value = "succeeded")]
        Succeeded,
        /// The provider declined the payment.
        #[sea_orm(string_value = "failed")]
        Failed,
        /// The PaymentIntent was canceled; nobody was charged.
        #[sea_orm(string_value = "canceled")]
        Canceled,
        /// Charged, then given back in full.
        #[sea_orm(string_value = "refunded")]
        Refunded,
    }

    impl PaymentStatus {
        /// Statuses no later event may overwrite with an earlier one.
        pub fn is_settled(self) -> bool {
            matches!(self, Self::Succeeded | Self::Canceled | Self::Refunded)
        }
    }

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payments")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub order_id: Uuid,
        /// `stripe` or `simulated`.
        pub provider: String,
        /// The PaymentIntent id, once created.
        pub provider_payment_id: Option<String>,
        /// Shown to the order's owner only; never logged.
        pub client_secret: Option<String>,
        pub amount: i64,
        pub currency: crate::money::Currency,
        pub status: PaymentStatus,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod refund {
    use sea_orm::entity::prelude::*;
    use serde::{Deserialize, Serialize};
    use utoipa::ToSchema;

    #[derive(
        Debug,
        Clone,
        Copy,
        PartialEq,
        Eq,
        EnumIter,
        DeriveActiveEnum,
        Serialize,
        Deserialize,
        ToSchema,
    )]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(32))")]
    #[serde(rename_all = "snake_case")]
    pub enum RefundStatus {
        /// Decided; the refund job has not had the provider's answer yet.
        #[sea_orm(string_value = "pending")]
        Pending,
        #[sea_orm(string_value = "succeeded")]
        Succeeded,
        #[sea_orm(string_value = "failed")]
        Failed,
        #[sea_orm(string_value = "canceled")]
        Canceled,
    }

    impl From<crate::payments::gateway::ProviderRefundStatus> for RefundStatus {
        fn from(status: crate::payments::gateway::ProviderRefundStatus) -> Self {
            use crate::payments::gateway::ProviderRefundStatus as P;
            match status {
                P::Pending => Self::Pending,
                P::Succeeded => Self::Succeeded,
                P::Failed => Self::Failed,
                P::Canceled => Self::Canceled,
            }
        }
    }

    /// A full refund of a payment (one per payment).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "refunds")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub payment_id: Uuid,
        pub order_id: Uuid,
        pub provider_refund_id: Option<String>,
        pub amount: i64,
        pub currency: crate::money::Currency,
        pub status: RefundStatus,
        pub reason: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl Model {
        /// `amount` with its `currency`.
        pub fn amount_money(&self) -> crate::money::Money {
            crate::money::Money::new(self.amount, self.currency)
        }
    }
}

pub mod payment_event {
    use sea_orm::entity::prelude::*;

    /// A webhook event we have processed (deduplication by provider id).
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "payment_events")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub provider_event_id: String,
        pub event_type: String,
        pub received_at: DateTimeUtc,
        pub processed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
