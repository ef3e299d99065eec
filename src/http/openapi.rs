//! Completes the generated OpenAPI document with what the shared HTTP layers
//! answer on every route, so each operation lists every status it can give.
//!
//! A route's `#[utoipa::path]` documents what its own handler decides (its
//! 404s, 409s, 422s, role checks). The answers of the layers every route
//! shares are added here, once, from the operation's shape, so a new route
//! cannot forget them and two routes cannot describe them differently:
//!
//! | the operation has        | the shared layer                          | statuses      |
//! |--------------------------|-------------------------------------------|---------------|
//! | a JSON request body      | `ValidJson` (syntax, type, size, media, rules) | 400, 413, 415, 422 |
//! | path parameters          | `Path` (malformed id), the lookup         | 400, 404      |
//! | query parameters         | `ValidQuery` (type, unknown parameter, rules) | 400, 422  |
//! | bearer security          | `AuthUser` (missing, expired, revoked)    | 401           |
//! | an `Idempotency-Key`     | `idempotency` (format, in flight, reuse)  | 400, 409, 422 |
//! | anything                 | database/Redis outage, request timeout    | 503           |
//!
//! 429 and 503 carry `Retry-After`. A description a route wrote itself is
//! kept; only missing statuses are added.

use utoipa::openapi::{
    ContentBuilder, HeaderBuilder, ObjectBuilder, OpenApi, RefOr, Required, ResponseBuilder, Type,
    link::LinkBuilder,
    path::{Operation, ParameterIn, PathItem},
    schema::Ref,
};

const PROBLEM_JSON: &str = "application/problem+json";

/// The `Idempotency-Key` rule of `crate::idempotency::key`, as a pattern.
pub const IDEMPOTENCY_KEY_PATTERN: &str = "^[\\x21-\\x7E]{1,255}$";

/// Adds the shared layers' statuses to every operation of `document`.
pub fn complete_responses(document: &mut OpenApi) {
    for item in document.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            complete_operation(operation);
        }
    }
}

fn operations_mut(item: &mut PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        item.get.as_mut(),
        item.put.as_mut(),
        item.post.as_mut(),
        item.delete.as_mut(),
        item.patch.as_mut(),
    ]
    .into_iter()
    .flatten()
}

fn complete_operation(operation: &mut Operation) {
    let parameters: Vec<(ParameterIn, String)> = operation
        .parameters
        .iter()
        .flatten()
        .filter_map(|p| match p {
            RefOr::T(p) => Some((p.parameter_in.clone(), p.name.clone())),
            RefOr::Ref(_) => None,
        })
        .collect();
    let has = |place: ParameterIn| parameters.iter().any(|(p, _)| *p == place);
    if operation.request_body.is_some() {
        add_problem(
            operation,
            400,
            "The body is not JSON of the documented shape",
        );
        add_problem(operation, 413, "The body is larger than `BODY_LIMIT`");
        add_problem(operation, 415, "The body is not `application/json`");
        add_problem(
            operation,
            422,
            "A value breaks a documented rule (see `errors`)",
        );
    }
    if has(ParameterIn::Path) {
        add_problem(operation, 400, "A path parameter is malformed");
        add_problem(operation, 404, "No such resource");
    }
    if has(ParameterIn::Query) {
        add_problem(operation, 400, "A query parameter is malformed or unknown");
        add_problem(
            operation,
            422,
            "A query parameter breaks a documented rule (see `errors`)",
        );
    }
    if operation
        .security
        .as_ref()
        .is_some_and(|requirements| !requirements.is_empty())
    {
        add_problem(
            operation,
            401,
            "Not signed in (no, an expired or a revoked access token)",
        );
    }
    if document_idempotency_key(operation) {
        add_problem(
            operation,
            400,
            "`Idempotency-Key` is missing or not 1–255 visible ASCII characters",
        );
        add_problem(
            operation,
            409,
            "A request with this `Idempotency-Key` is still in flight (see `Retry-After`)",
        );
        add_problem(
            operation,
            422,
            "This `Idempotency-Key` was used with a different request",
        );
    }
    add_problem(
        operation,
        503,
        "The database or a required service is unavailable, or the request timed out; retry after `Retry-After` seconds",
    );
    for status in ["429", "503"] {
        if let Some(RefOr::T(response)) = operation.responses.responses.get_mut(status) {
            response
                .headers
                .entry("Retry-After".to_owned())
                .or_insert_with(retry_after_header);
        }
    }
}

/// Gives the `Idempotency-Key` header parameter its exact rule; true if the
/// operation takes one.
fn document_idempotency_key(operation: &mut Operation) -> bool {
    let mut found = false;
    for parameter in operation.parameters.iter_mut().flatten() {
        if let RefOr::T(parameter) = parameter
            && parameter.parameter_in == ParameterIn::Header
            && parameter.name == "Idempotency-Key"
        {
            parameter.required = Required::True;
            parameter.schema = Some(RefOr::T(
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .min_length(Some(1))
                    .max_length(Some(255))
                    .pattern(Some(IDEMPOTENCY_KEY_PATTERN))
                    .into(),
            ));
            found = true;
        }
    }
    found
}

fn add_problem(operation: &mut Operation, status: u16, description: &str) {
    operation
        .responses
        .responses
        .entry(status.to_string())
        .or_insert_with(|| problem_response(description));
}

fn problem_response(description: &str) -> RefOr<utoipa::openapi::Response> {
    RefOr::T(
        ResponseBuilder::new()
            .description(description)
            .content(
                PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            )
            .build(),
    )
}

fn retry_after_header() -> RefOr<utoipa::openapi::header::Header> {
    RefOr::T(
        HeaderBuilder::new()
            .schema(Some(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(1)),
            ))
            .description(Some("Seconds to wait before trying again"))
            .build(),
    )
}

/// An OpenAPI link from one operation's response to another operation whose
/// `id` path parameter is the `id` of the response body, so clients and
/// stateful testing can chain a create to its reads and updates.
pub struct IdLink {
    pub from_operation: &'static str,
    pub status: u16,
    pub to_operation: &'static str,
}

/// Adds `links` to the responses they start from. Panics (at start-up, and in
/// the document test) if a link names an operation the document lacks.
pub fn add_id_links(document: &mut OpenApi, links: &[IdLink]) {
    let known: Vec<String> = document
        .paths
        .paths
        .values()
        .flat_map(|item| [&item.get, &item.put, &item.post, &item.delete, &item.patch])
        .flatten()
        .filter_map(|op| op.operation_id.clone())
        .collect();
    for link in links {
        assert!(
            known.iter().any(|id| id == link.to_operation),
            "OpenAPI link to unknown operation {}",
            link.to_operation
        );
    }
    for item in document.paths.paths.values_mut() {
        for operation in operations_mut(item) {
            let Some(id) = operation.operation_id.clone() else {
                continue;
            };
            for link in links.iter().filter(|l| l.from_operation == id) {
                let Some(RefOr::T(response)) = operation
                    .responses
                    .responses
                    .get_mut(&link.status.to_string())
                else {
                    panic!("OpenAPI link from {id} {}: no such response", link.status);
                };
                response.links.insert(
                    link.to_operation.to_owned(),
                    RefOr::T(
                        LinkBuilder::new()
                            .operation_id(link.to_operation)
                            .parameter("id", "$response.body#/id")
                            .build(),
                    ),
                );
            }
        }
    }
}
