//! Users: registration, the caller's own account, public profiles and the
//! admin users API with the level rules of docs/spec.md §3.1.

pub mod address;
pub mod admin_routes;
pub mod customer_sync;
pub mod email;
pub mod language;
pub mod queries;
pub mod role;
pub mod routes;
pub mod user;
pub mod views;

use axum::http::StatusCode;

use self::email::EmailError;
use crate::{
    auth::password::PasswordError,
    http::error::{ApiError, FieldIssue},
};

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("a live account already uses this email")]
    EmailTaken,
    /// Unreachable behind the request validators, which apply the same rules.
    #[error(transparent)]
    InvalidEmail(#[from] EmailError),
    #[error("user not found")]
    NotFound,
    /// Granting or touching a level at or above the actor's own.
    #[error("role not allowed")]
    RoleNotAllowed,
    #[error("changing the password needs the current password")]
    CurrentPasswordRequired,
    #[error("the current password is wrong")]
    WrongCurrentPassword,
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error(transparent)]
    Database(#[from] sea_orm::DbErr),
}

impl From<UserError> for ApiError {
    fn from(err: UserError) -> Self {
        match err {
            UserError::EmailTaken => ApiError::new(StatusCode::CONFLICT, "email_taken")
                .with_field("email", FieldIssue::new("email_taken")),
            UserError::InvalidEmail(e) => {
                let issue = e
                    .params()
                    .iter()
                    .fold(FieldIssue::new(e.code()), |issue, (name, value)| {
                        issue.with(name, value)
                    });
                ApiError::validation(Default::default()).with_field("email", issue)
            }
            UserError::NotFound => ApiError::not_found(),
            UserError::RoleNotAllowed => ApiError::new(StatusCode::FORBIDDEN, "role_not_allowed"),
            UserError::CurrentPasswordRequired => ApiError::validation(Default::default())
                .with_field("currentPassword", FieldIssue::new("required")),
            UserError::WrongCurrentPassword => ApiError::validation(Default::default())
                .with_field("currentPassword", FieldIssue::new("wrong_password")),
            UserError::Password(e) => e.into(),
            UserError::Database(e) => ApiError::internal(&e),
        }
    }
}
