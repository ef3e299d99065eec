//! `notification.deliver`: records an event for a user. Enqueued in the
//! transaction of the change that caused it; the row's id is the job's id,
//! so a job that runs twice records once.

use async_trait::async_trait;
use sea_orm::{
    ActiveValue::Set,
    ConnectionTrait, DbErr, EntityTrait, QueryTrait,
    sea_query::{OnConflict, Query},
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{
    event::NotificationEvent,
    hub::{self, NotificationHub, Published},
    notification::{self, Entity as Notifications},
};
use crate::{
    db::Database,
    jobs::{Job, JobContext, JobError, Queue},
};

/// The job's payload is `{"userId", "event", "data"}`, as it always was:
/// the event's tag and content sit beside the user id.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deliver {
    pub user_id: Uuid,
    #[serde(flatten)]
    pub event: NotificationEvent,
}

#[async_trait]
impl Job for Deliver {
    const KIND: &'static str = "notification.deliver";
    const QUEUE: Queue = Queue::Notifications;

    const BATCHED: bool = true;

    async fn run(&self, ctx: &JobContext) -> Result<(), JobError> {
        record(&ctx.db, &ctx.notifications, &[(self, ctx.job_id)]).await?;
        Ok(())
    }

    /// The notifications of one claim, recorded and announced by one
    /// statement.
    async fn run_batch(batch: &[(Self, JobContext)]) -> Vec<Result<(), JobError>> {
        let Some((_, first)) = batch.first() else {
            return Vec::new();
        };
        let rows: Vec<(&Self, Uuid)> = batch.iter().map(|(job, ctx)| (job, ctx.job_id)).collect();
        match record(&first.db, &first.notifications, &rows).await {
            Ok(()) => batch.iter().map(|_| Ok(())).collect(),
            Err(e) => batch
                .iter()
                .map(|_| Err(JobError::retryable(e.to_string())))
                .collect(),
        }
    }
}

/// Records `deliveries` (each notification's id is its job's) and announces
/// the new ones, with one statement committed on its own. Its commit need not
/// wait for the WAL flush: each job's success is written after it, so a
/// server crash that loses the rows loses the successes too (WAL is replayed
/// in order) and the jobs run again, recording the same rows.
async fn record(
    db: &Database,
    hub: &NotificationHub,
    deliveries: &[(&Deliver, Uuid)],
) -> Result<(), DbErr> {
    let now = crate::db::now();
    let rows = deliveries.iter().map(|(delivery, id)| {
        let (event, data) = delivery.event.to_stored();
        notification::ActiveModel {
            id: Set(*id),
            user_id: Set(delivery.user_id),
            event: Set(event),
            data: Set(data),
            read_at: Set(None),
            created_at: Set(now),
        }
    });
    let mut insert = Notifications::insert_many(rows)
        .on_conflict(
            OnConflict::column(notification::Column::Id)
                .do_nothing()
                .to_owned(),
        )
        .into_query();
    insert.returning(
        Query::returning().columns([notification::Column::Id, notification::Column::UserId]),
    );
    let statement = hub::announcing(db.backend().build(&insert));
    let inserted = db
        .single_write_unflushed()
        .await?
        .query_all_raw(statement)
        .await?;
    if !db.is_postgres() {
        // One process: its streams hear it here. (On PostgreSQL the
        // statement announced it to every process.)
        for row in inserted {
            hub.publish(Published {
                user_id: row.try_get("", "user_id")?,
                notification_id: row.try_get("", "id")?,
            });
        }
    }
    Ok(())
}
