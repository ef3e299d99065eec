//! Jobs due later than the wake-up horizon wait in their own state,
//! `scheduled`, so that the claim's partial index (`state = 'available'`)
//! holds only jobs due now or within the horizon. Before, every delayed job
//! (an `order.expire` per order, due in 30 minutes) sat in that index, and a
//! claim that found fewer due jobs than it asked for read all of them: a
//! claim's cost grew with the orders placed in the last half hour.

use sea_orm::ConnectionTrait;
use sea_orm_migration::prelude::*;

use crate::jobs::WAKE_HORIZON;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(
            "CREATE INDEX IF NOT EXISTS jobs_scheduled_idx ON jobs (run_at) WHERE state = 'scheduled'",
        )
        .await?;
        // Timestamps are bound from Rust (see `db`), never computed in SQL.
        let horizon = crate::db::now() + crate::duration::to_delta(WAKE_HORIZON);
        let reschedule = Query::update()
            .table(Alias::new("jobs"))
            .value(Alias::new("state"), "scheduled")
            .and_where(Expr::col(Alias::new("state")).eq("available"))
            .and_where(Expr::col(Alias::new("run_at")).gt(horizon))
            .to_owned();
        db.execute(&reschedule).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("UPDATE jobs SET state = 'available' WHERE state = 'scheduled'")
            .await?;
        db.execute_unprepared("DROP INDEX IF EXISTS jobs_scheduled_idx")
            .await?;
        Ok(())
    }
}
