//! Case-folded copies of user and item names for searching.
//!
//! SQLite's `lower()` folds ASCII only, so `LOWER(name) LIKE '%ângela%'`
//! never matches "Ângela" there, while PostgreSQL's does. Rust folds the
//! name once, at write time, into `name_search`, and searches compare
//! against it on both databases alike.

use sea_orm::{ConnectionTrait, DbBackend, Statement};
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["users", "items"] {
            if !manager.has_column(table, "name_search").await? {
                manager
                    .alter_table(
                        Table::alter()
                            .table(Alias::new(table))
                            .add_column(string_len(Alias::new("name_search"), 400).default(""))
                            .to_owned(),
                    )
                    .await?;
            }
            backfill(manager.get_connection(), table).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in ["users", "items"] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Alias::new(table))
                        .drop_column(Alias::new("name_search"))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// Folds the names of existing rows (in Rust, for the reason above).
async fn backfill<C: ConnectionTrait>(db: &C, table: &str) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let rows = db
        .query_all_raw(Statement::from_string(
            backend,
            format!("SELECT id, name FROM {table}"),
        ))
        .await?;
    let update = match backend {
        DbBackend::Postgres => format!("UPDATE {table} SET name_search = $1 WHERE id = $2"),
        _ => format!("UPDATE {table} SET name_search = ? WHERE id = ?"),
    };
    for row in rows {
        let id: uuid::Uuid = row.try_get("", "id")?;
        let name: String = row.try_get("", "name")?;
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            update.as_str(),
            [crate::db::fold_for_search(&name).into(), id.into()],
        ))
        .await?;
    }
    Ok(())
}
