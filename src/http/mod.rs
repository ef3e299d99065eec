//! The HTTP edge: errors, extractors, middleware, pagination and health.
//! Domain modules own their routes and `crate::api` assembles them with the
//! OpenAPI document; this module owns what every route shares and names no
//! domain.

pub mod client_ip;
pub mod error;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod openapi;
pub mod pagination;
pub mod serve;
pub mod whole_number;
