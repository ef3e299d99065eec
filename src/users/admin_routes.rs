//! `/api/v1/admin/users`: account management for admins and superadmins.
//!
//! Rules (docs/spec.md §3.1): only `admin` and `superadmin` reach these routes; an
//! actor may only grant roles below their own level and only change or
//! delete accounts below their own level, so superadmins are untouchable here
//! (`dispatch create-admin` is the way to make one).

use axum::{Json, extract::State, http::StatusCode, response::Response};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::{
    UserError,
    email::{Email, validate_email},
    language::Language,
    queries::{self, UserChanges, UserFilter},
    role::Role,
    routes::{AccountInput, create_account, delete_account},
    views::{AddressInput, UserView, password_rules, person_name, present},
};
use crate::{
    auth::{extract::AuthUser, sessions},
    http::{
        error::{ApiError, Problem},
        extract::{Path, ValidJson, ValidQuery, validate_nested},
        pagination::{Page, PageRequest},
    },
    idempotency::IdempotencyKey,
    jobs::{self, NewJob},
    state::AppState,
    users::customer_sync::{CustomerSync, SyncAction},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_users, create_user))
        .routes(routes!(get_user, update_user, delete_user))
}

fn require_account_manager(actor: &AuthUser) -> Result<(), ApiError> {
    actor.require(Role::is_admin)
}

#[derive(Debug, Deserialize, Validate, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct UserListQuery {
    /// Part of the name, any case.
    #[validate(custom(function = "person_name"))]
    #[param(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1F\\x7F]*[^\\s\\x00-\\x1F\\x7F][^\\x00-\\x1F\\x7F]*$"
    )]
    pub name: Option<String>,
    /// Part of the email, any case.
    #[validate(length(min = 1, max = 254, code = "length"))]
    #[param(min_length = 1, max_length = 254)]
    pub email: Option<String>,
    pub role: Option<Role>,
    /// 1–100, default 20.
    #[param(minimum = 1, maximum = 100)]
    pub limit: Option<u64>,
    /// `nextCursor` of the previous page.
    pub cursor: Option<String>,
}

/// Lists live users, newest first.
#[utoipa::path(
    get, path = "/api/v1/admin/users", tag = "admin users",
    security(("bearer" = [])),
    params(UserListQuery),
    responses(
        (status = 200, description = "A page of users", body = Page<UserView>),
        (status = 400, description = "Malformed filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn list_users(
    State(state): State<AppState>,
    actor: AuthUser,
    ValidQuery(query): ValidQuery<UserListQuery>,
) -> Result<Json<Page<UserView>>, ApiError> {
    require_account_manager(&actor)?;
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let filter = UserFilter {
        name: query.name,
        email: query.email,
        role: query.role,
    };
    Ok(Json(queries::list(state.db.conn(), &filter, &page).await?))
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateUserRequest {
    #[validate(custom(function = "person_name"))]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1F\\x7F]*[^\\s\\x00-\\x1F\\x7F][^\\x00-\\x1F\\x7F]*$"
    )]
    pub name: String,
    #[validate(custom(function = "validate_email"))]
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: String,
    #[validate(custom(function = "password_rules"))]
    #[schema(min_length = 8, max_length = 128)]
    #[schema(format = Password)]
    pub password: String,
    /// Must be below the caller's own level. Optional: a plain `user`, as the
    /// earlier service did when it was left out.
    #[serde(default = "plain_user")]
    #[schema(default = "user")]
    pub role: Role,
    pub language: Option<Language>,
    #[validate(nested)]
    pub address: Option<AddressInput>,
}

fn plain_user() -> Role {
    Role::User
}

/// Creates an account with a role below the caller's own.
#[utoipa::path(
    post, path = "/api/v1/admin/users", tag = "admin users",
    security(("bearer" = [])),
    params(("Idempotency-Key" = String, Header, description = "Required; a unique value per account to create")),
    request_body = CreateUserRequest,
    responses(
        (status = 201, description = "Created", body = UserView),
        (status = 400, description = "Malformed request or missing Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or the role is at or above the caller's", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email taken, or the key is in flight", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid values, or the key was used with another body", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn create_user(
    State(state): State<AppState>,
    actor: AuthUser,
    key: IdempotencyKey,
    ValidJson {
        value: body,
        fingerprint,
    }: ValidJson<CreateUserRequest>,
) -> Result<Response, ApiError> {
    require_account_manager(&actor)?;
    if !actor.role.may_grant(body.role) {
        return Err(UserError::RoleNotAllowed.into());
    }
    let input = AccountInput {
        name: body.name,
        email: Email::parse(&body.email).map_err(UserError::from)?,
        password: body.password,
        role: body.role,
        language: body.language,
        address: body.address,
    };
    create_account(&state, &key, Some(actor.id), &fingerprint, input).await
}

/// One user, in full.
#[utoipa::path(
    get, path = "/api/v1/admin/users/{id}", tag = "admin users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "The user", body = UserView),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_user(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<UserView>, ApiError> {
    require_account_manager(&actor)?;
    let view = queries::view(state.db.conn(), id)
        .await?
        .ok_or(UserError::NotFound)?;
    Ok(Json(view))
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AdminUpdateUserRequest {
    #[validate(custom(function = "person_name"))]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1F\\x7F]*[^\\s\\x00-\\x1F\\x7F][^\\x00-\\x1F\\x7F]*$"
    )]
    pub name: Option<String>,
    #[validate(custom(function = "validate_email"))]
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: Option<String>,
    /// Must be below the caller's own level.
    pub role: Option<Role>,
    pub language: Option<Language>,
    /// An address replaces the current one; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<AddressInput>)]
    pub address: Option<Option<AddressInput>>,
    /// Sets a new password and ends all of the user's sessions.
    #[validate(custom(function = "password_rules"))]
    #[schema(min_length = 8, max_length = 128)]
    #[schema(format = Password)]
    pub password: Option<String>,
}

/// Changes an account below the caller's level.
#[utoipa::path(
    patch, path = "/api/v1/admin/users/{id}", tag = "admin users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    request_body = AdminUpdateUserRequest,
    responses(
        (status = 200, description = "Updated", body = UserView),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or the account or role is at or above the caller's level", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid values", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_user(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<Uuid>,
    ValidJson { value: body, .. }: ValidJson<AdminUpdateUserRequest>,
) -> Result<Json<UserView>, ApiError> {
    require_account_manager(&actor)?;
    if let Some(Some(address)) = &body.address {
        validate_nested("address", address)?;
    }
    let email = Email::parse_optional(body.email.as_deref()).map_err(UserError::from)?;
    if body.role.is_some_and(|role| !actor.role.may_grant(role)) {
        return Err(UserError::RoleNotAllowed.into());
    }
    let password_hash = match &body.password {
        Some(password) => Some(
            state
                .passwords
                .hash(&SecretString::from(password.clone()))
                .await
                .map_err(UserError::from)?,
        ),
        None => None,
    };
    let ends_sessions = password_hash.is_some();
    let customer_changed = body.name.is_some() || body.email.is_some();

    let txn = state.db.begin_write().await?;
    let target = queries::find_live(&*txn, id)
        .await?
        .ok_or(UserError::NotFound)?;
    if !actor.role.may_manage(target.role) {
        return Err(UserError::RoleNotAllowed.into());
    }
    let changes = UserChanges {
        name: body.name.map(|n| n.trim().to_owned()),
        email,
        password_hash,
        role: body.role,
        language: body.language,
    };
    queries::update(&*txn, target, changes).await?;
    if let Some(address) = body.address {
        queries::set_address(&*txn, id, address).await?;
    }
    if ends_sessions {
        sessions::revoke_all_of_user(&*txn, id, None).await?;
    }
    if customer_changed {
        jobs::enqueue(&txn, NewJob::of(&CustomerSync::new(id, SyncAction::Update))).await?;
    }
    let view = queries::view(&*txn, id).await?.ok_or(UserError::NotFound)?;
    txn.commit().await?;
    state.sessions.invalidate_user(id).await;
    tracing::info!(actor.id = %actor.id, user.id = %id, "account changed by an admin");
    Ok(Json(view))
}

/// Deletes (soft) an account below the caller's level and ends its sessions.
#[utoipa::path(
    delete, path = "/api/v1/admin/users/{id}", tag = "admin users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 204, description = "Deleted"),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not an admin, or the account is at or above the caller's level", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_user(
    State(state): State<AppState>,
    actor: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    require_account_manager(&actor)?;
    let target = queries::find_live(state.db.conn(), id)
        .await?
        .ok_or(UserError::NotFound)?;
    if !actor.role.may_manage(target.role) {
        return Err(UserError::RoleNotAllowed.into());
    }
    delete_account(&state, id).await?;
    tracing::info!(actor.id = %actor.id, user.id = %id, "account deleted by an admin");
    Ok(StatusCode::NO_CONTENT)
}
