//! The shapes of users on the wire, and the address input they share.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;
use validator::{Validate, ValidationError};

use super::{address, language::Language, role::Role, user};

/// A user as the user themself and admins see them.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: Uuid,
    pub name: String,
    pub email: String,
    pub role: Role,
    pub language: Language,
    pub address: Option<AddressView>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl UserView {
    pub fn new(user: user::Model, address: Option<address::Model>) -> Self {
        Self {
            id: user.id,
            name: user.name,
            email: user.email,
            role: user.role,
            language: user.language,
            address: address.map(AddressView::from),
            created_at: user.created_at,
            updated_at: user.updated_at,
        }
    }
}

/// What anyone signed in may see of another user.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PublicProfile {
    pub id: Uuid,
    pub name: String,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct AddressView {
    pub line1: String,
    pub line2: Option<String>,
    pub city: String,
    pub state: String,
    pub postal_code: String,
    pub country: String,
}

impl From<address::Model> for AddressView {
    fn from(a: address::Model) -> Self {
        Self {
            line1: a.line1,
            line2: a.line2,
            city: a.city,
            state: a.state,
            postal_code: a.postal_code,
            country: a.country,
        }
    }
}

/// A postal address; all of it or none of it.
#[derive(Debug, Clone, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AddressInput {
    #[validate(length(min = 1, max = 200, code = "length"))]
    #[schema(min_length = 1, max_length = 200)]
    pub line1: String,
    #[validate(length(min = 0, max = 200, code = "length"))]
    #[schema(min_length = 0, max_length = 200)]
    pub line2: Option<String>,
    #[validate(length(min = 1, max = 100, code = "length"))]
    #[schema(min_length = 1, max_length = 100)]
    pub city: String,
    #[validate(length(min = 1, max = 100, code = "length"))]
    #[schema(min_length = 1, max_length = 100)]
    pub state: String,
    #[validate(length(min = 1, max = 20, code = "length"))]
    #[schema(min_length = 1, max_length = 20)]
    pub postal_code: String,
    /// ISO 3166-1 alpha-2 code, e.g. `BR`.
    #[validate(custom(function = "country_code"))]
    #[schema(pattern = "^[A-Za-z]{2}$")]
    #[schema(example = "BR")]
    pub country: String,
}

fn country_code(code: &str) -> Result<(), ValidationError> {
    if code.len() == 2 && code.chars().all(|c| c.is_ascii_alphabetic()) {
        Ok(())
    } else {
        Err(ValidationError::new("country_code"))
    }
}

/// A person's name: 1 to 100 characters, not blank (stored trimmed).
pub fn person_name(name: &str) -> Result<(), ValidationError> {
    crate::http::extract::name_text(name, 1, 100)
}

/// Password rules: long enough to resist guessing, short enough to hash cheaply.
pub fn password_rules(password: &str) -> Result<(), ValidationError> {
    let length = password.chars().count();
    if (8..=128).contains(&length) {
        Ok(())
    } else {
        let mut error = ValidationError::new("length");
        error.add_param("min".into(), &8);
        error.add_param("max".into(), &128);
        Err(error)
    }
}

/// Distinguishes an absent field (`None`) from an explicit `null`
/// (`Some(None)`) in PATCH bodies: absent leaves a value alone, null clears it.
pub fn present<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    T: Deserialize<'de>,
    D: Deserializer<'de>,
{
    Option::<T>::deserialize(deserializer).map(Some)
}
