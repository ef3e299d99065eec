//! The `jobs` and `job_queues` tables.

pub mod job {
    use sea_orm::entity::prelude::*;
    use serde::Serialize;
    use utoipa::ToSchema;

    #[derive(
        Debug,
        Clone,
        Copy,
        PartialEq,
        Eq,
        Hash,
        EnumIter,
        DeriveActiveEnum,
        Serialize,
        serde::Deserialize,
        ToSchema,
    )]
    #[sea_orm(rs_type = "String", db_type = "String(StringLen::N(16))")]
    #[serde(rename_all = "lowercase")]
    pub enum JobState {
        /// Due later than [`WAKE_HORIZON`](crate::jobs::WAKE_HORIZON) after
        /// it was written: invisible to claims until the stager makes it
        /// available, shortly before `run_at`.
        #[sea_orm(string_value = "scheduled")]
        Scheduled,
        /// Due now or within the horizon; waiting for `run_at` and a free
        /// worker.
        #[sea_orm(string_value = "available")]
        Available,
        /// Claimed by a worker under a lease.
        #[sea_orm(string_value = "running")]
        Running,
        #[sea_orm(string_value = "succeeded")]
        Succeeded,
        /// Out of attempts (or failed permanently); kept until retried or discarded.
        #[sea_orm(string_value = "failed")]
        Failed,
        /// Given up on by an operator.
        #[sea_orm(string_value = "discarded")]
        Discarded,
    }

    impl JobState {
        pub fn as_str(self) -> &'static str {
            match self {
                JobState::Scheduled => "scheduled",
                JobState::Available => "available",
                JobState::Running => "running",
                JobState::Succeeded => "succeeded",
                JobState::Failed => "failed",
                JobState::Discarded => "discarded",
            }
        }
    }

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "jobs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub queue: String,
        pub kind: String,
        pub payload: Json,
        pub state: JobState,
        /// Higher runs first.
        pub priority: i16,
        /// Attempts started so far; also the fencing token of the current lease.
        pub attempt: i32,
        pub max_attempts: i32,
        pub run_at: DateTimeUtc,
        /// The worker holding the lease while running.
        pub lease_owner: Option<Uuid>,
        pub lease_expires_at: Option<DateTimeUtc>,
        pub last_error: Option<String>,
        /// `[{attempt, at, error}]`, one entry per failed attempt.
        pub errors: Json,
        pub correlation_id: Option<String>,
        pub unique_key: Option<String>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub started_at: Option<DateTimeUtc>,
        pub finished_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub mod job_queue {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "job_queues")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub queue: String,
        pub paused: bool,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
