//! The process's one `LISTEN` connection (`db::listen`): several channels
//! share it, each subscriber hears its own channel, and the connection goes
//! when the last subscriber does.

use std::time::Duration;

use dispatch::db::{Database, listen::Heard};
use sea_orm::{ConnectionTrait, DbBackend, Statement};

use crate::helpers::{eventually, spawn_app};

const WAIT: Duration = Duration::from_secs(20);

async fn notify(db: &Database, channel: &str, payload: &str) {
    db.conn()
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT pg_notify($1, $2)",
            [channel.into(), payload.into()],
        ))
        .await
        .unwrap();
}

/// Backends of this test's database waiting in `LISTEN`.
async fn listening_connections(db: &Database) -> i64 {
    let row = db
        .conn()
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT count(*) AS n FROM pg_stat_activity \
             WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get::<i64>("", "n").unwrap()
}

async fn next_payload(heard: &mut dispatch::db::listen::Subscription) -> String {
    loop {
        match tokio::time::timeout(WAIT, heard.recv())
            .await
            .expect("heard")
        {
            Heard::Payload(payload) => return payload.to_string(),
            Heard::Listening => {}
        }
    }
}

#[tokio::test]
async fn two_channels_share_one_listening_connection_each_hearing_its_own() {
    let app = spawn_app().await;
    if !app.state.db.is_postgres() {
        assert!(
            app.state.db.listen("test_a").await.is_none(),
            "SQLite has no channels"
        );
        return;
    }
    // A handle of its own (the app's already listens for its notification
    // fan-out), on the same database.
    let db = &Database::connect(&app.state.config).await.unwrap();
    let before = listening_connections(db).await;
    let mut a = db.listen("test_a").await.unwrap();
    let mut b = db.listen("test_b").await.unwrap();
    eventually("its connection to listen", WAIT, || async {
        listening_connections(db).await == before + 1
    })
    .await;
    while !matches!(a.recv().await, Heard::Listening) {}
    while !matches!(b.recv().await, Heard::Listening) {}
    notify(db, "test_a", "for a").await;
    notify(db, "test_b", "for b").await;
    assert_eq!(next_payload(&mut a).await, "for a");
    assert_eq!(next_payload(&mut b).await, "for b");
    assert_eq!(
        listening_connections(db).await,
        before + 1,
        "one connection for both channels"
    );

    drop(a);
    drop(b);
    eventually("its connection to close", WAIT, || async {
        listening_connections(db).await == before
    })
    .await;
}
