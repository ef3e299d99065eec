//! Integer request fields that take what the OpenAPI document allows.
//!
//! JSON Schema counts `3.0` as an integer (RFC 8259 numbers have no integer
//! type; JSON Schema's `integer` is "a number with a zero fractional part"),
//! and a Python or Java client may well write it so. serde's `i64` refuses
//! it, which would make the document promise more than the server keeps.
//! Fields documented as integers therefore deserialize through
//! [`whole_number`]: `3` and `3.0` are 3; `3.5`, `"3"` and numbers beyond
//! ±2^53 written with a fraction part are refused as the wrong type, like
//! any other non-integer. The field's range rules still apply afterwards.

use serde::{
    Deserialize, Deserializer,
    de::{Error, Unexpected},
};

/// Largest magnitude an `f64` holds exactly.
const EXACT_FLOAT_LIMIT: f64 = 9_007_199_254_740_992.0;

/// For `#[serde(deserialize_with = "whole_number")]` on an `i64`.
pub fn whole_number<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
    let number = serde_json::Number::deserialize(deserializer)?;
    if let Some(whole) = number.as_i64() {
        return Ok(whole);
    }
    match number.as_f64() {
        Some(float) if float.fract() == 0.0 && float.abs() <= EXACT_FLOAT_LIMIT => {
            // Exact: a whole float within ±2^53.
            Ok(float as i64)
        }
        Some(float) => Err(D::Error::invalid_type(
            Unexpected::Float(float),
            &"an integer",
        )),
        None => Err(D::Error::invalid_type(
            Unexpected::Other("a number out of range"),
            &"an integer",
        )),
    }
}

/// [`whole_number`] for an optional field (with `#[serde(default)]`).
pub fn optional_whole_number<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    struct Whole(#[serde(deserialize_with = "whole_number")] i64);
    Ok(Option::<Whole>::deserialize(deserializer)?.map(|Whole(n)| n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct Body {
        #[serde(deserialize_with = "whole_number")]
        count: i64,
        #[serde(default, deserialize_with = "optional_whole_number")]
        limit: Option<i64>,
    }

    fn parse(json: &str) -> Result<Body, serde_json::Error> {
        serde_json::from_str(json)
    }

    #[test]
    fn whole_numbers_with_or_without_a_fraction_part_are_integers() {
        let body = parse(r#"{"count": 3.0, "limit": 7}"#).unwrap();
        assert_eq!((body.count, body.limit), (3, Some(7)));
        assert_eq!(
            parse(r#"{"count": -2, "limit": null}"#).unwrap().limit,
            None
        );
        assert_eq!(parse(r#"{"count": 1e3}"#).unwrap().count, 1000);
    }

    #[test]
    fn fractions_strings_and_inexact_floats_are_the_wrong_type() {
        for json in [
            r#"{"count": 3.5}"#,
            r#"{"count": "3"}"#,
            r#"{"count": 1e300}"#,
            r#"{"count": 3, "limit": 0.5}"#,
        ] {
            let error = parse(json).unwrap_err().to_string();
            assert!(error.starts_with("invalid type"), "{json}: {error}");
        }
    }
}
