//! Schema migrations, embedded in the binary.
//!
//! Policy: migrations are append-only (never edit one that has shipped), and
//! each statement changes one thing, because SQLite cannot alter several
//! things in one `ALTER TABLE` and sea-query panics if asked to. Tables are
//! created `IF NOT EXISTS` and indexes likewise, and [`run`] holds a
//! cross-process lock, so applying them twice or from two processes at once is
//! safe.

mod m20261125_000001_identity_and_catalog;
mod m20261125_000002_jobs;
mod m20261125_000003_search_names;
mod m20261125_000004_notifications;
mod m20261125_000005_orders;
mod m20261126_000006_scheduled_jobs;

use sea_orm::{ConnectionTrait, DbErr, Statement};
use sea_orm_migration::{MigrationTrait, MigratorTrait};
use secrecy::ExposeSecret;

use crate::{config::Config, db::Database};

pub struct Migrator;

impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_identity_and_catalog::Migration),
            Box::new(m20261125_000002_jobs::Migration),
            Box::new(m20261125_000003_search_names::Migration),
            Box::new(m20261125_000004_notifications::Migration),
            Box::new(m20261125_000005_orders::Migration),
            Box::new(m20261126_000006_scheduled_jobs::Migration),
        ]
    }
}

/// Key of the PostgreSQL advisory lock that serialises migration runs.
const MIGRATION_LOCK_KEY: i64 = 0x0d15_9a7c_4000_0001;

/// Applies pending migrations, serialised across processes: a PostgreSQL
/// advisory lock (held on a dedicated connection), or on SQLite an exclusive
/// lock on a file beside the database.
pub async fn run(db: &Database, config: &Config) -> Result<(), DbErr> {
    if db.is_postgres() {
        let pool = db.conn().get_postgres_connection_pool();
        let mut lock_conn = pool
            .acquire()
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        sea_orm::sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *lock_conn)
            .await
            .map_err(|e| DbErr::Custom(e.to_string()))?;
        let result = Migrator::up(db.conn(), None).await;
        let unlock = sea_orm::sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK_KEY)
            .execute(&mut *lock_conn)
            .await;
        if let Err(e) = unlock {
            tracing::warn!(error = %e, "could not release the migration lock; it ends with the connection");
            lock_conn.detach();
        }
        result
    } else {
        let lock_file = crate::db::sqlite_path(config.database_url.expose_secret())
            .map(|p| p.with_extension("migrate-lock"));
        let _guard = match lock_file {
            Some(path) => Some(lock_exclusively(path).await?),
            None => None,
        };
        Migrator::up(db.conn(), None).await
    }
}

/// Takes an exclusive advisory lock on `path` (released when the file closes).
async fn lock_exclusively(path: std::path::PathBuf) -> Result<std::fs::File, DbErr> {
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await
    .map_err(|e| DbErr::Custom(e.to_string()))?
    .map_err(|e| DbErr::Custom(format!("migration lock: {e}")))
}

/// Runs one SQL statement that is the same on both backends (partial indexes,
/// which sea-query cannot express).
pub(crate) async fn execute_portable<C: ConnectionTrait>(conn: &C, sql: &str) -> Result<(), DbErr> {
    conn.execute_raw(Statement::from_string(
        conn.get_database_backend(),
        sql.to_owned(),
    ))
    .await
    .map(|_| ())
}
