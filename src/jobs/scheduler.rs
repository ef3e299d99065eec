//! Periodic jobs. Every worker process runs the scheduler; each tick is
//! enqueued under the unique key `periodic:<name>:<tick>`, so however many
//! processes reach the same tick, the job is written once.

use std::{collections::HashMap, time::Duration};

use tokio_util::sync::CancellationToken;

use super::{Enqueued, Job, NewJob, enqueue};
use crate::db::Database;

/// A job to enqueue every `every`, aligned to multiples of `every` since the epoch.
#[derive(Clone)]
pub struct Periodic {
    pub name: &'static str,
    pub every: Duration,
    pub make: fn() -> NewJob,
}

impl Periodic {
    /// `J::default()` every `every`, named after its kind.
    pub fn of<J: Job + Default>(every: Duration) -> Self {
        Self {
            name: J::KIND,
            every,
            make: new_default::<J>,
        }
    }
}

fn new_default<J: Job + Default>() -> NewJob {
    NewJob::of(&J::default())
}

/// The number of the tick `now` falls in.
pub fn tick_of(now: chrono::DateTime<chrono::Utc>, every: Duration) -> i64 {
    let every_ms = i64::try_from(every.as_millis()).unwrap_or(i64::MAX).max(1);
    now.timestamp_millis().div_euclid(every_ms)
}

/// Enqueues the current tick of `periodic` unless already enqueued.
pub async fn fire(
    db: &Database,
    periodic: &Periodic,
    tick: i64,
) -> Result<Enqueued, sea_orm::DbErr> {
    let txn = db.begin_write().await?;
    let job = (periodic.make)().unique(format!("periodic:{}:{tick}", periodic.name));
    let outcome = enqueue(&txn, job).await?;
    txn.commit().await?;
    Ok(outcome)
}

/// Runs until `stop`: fires each periodic job once per tick.
pub async fn run(db: Database, periodics: Vec<Periodic>, stop: CancellationToken) {
    let mut fired: HashMap<&'static str, i64> = HashMap::new();
    loop {
        let now = db.now();
        let mut sleep = Duration::from_secs(60);
        for periodic in &periodics {
            let tick = tick_of(now, periodic.every);
            if fired.get(periodic.name) != Some(&tick) {
                match fire(&db, periodic, tick).await {
                    Ok(_) => {
                        fired.insert(periodic.name, tick);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, periodic = periodic.name, "could not enqueue a periodic job")
                    }
                }
            }
            let every_ms = i64::try_from(periodic.every.as_millis())
                .unwrap_or(i64::MAX)
                .max(1);
            let next_ms = (tick + 1).saturating_mul(every_ms) - now.timestamp_millis();
            sleep = sleep.min(Duration::from_millis(u64::try_from(next_ms).unwrap_or(0)));
        }
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(sleep.max(Duration::from_millis(10))) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_in_the_same_interval_share_a_tick() {
        let every = Duration::from_secs(60);
        let a = chrono::DateTime::from_timestamp(120, 0).unwrap();
        let b = chrono::DateTime::from_timestamp(179, 0).unwrap();
        let c = chrono::DateTime::from_timestamp(180, 0).unwrap();
        assert_eq!(tick_of(a, every), tick_of(b, every));
        assert_eq!(tick_of(c, every), tick_of(a, every) + 1);
    }
}
