//! Fan-out of new notifications to the live streams of this process.
//!
//! A notification is announced by the statement that records it:
//! - PostgreSQL: `pg_notify('dispatch_notifications', '<user>:<id>')` in the
//!   recording statement ([`announcing`]), so every API process (each runs [`listen`])
//!   hears of it exactly when, and only if, it commits — whichever process
//!   ran the job. Redis is not involved, so a Redis outage does not stop
//!   the stream;
//! - SQLite (one process): the job publishes to this process's hub after
//!   its commit.
//!
//! The hub is a `tokio::sync::broadcast` channel of (user, notification id);
//! each stream keeps its user's ids and loads the row itself, rendered in
//! its reader's language. A stream that falls behind (the channel's buffer
//! overflowed) catches up from the database, so nothing is lost.

use sea_orm::{DbBackend, Statement};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::stream_slots::StreamSlots;
use crate::db::Database;

/// PostgreSQL channel announcing committed notifications.
pub const CHANNEL: &str = "dispatch_notifications";

/// Announcements kept for slow streams before they must catch up from the
/// database.
const BUFFER: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Published {
    pub user_id: Uuid,
    pub notification_id: Uuid,
}

#[derive(Clone)]
pub struct NotificationHub {
    sender: broadcast::Sender<Published>,
    slots: StreamSlots,
}

impl NotificationHub {
    /// A hub whose streams are capped by `slots`.
    pub fn new(slots: StreamSlots) -> Self {
        let (sender, _) = broadcast::channel(BUFFER);
        Self { sender, slots }
    }

    /// The caps on this process's streams.
    pub fn slots(&self) -> &StreamSlots {
        &self.slots
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.sender.subscribe()
    }

    /// Tells this process's streams (no-op when none listens).
    pub fn publish(&self, published: Published) {
        let _ = self.sender.send(published);
    }

    /// Streams currently connected in this process.
    pub fn listeners(&self) -> usize {
        self.sender.receiver_count()
    }
}

/// `insert`, an `INSERT … RETURNING id, user_id` of notifications, made to
/// announce each row it inserts to every process (PostgreSQL; delivered only
/// if, and when, its transaction commits). Unchanged on SQLite, which
/// publishes after the commit. Either way the statement returns one row per
/// notification inserted.
pub fn announcing(insert: Statement) -> Statement {
    if insert.db_backend != DbBackend::Postgres {
        return insert;
    }
    Statement {
        sql: format!(
            "WITH inserted AS ({}) SELECT inserted.id, \
             pg_notify('{CHANNEL}', inserted.user_id::text || ':' || inserted.id::text) AS notified \
             FROM inserted",
            insert.sql
        ),
        ..insert
    }
}

fn parse(payload: &str) -> Option<Published> {
    let (user, id) = payload.split_once(':')?;
    Some(Published {
        user_id: Uuid::parse_str(user).ok()?,
        notification_id: Uuid::parse_str(id).ok()?,
    })
}

/// PostgreSQL: forwards the channel to this process's hub until `stop`
/// (through the process's one listening connection, [`Database::listen`]).
/// Streams connected while the connection was down catch up on their own
/// (they re-read the database when they reconnect or lag).
pub async fn listen(db: Database, hub: NotificationHub, stop: CancellationToken) {
    use crate::db::listen::Heard;
    let Some(mut subscription) = db.listen(CHANNEL).await else {
        return;
    };
    loop {
        let heard = tokio::select! {
            () = stop.cancelled() => return,
            heard = subscription.recv() => heard,
        };
        if let Heard::Payload(payload) = heard
            && let Some(published) = parse(&payload)
        {
            hub.publish(published);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_round_trip() {
        let published = Published {
            user_id: Uuid::new_v4(),
            notification_id: Uuid::new_v4(),
        };
        let payload = format!("{}:{}", published.user_id, published.notification_id);
        assert_eq!(parse(&payload), Some(published));
        assert_eq!(parse("junk"), None);
    }
}
