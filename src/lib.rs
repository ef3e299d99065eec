//! Dispatch: the order-management backend of an online shop.
//!
//! The crate is organised one module per domain (auth, users, catalog, …), each
//! owning its routes, rules and queries, plus small shared infrastructure
//! modules. `ARCHITECTURE.md` at the repository root is the map.

rust_i18n::i18n!("locales", fallback = "en");

/// mimalloc instead of the system allocator: a request allocates and frees
/// many small buffers (statements, rows, JSON), and glibc's malloc and free
/// took about a tenth of the service's CPU in a profile of the orders bench
/// (2026-11 sessions; the figures are in `git log -p docs/benchmarks.md`). Set here, in the library, so the binaries, the
/// tests and the benches (which run the service in-process) all measure the
/// same service. The `system-allocator` feature leaves it out, for heap
/// profilers that see only malloc (valgrind's dhat and massif; see
/// docs/benchmarks.md).
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The HTTP API assembled: every domain's routes and the OpenAPI document (composition root).
pub mod api;
/// Authentication: login, token refresh and rotation, sessions, the `AuthUser` extractor.
pub mod auth;
/// Cache-aside store (Redis or in-process) behind one interface.
pub mod cache;
/// Catalogue: items, their public and staff views, stock.
pub mod catalog;
/// Typed configuration, loaded from defaults, `dispatch.toml` and the environment.
pub mod config;
/// Database connection (SQLite or PostgreSQL), transactions, migrations, shared column conventions.
pub mod db;
/// Demo data seeded in development.
pub mod demo;
/// `std` to `chrono` durations, with the one conversion policy.
pub mod duration;
/// HTTP foundation: problem+json errors, extractors, middleware, OpenAPI, health.
pub mod http;
/// Localised messages (`en`, `pt-BR`).
pub mod i18n;
/// Idempotency keys for `POST` requests that create something.
pub mod idempotency;
/// Durable background jobs: transactional queue, workers, scheduler.
pub mod jobs;
/// Connection to Redis, shared by cache, rate limits, locks and session revocation.
pub mod kv;
/// Locks that save duplicate work (Redis or in-process); never needed for correctness.
pub mod locks;
/// Money: minor units with a validated currency, and checked arithmetic.
pub mod money;
/// Notifications recorded for users: the feed, read marks and the live stream (SSE).
pub mod notifications;
/// Orders: placement, reading, staff actions and the life cycle.
pub mod orders;
/// Keyset pagination for queries: cursors, page requests and pages.
pub mod pagination;
/// Payments, the provider side: gateway (Stripe or simulated), payment and refund records, webhook verification.
pub mod payments;
/// Owner-only files and folders (the SQLite database, development secrets) and the start-up check of their modes.
pub mod private_files;
/// Rate limits (Redis or in-process) behind one interface.
pub mod rate_limit;
/// Application start-up: state, router, listeners, graceful shutdown.
pub mod startup;
/// Shared application state handed to handlers.
pub mod state;
/// Logging and metrics set-up.
pub mod telemetry;
/// Users, their addresses and roles.
pub mod users;
