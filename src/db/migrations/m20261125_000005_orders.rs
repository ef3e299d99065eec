//! Orders and payments: `orders`, `order_lines`, `order_events` (the
//! timeline), `payments`, `refunds`, `payment_events` (webhook dedupe), and
//! the recovery point of an idempotency record (`resource_id`).

use sea_orm_migration::{prelude::*, schema::*};

use super::execute_portable;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        create_orders(manager).await?;
        create_order_lines(manager).await?;
        create_order_events(manager).await?;
        create_payments(manager).await?;
        create_refunds(manager).await?;
        create_payment_events(manager).await?;
        add_idempotency_resource(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            "payment_events",
            "refunds",
            "payments",
            "order_events",
            "order_lines",
            "orders",
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

async fn index(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    execute_portable(manager.get_connection(), sql).await
}

async fn create_orders(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Orders::Table)
                .if_not_exists()
                .col(pk_uuid(Orders::Id))
                .col(uuid(Orders::UserId))
                .col(string_len(Orders::Status, 16))
                .col(string_len(Orders::Currency, 3))
                .col(big_integer(Orders::Total).check(Expr::col(Orders::Total).gte(0)))
                .col(string_len_null(Orders::TrackingNumber, 100))
                .col(string_len_null(Orders::Carrier, 100))
                .col(timestamp_with_time_zone_null(Orders::ShippedAt))
                .col(timestamp_with_time_zone_null(Orders::DeliveredAt))
                .col(timestamp_with_time_zone_null(Orders::CanceledAt))
                .col(timestamp_with_time_zone_null(Orders::RefundedAt))
                .col(timestamp_with_time_zone(Orders::ExpiresAt))
                .col(timestamp_with_time_zone_null(Orders::DeletedAt))
                .col(timestamp_with_time_zone(Orders::CreatedAt))
                .col(timestamp_with_time_zone(Orders::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("orders_user_id_fkey")
                        .from(Orders::Table, Orders::UserId)
                        .to(Users::Table, Users::Id),
                )
                .to_owned(),
        )
        .await?;
    // A user's orders, newest first; staff lists by status or by time.
    index(
        manager,
        "CREATE INDEX IF NOT EXISTS orders_user_created_idx ON orders (user_id, created_at, id)",
    )
    .await?;
    index(
        manager,
        "CREATE INDEX IF NOT EXISTS orders_status_created_idx ON orders (status, created_at, id)",
    )
    .await?;
    index(
        manager,
        "CREATE INDEX IF NOT EXISTS orders_created_idx ON orders (created_at, id)",
    )
    .await
}

async fn create_order_lines(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(OrderLines::Table)
                .if_not_exists()
                .col(pk_uuid(OrderLines::Id))
                .col(uuid(OrderLines::OrderId))
                .col(uuid(OrderLines::ItemId))
                .col(string_len(OrderLines::ItemName, 200))
                .col(big_integer(OrderLines::UnitPrice))
                .col(big_integer(OrderLines::Quantity).check(Expr::col(OrderLines::Quantity).gt(0)))
                .col(big_integer(OrderLines::LineTotal))
                .foreign_key(
                    ForeignKey::create()
                        .name("order_lines_order_id_fkey")
                        .from(OrderLines::Table, OrderLines::OrderId)
                        .to(Orders::Table, Orders::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .name("order_lines_item_id_fkey")
                        .from(OrderLines::Table, OrderLines::ItemId)
                        .to(Items::Table, Items::Id),
                )
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "CREATE UNIQUE INDEX IF NOT EXISTS order_lines_order_item_key ON order_lines (order_id, item_id)",
    )
    .await
}

async fn create_order_events(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(OrderEvents::Table)
                .if_not_exists()
                .col(pk_uuid(OrderEvents::Id))
                .col(uuid(OrderEvents::OrderId))
                .col(string_len_null(OrderEvents::FromStatus, 16))
                .col(string_len(OrderEvents::ToStatus, 16))
                .col(string_len(OrderEvents::Actor, 64))
                .col(string_len_null(OrderEvents::Reason, 500))
                .col(timestamp_with_time_zone(OrderEvents::At))
                .foreign_key(
                    ForeignKey::create()
                        .name("order_events_order_id_fkey")
                        .from(OrderEvents::Table, OrderEvents::OrderId)
                        .to(Orders::Table, Orders::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "CREATE INDEX IF NOT EXISTS order_events_order_at_idx ON order_events (order_id, at, id)",
    )
    .await
}

async fn create_payments(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Payments::Table)
                .if_not_exists()
                .col(pk_uuid(Payments::Id))
                .col(uuid(Payments::OrderId))
                .col(string_len(Payments::Provider, 16))
                .col(string_len_null(Payments::ProviderPaymentId, 255))
                .col(string_len_null(Payments::ClientSecret, 255))
                .col(big_integer(Payments::Amount))
                .col(string_len(Payments::Currency, 3))
                .col(string_len(Payments::Status, 32))
                .col(timestamp_with_time_zone(Payments::CreatedAt))
                .col(timestamp_with_time_zone(Payments::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("payments_order_id_fkey")
                        .from(Payments::Table, Payments::OrderId)
                        .to(Orders::Table, Orders::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "CREATE UNIQUE INDEX IF NOT EXISTS payments_order_id_key ON payments (order_id)",
    )
    .await?;
    index(
        manager,
        "CREATE UNIQUE INDEX IF NOT EXISTS payments_provider_payment_id_key ON payments (provider_payment_id) WHERE provider_payment_id IS NOT NULL",
    )
    .await
}

async fn create_refunds(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(Refunds::Table)
                .if_not_exists()
                .col(pk_uuid(Refunds::Id))
                .col(uuid(Refunds::PaymentId))
                .col(uuid(Refunds::OrderId))
                .col(string_len_null(Refunds::ProviderRefundId, 255))
                .col(big_integer(Refunds::Amount))
                .col(string_len(Refunds::Currency, 3))
                .col(string_len(Refunds::Status, 32))
                .col(string_len_null(Refunds::Reason, 500))
                .col(timestamp_with_time_zone(Refunds::CreatedAt))
                .col(timestamp_with_time_zone(Refunds::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .name("refunds_payment_id_fkey")
                        .from(Refunds::Table, Refunds::PaymentId)
                        .to(Payments::Table, Payments::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
    // One full refund per payment: a second request to refund finds this row.
    index(
        manager,
        "CREATE UNIQUE INDEX IF NOT EXISTS refunds_payment_id_key ON refunds (payment_id)",
    )
    .await?;
    index(
        manager,
        "CREATE UNIQUE INDEX IF NOT EXISTS refunds_provider_refund_id_key ON refunds (provider_refund_id) WHERE provider_refund_id IS NOT NULL",
    )
    .await
}

async fn create_payment_events(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    manager
        .create_table(
            Table::create()
                .table(PaymentEvents::Table)
                .if_not_exists()
                .col(pk_uuid(PaymentEvents::Id))
                .col(string_len(PaymentEvents::ProviderEventId, 255))
                .col(string_len(PaymentEvents::EventType, 100))
                .col(timestamp_with_time_zone(PaymentEvents::ReceivedAt))
                .col(timestamp_with_time_zone_null(PaymentEvents::ProcessedAt))
                .to_owned(),
        )
        .await?;
    index(
        manager,
        "CREATE UNIQUE INDEX IF NOT EXISTS payment_events_provider_event_id_key ON payment_events (provider_event_id)",
    )
    .await?;
    index(
        manager,
        "CREATE INDEX IF NOT EXISTS payment_events_received_at_idx ON payment_events (received_at)",
    )
    .await
}

async fn add_idempotency_resource(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    if manager
        .has_column("idempotency_records", "resource_id")
        .await?
    {
        return Ok(());
    }
    manager
        .alter_table(
            Table::alter()
                .table(IdempotencyRecords::Table)
                .add_column(uuid_null(IdempotencyRecords::ResourceId))
                .to_owned(),
        )
        .await
}

#[derive(DeriveIden)]
enum Orders {
    Table,
    Id,
    UserId,
    Status,
    Currency,
    Total,
    TrackingNumber,
    Carrier,
    ShippedAt,
    DeliveredAt,
    CanceledAt,
    RefundedAt,
    ExpiresAt,
    DeletedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderLines {
    Table,
    Id,
    OrderId,
    ItemId,
    ItemName,
    UnitPrice,
    Quantity,
    LineTotal,
}

#[derive(DeriveIden)]
enum OrderEvents {
    Table,
    Id,
    OrderId,
    FromStatus,
    ToStatus,
    Actor,
    Reason,
    At,
}

#[derive(DeriveIden)]
enum Payments {
    Table,
    Id,
    OrderId,
    Provider,
    ProviderPaymentId,
    ClientSecret,
    Amount,
    Currency,
    Status,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Refunds {
    Table,
    Id,
    PaymentId,
    OrderId,
    ProviderRefundId,
    Amount,
    Currency,
    Status,
    Reason,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum PaymentEvents {
    Table,
    Id,
    ProviderEventId,
    EventType,
    ReceivedAt,
    ProcessedAt,
}

#[derive(DeriveIden)]
enum IdempotencyRecords {
    Table,
    ResourceId,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Items {
    Table,
    Id,
}
