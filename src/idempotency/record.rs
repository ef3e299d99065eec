//! The `idempotency_records` table.

use sea_orm::entity::prelude::*;

#[derive(Debug, Clone, Copy, PartialEq, Eq, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
pub enum RecordState {
    /// A request holds the key (until `locked_until`).
    #[sea_orm(string_value = "in_flight")]
    InFlight,
    /// The response is stored and is replayed for the same key and body.
    #[sea_orm(string_value = "completed")]
    Completed,
}

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_records")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Caller + method + route template.
    pub scope: String,
    pub key: String,
    /// SHA-256 of the canonical request body.
    pub fingerprint: String,
    pub state: RecordState,
    /// Identifies the request currently holding an in-flight record.
    pub lease_token: Option<Uuid>,
    pub locked_until: Option<DateTimeUtc>,
    pub response_status: Option<i32>,
    pub response_body: Option<String>,
    /// Recovery point: what the request created before it stopped (an
    /// order), so a retry with the same key resumes it instead of starting
    /// again.
    pub resource_id: Option<Uuid>,
    pub created_at: DateTimeUtc,
    pub expires_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
