//! `notification.deliver`: records an event for a user. Enqueued in the
//! transaction of the change that caused it; the row's id is the job's id,
//! so a job that runs twice records once.

use async_trait::async_trait;
use sea_orm::{ActiveValue::Set, EntityTrait, sea_query::OnConflict};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::notification::{self, Entity as Notifications};
use crate::jobs::{Job, JobContext, JobError, Queue};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deliver {
    pub user_id: Uuid,
    pub event: String,
    #[serde(default)]
    pub data: serde_json::Value,
}

#[async_trait]
impl Job for Deliver {
    const KIND: &'static str = "notification.deliver";
    const QUEUE: Queue = Queue::Notifications;

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        let txn = ctx.db.begin_write().await?;
        Notifications::insert(notification::ActiveModel {
            id: Set(ctx.job_id),
            user_id: Set(self.user_id),
            event: Set(self.event.clone()),
            data: Set(self.data.clone()),
            read_at: Set(None),
            created_at: Set(crate::db::now()),
        })
        .on_conflict(
            OnConflict::column(notification::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(&*txn)
        .await?;
        txn.commit().await?;
        Ok(())
    }
}
