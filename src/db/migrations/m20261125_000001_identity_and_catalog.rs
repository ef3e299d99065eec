//! Users, addresses, sessions, items and idempotency records.

use sea_orm_migration::{prelude::*, schema::*};

use super::execute_portable;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .if_not_exists()
                    .col(pk_uuid(Users::Id))
                    .col(string_len(Users::Name, 100))
                    .col(string_len(Users::Email, 254))
                    .col(string_len(Users::PasswordHash, 200))
                    .col(string_len(Users::Role, 16))
                    .col(string_len(Users::Language, 8))
                    .col(string_len_null(Users::StripeCustomerId, 64))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Users::DeletedAt))
                    .to_owned(),
            )
            .await?;
        // Email is unique among live users only, so a deleted user's address can register again.
        let db = manager.get_connection();
        execute_portable(
            db,
            "CREATE UNIQUE INDEX IF NOT EXISTS users_email_live_key ON users (email) WHERE deleted_at IS NULL",
        )
        .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("users_created_at_id_idx")
                    .table(Users::Table)
                    .col(Users::CreatedAt)
                    .col(Users::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Addresses::Table)
                    .if_not_exists()
                    .col(pk_uuid(Addresses::Id))
                    .col(uuid_uniq(Addresses::UserId))
                    .col(string_len(Addresses::Line1, 200))
                    .col(string_len_null(Addresses::Line2, 200))
                    .col(string_len(Addresses::City, 100))
                    .col(string_len(Addresses::State, 100))
                    .col(string_len(Addresses::PostalCode, 20))
                    .col(string_len(Addresses::Country, 2))
                    .col(timestamp_with_time_zone(Addresses::CreatedAt))
                    .col(timestamp_with_time_zone(Addresses::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("addresses_user_id_fkey")
                            .from(Addresses::Table, Addresses::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .if_not_exists()
                    .col(pk_uuid(Sessions::Id))
                    .col(uuid(Sessions::UserId))
                    .col(big_integer(Sessions::RefreshGeneration))
                    .col(string_len(Sessions::RefreshTokenHash, 64))
                    .col(string_len_null(Sessions::UserAgent, 256))
                    .col(string_len_null(Sessions::Ip, 64))
                    .col(timestamp_with_time_zone(Sessions::CreatedAt))
                    .col(timestamp_with_time_zone(Sessions::LastUsedAt))
                    .col(timestamp_with_time_zone(Sessions::ExpiresAt))
                    .col(timestamp_with_time_zone_null(Sessions::RevokedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .name("sessions_user_id_fkey")
                            .from(Sessions::Table, Sessions::UserId)
                            .to(Users::Table, Users::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("sessions_user_id_idx")
                    .table(Sessions::Table)
                    .col(Sessions::UserId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Items::Table)
                    .if_not_exists()
                    .col(pk_uuid(Items::Id))
                    .col(string_len(Items::Name, 200))
                    .col(text(Items::Description))
                    .col(big_integer(Items::Price).check(Expr::col(Items::Price).gte(0)))
                    .col(string_len(Items::Currency, 3))
                    .col(big_integer(Items::Stock).check(Expr::col(Items::Stock).gte(0)))
                    .col(string_len_null(Items::PricePaymentId, 255))
                    .col(timestamp_with_time_zone(Items::CreatedAt))
                    .col(timestamp_with_time_zone(Items::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Items::DeletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("items_created_at_id_idx")
                    .table(Items::Table)
                    .col(Items::CreatedAt)
                    .col(Items::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyRecords::Table)
                    .if_not_exists()
                    .col(pk_uuid(IdempotencyRecords::Id))
                    .col(string_len(IdempotencyRecords::Scope, 300))
                    .col(string_len(IdempotencyRecords::Key, 255))
                    .col(string_len(IdempotencyRecords::Fingerprint, 64))
                    .col(string_len(IdempotencyRecords::State, 16))
                    .col(uuid_null(IdempotencyRecords::LeaseToken))
                    .col(timestamp_with_time_zone_null(
                        IdempotencyRecords::LockedUntil,
                    ))
                    .col(integer_null(IdempotencyRecords::ResponseStatus))
                    .col(text_null(IdempotencyRecords::ResponseBody))
                    .col(timestamp_with_time_zone(IdempotencyRecords::CreatedAt))
                    .col(timestamp_with_time_zone(IdempotencyRecords::ExpiresAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .unique()
                    .name("idempotency_records_scope_key_key")
                    .table(IdempotencyRecords::Table)
                    .col(IdempotencyRecords::Scope)
                    .col(IdempotencyRecords::Key)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .if_not_exists()
                    .name("idempotency_records_expires_at_idx")
                    .table(IdempotencyRecords::Table)
                    .col(IdempotencyRecords::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "idempotency_records",
            "items",
            "sessions",
            "addresses",
            "users",
        ] {
            manager
                .drop_table(
                    Table::drop()
                        .table(Alias::new(table))
                        .if_exists()
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Name,
    Email,
    PasswordHash,
    Role,
    Language,
    StripeCustomerId,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Addresses {
    Table,
    Id,
    UserId,
    Line1,
    Line2,
    City,
    State,
    PostalCode,
    Country,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    UserId,
    RefreshGeneration,
    RefreshTokenHash,
    UserAgent,
    Ip,
    CreatedAt,
    LastUsedAt,
    ExpiresAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Items {
    Table,
    Id,
    Name,
    Description,
    Price,
    Currency,
    Stock,
    PricePaymentId,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum IdempotencyRecords {
    Table,
    Id,
    Scope,
    Key,
    Fingerprint,
    State,
    LeaseToken,
    LockedUntil,
    ResponseStatus,
    ResponseBody,
    CreatedAt,
    ExpiresAt,
}
