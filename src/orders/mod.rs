//! Orders: placing them (stock reserved, PaymentIntent created with recovery
//! points), reading them, staff actions, and the life cycle of docs/spec.md §4.1.
//!
//! Nothing outside this module writes an order's status: every change goes
//! through [`transition::transition`], a compare-and-set on the status whose
//! effects (timeline, stock, refund record, jobs) commit with it.

pub mod admin_routes;
pub mod cancel_payment;
pub mod jobs;
pub mod model;
pub mod payment_outcomes;
pub mod place;
pub mod queries;
pub mod reconcile;
pub mod refunds;
pub mod routes;
pub mod status;
pub mod transition;
pub mod views;
pub mod webhook;
