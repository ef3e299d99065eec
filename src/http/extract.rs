//! Extractors that turn every malformed input into a problem naming the field.
//!
//! - [`ValidJson`]: JSON body; unknown fields, wrong types and missing fields
//!   are 400, rule violations (`validator`) are 422. It also keeps a
//!   fingerprint of the body for idempotency keys.
//! - [`ValidQuery`]: query string, same mapping.
//! - [`Path`]: path parameters; a malformed id is 400 naming the parameter.
//! - [`ClientIp`]: the caller's address, for rate limits and sessions
//!   (`super::client_ip`).

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, rejection::PathRejection},
    http::{StatusCode, header, request::Parts},
};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};
use validator::{Validate, ValidationErrors, ValidationErrorsKind};

pub use super::client_ip::ClientIp;

use crate::http::error::{ApiError, FieldIssue, FieldIssues};

/// A JSON body, parsed strictly and validated.
#[derive(Debug)]
pub struct ValidJson<T> {
    pub value: T,
    /// SHA-256 of the body in canonical form (keys sorted, no whitespace), so a
    /// replay with reordered keys still matches its idempotency record.
    pub fingerprint: String,
}

impl<S, T> FromRequest<S> for ValidJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| {
                let mime = v
                    .split(';')
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_lowercase();
                mime == "application/json" || mime.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ));
        }
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
                } else {
                    ApiError::bad_request("body", FieldIssue::new("unreadable_body"))
                }
            })?;
        let (value, fingerprint) = parse_json(&bytes)?;
        Ok(Self { value, fingerprint })
    }
}

/// Parses and validates a JSON document; returns it with its fingerprint.
pub fn parse_json<T: DeserializeOwned + Validate>(bytes: &[u8]) -> Result<(T, String), ApiError> {
    let document: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request(
            "body",
            FieldIssue::new("malformed_json")
                .with("line", e.line())
                .with("column", e.column()),
        )
    })?;
    // Every body is a JSON object. serde would also read a struct from an
    // array of its fields in order (`[null, null]`), which no documented
    // shape allows.
    if !document.is_object() {
        return Err(ApiError::bad_request(
            "body",
            FieldIssue::new("invalid_type"),
        ));
    }
    let canonical = serde_json::to_vec(&document).unwrap_or_default();
    let fingerprint = hex::encode(Sha256::digest(&canonical));
    let value: T = serde_path_to_error::deserialize(document).map_err(|e| {
        let path = e.path().to_string();
        deserialize_problem(&path, &e.into_inner().to_string())
    })?;
    validate(&value)?;
    Ok((value, fingerprint))
}

/// Query parameters, parsed and validated. An unknown parameter is a 400
/// naming it, as an unknown JSON field is: a misspelt or outdated filter
/// (`startDate` where `from` is meant) must not quietly widen the answer.
/// `lang` is known everywhere (it picks the language of the texts).
#[derive(Debug)]
pub struct ValidQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ValidQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        let mut unknown = Vec::new();
        let mut note_unknown = |path: serde_ignored::Path<'_>| unknown.push(path.to_string());
        let noting_unknown = serde_ignored::Deserializer::new(deserializer, &mut note_unknown);
        let value: T = serde_path_to_error::deserialize(noting_unknown).map_err(|e| {
            let path = e.path().to_string();
            deserialize_problem(&path, &e.into_inner().to_string())
        })?;
        if let Some(name) = unknown.into_iter().find(|name| name != LANGUAGE_PARAMETER) {
            return Err(ApiError::bad_request(
                name,
                FieldIssue::new("unknown_parameter"),
            ));
        }
        validate(&value)?;
        Ok(Self(value))
    }
}

/// The query parameter every route reads for the language of its texts
/// (`crate::i18n`), whatever its own parameters.
const LANGUAGE_PARAMETER: &str = "lang";

/// Path parameters; a malformed value is a 400 naming the parameter.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<S, T> FromRequestParts<S> for Path<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            Err(PathRejection::FailedToDeserializePathParams(e)) => {
                use axum::extract::path::ErrorKind;
                let field = match e.kind() {
                    ErrorKind::ParseErrorAtKey { key, .. }
                    | ErrorKind::InvalidUtf8InPathParam { key } => key.clone(),
                    _ => "id".to_owned(),
                };
                Err(ApiError::bad_request(field, FieldIssue::new("invalid_id")))
            }
            Err(other) => Err(ApiError::internal(&other)),
        }
    }
}

/// Maps a serde error at `path` to a 400 naming the field.
fn deserialize_problem(path: &str, message: &str) -> ApiError {
    let base = if path == "." {
        String::new()
    } else {
        path.to_owned()
    };
    let join = |name: &str| {
        if base.is_empty() {
            name.to_owned()
        } else {
            format!("{base}.{name}")
        }
    };
    let quoted = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(str::to_owned)
    };
    if let Some(name) = quoted("unknown field `") {
        // serde_path_to_error's path already ends at the unknown field.
        let field = if base.is_empty() { name } else { base };
        ApiError::bad_request(field, FieldIssue::new("unknown_field"))
    } else if let Some(name) = quoted("missing field `") {
        ApiError::bad_request(join(&name), FieldIssue::new("required"))
    } else if message.starts_with("invalid type") {
        let field = if base.is_empty() {
            "body".to_owned()
        } else {
            base
        };
        ApiError::bad_request(field, FieldIssue::new("invalid_type"))
    } else {
        let field = if base.is_empty() {
            "body".to_owned()
        } else {
            base
        };
        ApiError::bad_request(field, FieldIssue::new("invalid_value"))
    }
}

/// Runs `validator` rules; violations are a 422 naming each field (camelCase,
/// as on the wire).
pub fn validate<T: Validate>(value: &T) -> Result<(), ApiError> {
    value.validate().map_err(|errors| {
        let mut fields = FieldIssues::new();
        collect_issues(&errors, "", &mut fields);
        ApiError::validation(fields)
    })
}

/// A name people read (a person's, an item's): `min..=max` characters, not
/// blank, no control characters (C0 and DEL). It is stored trimmed. The
/// OpenAPI document states the same rule with [`NAME_PATTERN`] and the
/// lengths, so a client can check a name before sending it; the length is
/// counted on the text as sent, like JSON Schema's `maxLength`.
pub fn name_text(text: &str, min: usize, max: usize) -> Result<(), validator::ValidationError> {
    let length = text.chars().count();
    if !(min..=max).contains(&length) {
        let mut error = validator::ValidationError::new("length");
        error.add_param("min".into(), &min);
        error.add_param("max".into(), &max);
        return Err(error);
    }
    if text.chars().any(|c| c <= '\u{1f}' || c == '\u{7f}') {
        return Err(validator::ValidationError::new("control_characters"));
    }
    if text.trim().is_empty() {
        return Err(validator::ValidationError::new("blank"));
    }
    Ok(())
}

/// [`name_text`] as a JSON Schema pattern: no C0 control character or DEL,
/// and at least one character that is not white space.
pub const NAME_PATTERN: &str = "^[^\\x00-\\x1F\\x7F]*[^\\s\\x00-\\x1F\\x7F][^\\x00-\\x1F\\x7F]*$";

/// Validates a value nested under `field` (for shapes `#[validate(nested)]`
/// cannot reach, such as the `Option<Option<T>>` of a PATCH).
pub fn validate_nested<T: Validate>(field: &str, value: &T) -> Result<(), ApiError> {
    value.validate().map_err(|errors| {
        let mut fields = FieldIssues::new();
        collect_issues(&errors, &format!("{field}."), &mut fields);
        ApiError::validation(fields)
    })
}

fn collect_issues(errors: &ValidationErrors, prefix: &str, into: &mut FieldIssues) {
    for (field, kind) in errors.errors() {
        let name = if field == "__all__" {
            prefix.trim_end_matches('.').to_owned()
        } else {
            format!("{prefix}{}", camel_case(field))
        };
        match kind {
            ValidationErrorsKind::Field(list) => {
                for error in list {
                    let mut issue = FieldIssue::new(error.code.clone());
                    for (param, value) in &error.params {
                        if param != "value" {
                            let text = value
                                .as_str()
                                .map_or_else(|| value.to_string(), str::to_owned);
                            issue = issue.with(param, text);
                        }
                    }
                    into.entry(name.clone()).or_default().push(issue);
                }
            }
            ValidationErrorsKind::Struct(inner) => collect_issues(inner, &format!("{name}."), into),
            ValidationErrorsKind::List(items) => {
                for (index, inner) in items {
                    collect_issues(inner, &format!("{name}[{index}]."), into);
                }
            }
        }
    }
}

fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serde_messages_name_the_field() {
        let e = deserialize_problem("colour", "unknown field `colour`, expected one of `name`");
        assert!(e.fields.contains_key("colour"));
        let e = deserialize_problem(
            "address.floor",
            "unknown field `floor`, expected one of `city`",
        );
        assert!(e.fields.contains_key("address.floor"));
        let e = deserialize_problem("address", "missing field `city`");
        assert!(e.fields.contains_key("address.city"));
        let e = deserialize_problem(
            "items[0].quantity",
            "invalid type: string \"a\", expected u32",
        );
        assert_eq!(e.fields["items[0].quantity"][0].code, "invalid_type");
    }

    #[test]
    fn camel_case_matches_the_wire_names() {
        assert_eq!(camel_case("current_password"), "currentPassword");
        assert_eq!(camel_case("name"), "name");
    }
}
