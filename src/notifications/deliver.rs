//! `notification.deliver`: records an event for a user. Enqueued in the
//! transaction of the change that caused it; the row's id is the job's id,
//! so a job that runs twice records once.

use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set,
    ConnectionTrait, EntityTrait, QueryTrait,
    sea_query::{OnConflict, Query},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    hub::{self, Published},
    notification::{self, Entity as Notifications},
};
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
        let mut insert = Notifications::insert(notification::ActiveModel {
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
        .into_query();
        insert.returning(
            Query::returning().columns([notification::Column::Id, notification::Column::UserId]),
        );
        // One statement records and announces: no transaction to open. Its
        // commit need not wait for the WAL flush: the job's success is
        // written after it, so a server crash that loses this commit loses
        // the success too (WAL is replayed in order) and the job runs again,
        // recording the same row (its id is the job's).
        let statement = hub::announcing(ctx.db.backend().build(&insert));
        let inserted = !ctx
            .db
            .single_write_unflushed()
            .await?
            .query_all_raw(statement)
            .await?
            .is_empty();
        if inserted && !ctx.db.is_postgres() {
            // One process: its streams hear it here. (On PostgreSQL the
            // statement announced it to every process.)
            ctx.notifications.publish(Published {
                user_id: self.user_id,
                notification_id: ctx.job_id,
            });
        }
        Ok(())
    }
}
