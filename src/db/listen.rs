//! One `LISTEN` connection per process for every PostgreSQL channel Dispatch
//! uses (job wake-ups, notification fan-out).
//!
//! PostgreSQL wakes every listening backend of a database for every
//! notification, whatever its channel, so each listening connection costs
//! server CPU for each notification sent: with one connection per channel,
//! every order woke two backends twice. Measured on the orders bench, one
//! listening connection less was worth 2–3 points of the pgbench ceiling.
//!
//! Subscribers call [`Database::listen`]; the connection is opened by the
//! first and closed when the last goes. Each subscriber hears the payloads of
//! its channel and [`Heard::Listening`] whenever the connection (re)starts
//! listening or the subscriber fell behind: anything sent before may have
//! been missed, so it should catch up from the database.

use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use sea_orm::sqlx::postgres::PgListener;
use tokio::sync::{Mutex, Notify, broadcast};

use super::Database;

/// Payloads kept for a slow subscriber before it hears [`Heard::Listening`]
/// instead.
const BUFFER: usize = 4096;

/// What a subscriber hears on its channel.
#[derive(Debug, Clone)]
pub enum Heard {
    /// The connection listens (again), or this subscriber fell behind:
    /// notifications may have been missed.
    Listening,
    /// A notification's payload.
    Payload(Arc<str>),
}

/// The process's channels and their subscribers.
#[derive(Debug, Default)]
pub(super) struct Channels {
    senders: Mutex<HashMap<&'static str, broadcast::Sender<Heard>>>,
    /// A subscriber came or went.
    changed: Notify,
    /// The listening task runs.
    running: AtomicBool,
}

impl Channels {
    /// The channels somebody listens to.
    async fn wanted(&self) -> Vec<&'static str> {
        self.senders
            .lock()
            .await
            .iter()
            .filter(|(_, sender)| sender.receiver_count() > 0)
            .map(|(channel, _)| *channel)
            .collect()
    }

    async fn tell(&self, channel: &str, heard: Heard) {
        if let Some(sender) = self.senders.lock().await.get(channel) {
            // No receiver left is not an error: the task notices the change.
            let _ = sender.send(heard);
        }
    }
}

/// A subscription to one channel; dropping it lets the connection close
/// when nobody else listens.
pub struct Subscription {
    receiver: Option<broadcast::Receiver<Heard>>,
    channels: Arc<Channels>,
}

impl Subscription {
    /// The next thing heard (cancel-safe).
    pub async fn recv(&mut self) -> Heard {
        let Some(receiver) = self.receiver.as_mut() else {
            return std::future::pending().await;
        };
        match receiver.recv().await {
            Ok(heard) => heard,
            Err(broadcast::error::RecvError::Lagged(_)) => Heard::Listening,
            // The senders live as long as the database handle.
            Err(broadcast::error::RecvError::Closed) => std::future::pending().await,
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // The receiver goes first, so the task sees it gone when woken.
        drop(self.receiver.take());
        self.channels.changed.notify_one();
    }
}

impl Database {
    /// Subscribes to the PostgreSQL channel `channel` through the process's
    /// one listening connection. `None` on SQLite (no notifications: one
    /// process, which wakes its own listeners directly).
    pub async fn listen(&self, channel: &'static str) -> Option<Subscription> {
        if !self.is_postgres() {
            return None;
        }
        let receiver = self
            .channels
            .senders
            .lock()
            .await
            .entry(channel)
            .or_insert_with(|| broadcast::channel(BUFFER).0)
            .subscribe();
        self.channels.changed.notify_one();
        if !self.channels.running.swap(true, Ordering::AcqRel) {
            tokio::spawn(run(self.clone()));
        }
        Some(Subscription {
            receiver: Some(receiver),
            channels: Arc::clone(&self.channels),
        })
    }
}

/// Listens while anybody subscribes; reconnects (and starts afresh) after an
/// error, a lost connection or a change of subscribers.
async fn run(db: Database) {
    let channels = Arc::clone(&db.channels);
    loop {
        let wanted = channels.wanted().await;
        if wanted.is_empty() {
            channels.running.store(false, Ordering::Release);
            // A subscriber that came meanwhile saw the task running and
            // started none: carry on for it unless another task took over.
            if channels.wanted().await.is_empty() || channels.running.swap(true, Ordering::AcqRel) {
                return;
            }
            continue;
        }
        if let Err(e) = listen_until_changed(&db, &channels, &wanted).await {
            tracing::warn!(error = %e, "database notification listener lost; reconnecting");
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// One connection's life: listen to `wanted`, forward what arrives, return
/// when the subscribers change or the connection is lost. (The connection is
/// dropped rather than told to listen to more, so an interrupted receive
/// never leaves it half read.)
async fn listen_until_changed(
    db: &Database,
    channels: &Channels,
    wanted: &[&'static str],
) -> Result<(), sea_orm::sqlx::Error> {
    let pool = db.conn().get_postgres_connection_pool().clone();
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen_all(wanted.iter().copied()).await?;
    for channel in wanted {
        channels.tell(channel, Heard::Listening).await;
    }
    loop {
        tokio::select! {
            received = listener.try_recv() => match received? {
                Some(notification) => {
                    let heard = Heard::Payload(Arc::from(notification.payload()));
                    channels.tell(notification.channel(), heard).await;
                }
                // The connection was lost: listen afresh (and say so).
                None => return Ok(()),
            },
            () = channels.changed.notified() => return Ok(()),
        }
    }
}
