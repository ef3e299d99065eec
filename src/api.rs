//! The HTTP API as a whole: every domain's routes and the OpenAPI 3.1
//! document generated from their annotations.
//!
//! Like `startup`, this is composition root: the one module (with
//! `startup`) that names every domain, so `http` stays infrastructure.
//! [`api_router`] is the single place the API's routes are assembled, so the
//! served router and the document (`/api/openapi.json`, `dispatch openapi`)
//! cannot drift apart.

use axum::Router;
use utoipa::{
    Modify, OpenApi,
    openapi::security::{Http, HttpAuthScheme, SecurityScheme},
};
use utoipa_axum::router::OpenApiRouter;

use crate::{
    auth, catalog,
    http::{
        error::Problem,
        health,
        openapi::{IdLink, add_id_links, complete_responses},
    },
    jobs, notifications, orders,
    state::AppState,
    users,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Dispatch",
        description = "Order-management backend of an online shop. Errors are RFC 9457 problem+json documents with a stable `code`; send `Accept-Language: pt-BR` (or `?lang=pt-BR`) for Portuguese texts.",
        license(name = "MIT")
    ),
    components(schemas(Problem)),
    modifiers(&BearerScheme),
    tags(
        (name = "auth", description = "Sign-in, token refresh and sign-out"),
        (name = "users", description = "Registration and the caller's own account"),
        (name = "admin users", description = "Account management (admin, superadmin)"),
        (name = "catalogue", description = "The public catalogue"),
        (name = "admin catalogue", description = "Catalogue management (admin, superadmin)"),
        (name = "orders", description = "Placing orders and reading one's own"),
        (name = "admin orders", description = "Staff views and actions on orders, by role: financial (cancel, refund), shipper (ship), delivery (deliver), admin (all)"),
        (name = "notifications", description = "The caller's notifications: feed, counts, read marks, live stream"),
        (name = "payments", description = "The payment provider's signed webhook"),
        (name = "admin jobs", description = "The durable job queue: queues, jobs, retry, discard, pause (admin, superadmin)"),
        (name = "operations", description = "Health and metrics"),
    )
)]
pub struct ApiDoc;

/// Declares the `bearer` security scheme the routes refer to.
struct BearerScheme;

impl Modify for BearerScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let mut scheme = Http::new(HttpAuthScheme::Bearer);
        scheme.bearer_format = Some("JWT".to_owned());
        scheme.description =
            Some("The `accessToken` of `POST /api/v1/auth/login` or `/refresh`.".to_owned());
        components.add_security_scheme("bearer", SecurityScheme::Http(scheme));
    }
}

/// Every documented route, with the document describing them.
pub fn api_router() -> (Router<AppState>, utoipa::openapi::OpenApi) {
    let (router, mut document) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(health::router())
        .merge(auth::routes::router())
        .merge(users::routes::router())
        .merge(users::admin_routes::router())
        .merge(catalog::routes::router())
        .merge(catalog::admin_routes::router())
        .merge(orders::routes::router())
        .merge(orders::admin_routes::router())
        .merge(orders::webhook::router())
        .merge(notifications::routes::router())
        .merge(jobs::routes::router())
        .split_for_parts();
    complete_responses(&mut document);
    add_id_links(&mut document, LINKS);
    (router, document)
}

/// Where a created resource can be read and changed next (OpenAPI `links`).
const LINKS: &[IdLink] = &[
    link("create_item", 201, "admin_get_item"),
    link("create_item", 201, "update_item"),
    link("create_item", 201, "delete_item"),
    link("create_item", 201, "get_item"),
    link("create_user", 201, "get_user"),
    link("create_user", 201, "update_user"),
    link("create_user", 201, "delete_user"),
    link("register", 201, "public_profile"),
    link("create_order", 201, "get_order"),
    link("create_order", 201, "admin_get_order"),
    link("create_order", 201, "set_status"),
    link("create_order", 201, "cancel_order"),
    link("create_order", 201, "ship_order"),
    link("create_order", 201, "deliver_order"),
    link("create_order", 201, "refund_order"),
    link("create_order", 201, "delete_order"),
];

const fn link(from_operation: &'static str, status: u16, to_operation: &'static str) -> IdLink {
    IdLink {
        from_operation,
        status,
        to_operation,
    }
}

/// The document alone (for `dispatch openapi`).
pub fn document() -> utoipa::openapi::OpenApi {
    api_router().1
}
