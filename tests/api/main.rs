//! API tests: the real service over HTTP, one fresh database per test, on
//! SQLite by default and on PostgreSQL + Redis when `DATABASE_URL` and
//! `REDIS_URL` are set.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test fails loudly on the first unexpected value"
)]

mod helpers;

mod access_matrix;
mod account_jobs;
mod admin_users;
mod auth;
mod catalog;
mod dashboard;
mod edge;
mod emails;
mod idempotency;
mod jobs;
mod listen;
mod notifications;
mod operations;
mod order_crashes;
mod order_races;
mod order_requests;
mod orders;
mod pagination;
mod rate_limits;
mod revocation;
mod sign_in_throttle;
mod smoke;
mod stripe_client;
mod users;
mod validation;
mod webhook_signature;
