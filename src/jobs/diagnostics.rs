//! Diagnostic job kinds: `diagnostics.noop` (does nothing; the benchmark's
//! unit of work) and `diagnostics.probe`, which records every execution in
//! `job_probe_runs`. Operators enqueue a probe to check end to end that
//! workers pick jobs up; the test suite uses it to prove, across processes,
//! that each job completes exactly once.

use std::time::Duration;

use async_trait::async_trait;
use sea_orm::{ActiveValue::Set, entity::prelude::*};
use serde::{Deserialize, Serialize};

use super::{Job, JobContext, JobError, JobOptions, Queue};

pub mod probe_run {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "job_probe_runs")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        pub job_id: Uuid,
        pub attempt: i32,
        pub worker: Uuid,
        pub finished_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// Does nothing.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Noop {}

#[async_trait]
impl Job for Noop {
    const KIND: &'static str = "diagnostics.noop";
    const QUEUE: Queue = Queue::Maintenance;

    async fn run(&self, _ctx: &JobContext) -> Result<(), JobError> {
        Ok(())
    }
}

/// Waits `hold_ms`, then records that it ran (job, attempt, worker).
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Probe {
    #[serde(default)]
    pub hold_ms: u64,
}

#[async_trait]
impl Job for Probe {
    const KIND: &'static str = "diagnostics.probe";
    const QUEUE: Queue = Queue::Maintenance;

    fn options() -> JobOptions {
        JobOptions {
            max_attempts: 5,
            ..JobOptions::default()
        }
    }

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        if self.hold_ms > 0 {
            tokio::time::sleep(Duration::from_millis(self.hold_ms)).await;
        }
        let txn = ctx.db.begin_write().await?;
        probe_run::Entity::insert(probe_run::ActiveModel {
            id: Set(crate::db::new_id()),
            job_id: Set(ctx.job_id),
            attempt: Set(ctx.attempt),
            worker: Set(ctx.worker),
            finished_at: Set(crate::db::now()),
        })
        .exec_without_returning(&*txn)
        .await?;
        txn.commit().await?;
        Ok(())
    }
}

/// How many times each probe job recorded a run.
pub async fn runs_per_job<C: ConnectionTrait>(
    conn: &C,
) -> Result<std::collections::HashMap<Uuid, usize>, DbErr> {
    let mut counts = std::collections::HashMap::new();
    for run in probe_run::Entity::find().all(conn).await? {
        *counts.entry(run.job_id).or_insert(0) += 1;
    }
    Ok(counts)
}
