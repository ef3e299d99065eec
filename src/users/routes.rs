//! `/api/v1/users`: registration, the caller's own account, public profiles.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;
use validator::Validate;

use super::{
    UserError,
    email::{Email, validate_email},
    language::Language,
    queries::{self, NewUser, UserChanges},
    role::Role,
    views::{AddressInput, PublicProfile, UserView, password_rules, person_name, present},
};
use crate::{
    auth::{
        extract::AuthUser,
        sessions,
        throttle::{Account, SignInThrottle},
    },
    http::{
        error::{ApiError, Problem},
        extract::{ClientIp, Path, ValidJson, validate_nested},
    },
    idempotency::{self, Claimed, IdempotencyKey},
    jobs::{self, NewJob},
    notifications::{
        deliver::Deliver,
        event::{EmailChange, NotificationEvent},
    },
    rate_limit::{Limit, check_ip_and_account},
    state::AppState,
    users::customer_sync::{CustomerSync, SyncAction},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(register))
        .routes(routes!(get_me, update_me, delete_me))
        .routes(routes!(public_profile))
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RegisterRequest {
    #[validate(custom(function = "person_name"))]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1F\\x7F]*[^\\s\\x00-\\x1F\\x7F][^\\x00-\\x1F\\x7F]*$"
    )]
    pub name: String,
    #[validate(custom(function = "validate_email"))]
    #[schema(format = Email, min_length = 3, max_length = 254)]
    #[schema(example = "shopper@example.com")]
    pub email: String,
    /// 8 to 128 characters.
    #[validate(custom(function = "password_rules"))]
    #[schema(min_length = 8, max_length = 128)]
    #[schema(format = Password)]
    pub password: String,
    #[serde(default)]
    pub language: Option<Language>,
    #[validate(nested)]
    pub address: Option<AddressInput>,
}

/// What creating an account needs, from registration or the admin API.
pub(super) struct AccountInput {
    pub name: String,
    pub email: Email,
    pub password: String,
    pub role: Role,
    pub language: Option<Language>,
    pub address: Option<AddressInput>,
}

/// Creates an account under an idempotency key; shared by registration and
/// the admin API.
pub(super) async fn create_account(
    state: &AppState,
    key: &IdempotencyKey,
    caller: Option<Uuid>,
    fingerprint: &str,
    input: AccountInput,
) -> Result<Response, ApiError> {
    let claim = match idempotency::claim(
        &state.db,
        key,
        caller,
        fingerprint,
        state.config.idempotency_lease,
    )
    .await?
    {
        Claimed::Replay(response) => return Ok(response),
        Claimed::Proceed(claim) => claim,
    };
    let password_hash = state
        .passwords
        .hash(&SecretString::from(input.password))
        .await
        .map_err(UserError::from)?;
    let txn = state.db.begin_write().await?;
    let user = queries::insert(
        &*txn,
        NewUser {
            name: input.name.trim().to_owned(),
            email: input.email,
            password_hash,
            role: input.role,
            language: input.language.unwrap_or_default(),
        },
    )
    .await?;
    queries::set_address(&*txn, user.id, input.address).await?;
    jobs::enqueue(
        &txn,
        NewJob::of(&CustomerSync::new(user.id, SyncAction::Create)),
    )
    .await?;
    let view = queries::view(&*txn, user.id)
        .await?
        .ok_or(UserError::NotFound)?;
    let response = claim.complete(&*txn, StatusCode::CREATED, &view).await?;
    txn.commit().await?;
    claim.committed();
    tracing::info!(user.id = %view.id, user.role = view.role.as_str(), "account created");
    Ok(response)
}

/// Registers a shopper account.
#[utoipa::path(
    post, path = "/api/v1/users", tag = "users",
    params(("Idempotency-Key" = String, Header, description = "Required; a unique value per account to create")),
    request_body = RegisterRequest,
    responses(
        (status = 201, description = "Registered", body = UserView),
        (status = 400, description = "Malformed request or missing Idempotency-Key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email taken, or the same key is in flight", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid values, or the key was used with another body", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many registrations; see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn register(
    State(state): State<AppState>,
    ClientIp(ip): ClientIp,
    key: IdempotencyKey,
    ValidJson {
        value: body,
        fingerprint,
    }: ValidJson<RegisterRequest>,
) -> Result<Response, ApiError> {
    check_ip_and_account(state.rate_limiter.as_ref(), Limit::Register, ip, None).await?;
    let input = AccountInput {
        name: body.name,
        email: Email::parse(&body.email).map_err(UserError::from)?,
        password: body.password,
        role: Role::User,
        language: body.language,
        address: body.address,
    };
    create_account(&state, &key, None, &fingerprint, input).await
}

/// The caller's account.
#[utoipa::path(
    get, path = "/api/v1/users/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller's account", body = UserView),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn get_me(State(state): State<AppState>, user: AuthUser) -> Result<Json<UserView>, ApiError> {
    let view = queries::view(state.db.conn(), user.id)
        .await?
        .ok_or(UserError::NotFound)?;
    Ok(Json(view))
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct UpdateMeRequest {
    #[validate(custom(function = "person_name"))]
    #[schema(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\x00-\\x1F\\x7F]*[^\\s\\x00-\\x1F\\x7F][^\\x00-\\x1F\\x7F]*$"
    )]
    pub name: Option<String>,
    /// A new email address; needs `currentPassword` when it differs from
    /// the current one. Ends the caller's other sessions.
    #[validate(custom(function = "validate_email"))]
    #[schema(format = Email, min_length = 3, max_length = 254)]
    pub email: Option<String>,
    pub language: Option<Language>,
    /// An address replaces the current one; `null` removes it.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<AddressInput>)]
    pub address: Option<Option<AddressInput>>,
    /// A new password; needs `currentPassword`. Ends the caller's other sessions.
    #[validate(custom(function = "password_rules"))]
    #[schema(min_length = 8, max_length = 128)]
    #[schema(format = Password)]
    pub password: Option<String>,
    /// Required to change `password` or `email`. Checked through the sign-in
    /// throttle, like a sign-in.
    #[validate(length(min = 1, max = 128, code = "length"))]
    #[schema(min_length = 1, max_length = 128)]
    #[schema(format = Password)]
    pub current_password: Option<String>,
}

/// Changes the caller's name, email, language, address or password.
///
/// Changing the password or the email needs `currentPassword` (so a stolen
/// access token cannot take the account over) and ends the caller's other
/// sessions; an email change is told in-app (`account.email_changed`).
#[utoipa::path(
    patch, path = "/api/v1/users/me", tag = "users",
    security(("bearer" = [])),
    request_body = UpdateMeRequest,
    responses(
        (status = 200, description = "Updated account", body = UserView),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email taken", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid values, or `currentPassword` missing or wrong", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many `currentPassword` checks for this account from this address, or from this address; see Retry-After", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many password checks at once (`server_busy`); see Retry-After", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn update_me(
    State(state): State<AppState>,
    user: AuthUser,
    ClientIp(ip): ClientIp,
    ValidJson { value: body, .. }: ValidJson<UpdateMeRequest>,
) -> Result<Json<UserView>, ApiError> {
    if let Some(Some(address)) = &body.address {
        validate_nested("address", address)?;
    }
    let email = Email::parse_optional(body.email.as_deref()).map_err(UserError::from)?;
    let current = queries::find_live(state.db.conn(), user.id)
        .await?
        .ok_or(UserError::NotFound)?;
    let email_change = email
        .as_ref()
        .filter(|new| new.as_str() != current.email)
        .map(|new| EmailChange {
            previous: super::email::mask(&current.email),
            new: new.masked(),
        });
    if body.password.is_some() || email_change.is_some() {
        let given = body
            .current_password
            .clone()
            .ok_or(UserError::CurrentPasswordRequired)?;
        check_current_password(&state, &current, SecretString::from(given), ip).await?;
    }
    let password_hash = match &body.password {
        Some(new_password) => Some(
            state
                .passwords
                .hash(&SecretString::from(new_password.clone()))
                .await?,
        ),
        None => None,
    };
    let ends_other_sessions = password_hash.is_some() || email_change.is_some();
    let customer_changed = body.name.is_some() || body.email.is_some();

    let txn = state.db.begin_write().await?;
    let current = queries::find_live(&*txn, user.id)
        .await?
        .ok_or(UserError::NotFound)?;
    let changes = UserChanges {
        name: body.name.map(|n| n.trim().to_owned()),
        email,
        password_hash,
        role: None,
        language: body.language,
    };
    queries::update(&*txn, current, changes).await?;
    if let Some(address) = body.address {
        queries::set_address(&*txn, user.id, address).await?;
    }
    if ends_other_sessions {
        sessions::revoke_all_of_user(&*txn, user.id, Some(user.session_id)).await?;
    }
    if let Some(change) = email_change {
        let told = Deliver {
            user_id: user.id,
            event: NotificationEvent::EmailChanged(change),
        };
        jobs::enqueue(&txn, NewJob::of(&told)).await?;
    }
    if customer_changed {
        jobs::enqueue(
            &txn,
            NewJob::of(&CustomerSync::new(user.id, SyncAction::Update)),
        )
        .await?;
    }
    let view = queries::view(&*txn, user.id)
        .await?
        .ok_or(UserError::NotFound)?;
    txn.commit().await?;
    state.sessions.invalidate_user(user.id).await;
    Ok(Json(view))
}

/// Checks `given` against the account's password through the sign-in
/// throttle: the same counters as signing in with the account's email, so a
/// stolen access token gives no more guesses than the login form.
async fn check_current_password(
    state: &AppState,
    account: &super::user::Model,
    given: SecretString,
    ip: Option<std::net::IpAddr>,
) -> Result<(), ApiError> {
    let throttle: &SignInThrottle = &state.sign_in_throttle;
    let pending = throttle.begin(Account::Email(&account.email), ip).await?;
    match state
        .passwords
        .verify(&given, Some(account.password_hash.clone()))
        .await
    {
        Ok(true) => {
            pending.succeeded().await;
            Ok(())
        }
        Ok(false) => {
            pending.failed().await;
            Err(UserError::WrongCurrentPassword.into())
        }
        Err(e) => {
            pending.unchecked().await;
            Err(e.into())
        }
    }
}

/// Deletes the caller's account (soft delete) and ends all its sessions.
/// The email can register again.
#[utoipa::path(
    delete, path = "/api/v1/users/me", tag = "users",
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Account deleted"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn delete_me(State(state): State<AppState>, user: AuthUser) -> Result<StatusCode, ApiError> {
    delete_account(&state, user.id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Soft-deletes an account and ends its sessions.
pub(super) async fn delete_account(state: &AppState, user_id: Uuid) -> Result<(), ApiError> {
    let txn = state.db.begin_write().await?;
    if !queries::soft_delete(&*txn, user_id).await? {
        return Err(UserError::NotFound.into());
    }
    sessions::revoke_all_of_user(&*txn, user_id, None).await?;
    jobs::enqueue(
        &txn,
        NewJob::of(&CustomerSync::new(user_id, SyncAction::Delete)),
    )
    .await?;
    txn.commit().await?;
    state.sessions.invalidate_user(user_id).await;
    tracing::info!(user.id = %user_id, "account deleted");
    Ok(())
}

/// Another user's public profile.
#[utoipa::path(
    get, path = "/api/v1/users/{id}", tag = "users",
    security(("bearer" = [])),
    params(("id" = Uuid, Path, description = "User id")),
    responses(
        (status = 200, description = "Public profile", body = PublicProfile),
        (status = 400, description = "Malformed id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Not signed in", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user", body = Problem, content_type = "application/problem+json"),
    )
)]
async fn public_profile(
    State(state): State<AppState>,
    _user: AuthUser,
    Path(id): Path<Uuid>,
) -> Result<Json<PublicProfile>, ApiError> {
    let user = queries::find_live(state.db.conn(), id)
        .await?
        .ok_or(UserError::NotFound)?;
    Ok(Json(PublicProfile {
        id: user.id,
        name: user.name,
        created_at: user.created_at,
    }))
}
