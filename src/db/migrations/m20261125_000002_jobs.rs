//! The durable job queue: `jobs`, and `job_queues` (paused flags).

use sea_orm_migration::{prelude::*, schema::*};

use super::execute_portable;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Jobs::Table)
                    .if_not_exists()
                    .col(pk_uuid(Jobs::Id))
                    .col(string_len(Jobs::Queue, 32))
                    .col(string_len(Jobs::Kind, 64))
                    .col(json(Jobs::Payload))
                    .col(string_len(Jobs::State, 16))
                    .col(small_integer(Jobs::Priority))
                    .col(integer(Jobs::Attempt))
                    .col(integer(Jobs::MaxAttempts))
                    .col(timestamp_with_time_zone(Jobs::RunAt))
                    .col(uuid_null(Jobs::LeaseOwner))
                    .col(timestamp_with_time_zone_null(Jobs::LeaseExpiresAt))
                    .col(text_null(Jobs::LastError))
                    .col(json(Jobs::Errors))
                    .col(string_len_null(Jobs::CorrelationId, 128))
                    .col(string_len_null(Jobs::UniqueKey, 255))
                    .col(timestamp_with_time_zone(Jobs::CreatedAt))
                    .col(timestamp_with_time_zone(Jobs::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Jobs::StartedAt))
                    .col(timestamp_with_time_zone_null(Jobs::FinishedAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        // Workers claim from here: available jobs of a queue, by priority then due time.
        execute_portable(
            db,
            "CREATE INDEX IF NOT EXISTS jobs_claim_idx ON jobs (queue, priority DESC, run_at, id) WHERE state = 'available'",
        )
        .await?;
        // The rescuer looks for running jobs whose lease has expired.
        execute_portable(
            db,
            "CREATE INDEX IF NOT EXISTS jobs_running_lease_idx ON jobs (lease_expires_at) WHERE state = 'running'",
        )
        .await?;
        execute_portable(
            db,
            "CREATE UNIQUE INDEX IF NOT EXISTS jobs_unique_key_key ON jobs (unique_key) WHERE unique_key IS NOT NULL",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("jobs_state_queue_kind_idx")
                    .table(Jobs::Table)
                    .col(Jobs::State)
                    .col(Jobs::Queue)
                    .col(Jobs::Kind)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("jobs_finished_at_idx")
                    .table(Jobs::Table)
                    .col(Jobs::FinishedAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobQueues::Table)
                    .if_not_exists()
                    .col(string_len(JobQueues::Queue, 32).primary_key())
                    .col(boolean(JobQueues::Paused))
                    .col(timestamp_with_time_zone(JobQueues::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(JobProbeRuns::Table)
                    .if_not_exists()
                    .col(pk_uuid(JobProbeRuns::Id))
                    .col(uuid(JobProbeRuns::JobId))
                    .col(integer(JobProbeRuns::Attempt))
                    .col(uuid(JobProbeRuns::Worker))
                    .col(timestamp_with_time_zone(JobProbeRuns::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("job_probe_runs_job_id_idx")
                    .table(JobProbeRuns::Table)
                    .col(JobProbeRuns::JobId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(JobProbeRuns::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(Table::drop().table(JobQueues::Table).if_exists().to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(Jobs::Table).if_exists().to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Jobs {
    Table,
    Id,
    Queue,
    Kind,
    Payload,
    State,
    Priority,
    Attempt,
    MaxAttempts,
    RunAt,
    LeaseOwner,
    LeaseExpiresAt,
    LastError,
    Errors,
    CorrelationId,
    UniqueKey,
    CreatedAt,
    UpdatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum JobQueues {
    Table,
    Queue,
    Paused,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum JobProbeRuns {
    Table,
    Id,
    JobId,
    Attempt,
    Worker,
    FinishedAt,
}
