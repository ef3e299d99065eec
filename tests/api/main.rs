//! API tests: the real service over HTTP, one fresh database per test, on
//! SQLite by default and on PostgreSQL + Redis when `DATABASE_URL` and
//! `REDIS_URL` are set.

mod helpers;
mod smoke;
