//! Reading a page request from the `limit` and `cursor` query parameters
//! (pagination in `docs/spec.md`); the page types themselves are [`crate::pagination`]'s, so
//! queries need not depend on the HTTP edge.

use crate::http::error::{ApiError, FieldIssue};
pub use crate::pagination::{Cursor, DEFAULT_LIMIT, MAX_LIMIT, Page, PageRequest};

impl PageRequest {
    /// From the raw `limit` and `cursor` query parameters.
    pub fn parse(limit: Option<u64>, cursor: Option<&str>) -> Result<Self, ApiError> {
        let limit = limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::validation(Default::default()).with_field(
                "limit",
                FieldIssue::new("range")
                    .with("min", 1)
                    .with("max", MAX_LIMIT),
            ));
        }
        let after = match cursor.filter(|c| !c.is_empty()) {
            Some(text) => Some(Cursor::decode(text).ok_or_else(|| {
                ApiError::bad_request("cursor", FieldIssue::new("invalid_cursor"))
            })?),
            None => None,
        };
        Ok(Self { limit, after })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_1_to_100_are_refused() {
        assert!(PageRequest::parse(Some(0), None).is_err());
        assert!(PageRequest::parse(Some(101), None).is_err());
        assert_eq!(PageRequest::parse(None, None).unwrap().limit, 20);
        assert!(PageRequest::parse(None, Some("not a cursor")).is_err());
    }
}
