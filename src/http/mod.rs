//! The HTTP edge: errors, extractors, middleware, pagination, health and the
//! OpenAPI document. Domain modules own their routes; this module owns what
//! every route shares.

pub mod error;
pub mod extract;
pub mod health;
pub mod middleware;
pub mod openapi;
pub mod pagination;
