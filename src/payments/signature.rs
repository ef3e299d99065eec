//! Stripe webhook signatures, exactly as Stripe specifies them: the
//! `Stripe-Signature` header carries `t=<unix seconds>` and one or more
//! `v1=<hex HMAC-SHA256 of "{t}.{raw body}">` (other schemes are ignored).
//! A header passes when one `v1` matches one of our secrets (several during
//! rotation), compared in constant time, and `t` is within the tolerance.
//!
//! Stricter than Stripe's own libraries on one point: a timestamp too far in
//! the *future* is refused as well, since a signer's clock that far ahead is
//! as suspect as a replay.
//!
//! About forty lines of our own instead of `async-stripe`'s webhook module:
//! that crate also parses the event into its generated types and rejects
//! objects that drift from them.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Stripe's default tolerance: five minutes.
pub const TOLERANCE_SECONDS: i64 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Stripe-Signature header is missing")]
    Missing,
    #[error("the Stripe-Signature header has no timestamp or no v1 signature")]
    Malformed,
    #[error("no v1 signature matches any webhook secret")]
    NoMatch,
    #[error("the signature's timestamp is outside the tolerance")]
    OutsideTolerance,
}

fn expected_signature(payload: &[u8], secret: &str, timestamp: i64) -> Option<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    Some(mac.finalize().into_bytes().to_vec())
}

/// Checks `header` against `payload`; returns the signed timestamp.
pub fn verify(
    payload: &[u8],
    header: Option<&str>,
    secrets: &[SecretString],
    now: i64,
    tolerance: i64,
) -> Result<i64, SignatureError> {
    let header = header.ok_or(SignatureError::Missing)?;
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            // Like Stripe's libraries: the first `t` counts.
            Some(("t", value)) if timestamp.is_none() => timestamp = value.parse::<i64>().ok(),
            Some(("v1", value)) => {
                if let Ok(bytes) = hex::decode(value) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    let matches = secrets.iter().any(|secret| {
        expected_signature(payload, secret.expose_secret(), timestamp).is_some_and(|expected| {
            signatures
                .iter()
                .any(|candidate| bool::from(candidate.as_slice().ct_eq(expected.as_slice())))
        })
    });
    if !matches {
        return Err(SignatureError::NoMatch);
    }
    if (now - timestamp).abs() > tolerance {
        return Err(SignatureError::OutsideTolerance);
    }
    Ok(timestamp)
}

/// A `Stripe-Signature` header for `payload`, as Stripe would send it (the
/// simulated gateway signs its events with this).
pub fn sign(payload: &[u8], secret: &str, timestamp: i64) -> String {
    let signature = expected_signature(payload, secret, timestamp).unwrap_or_default();
    format!("t={timestamp},v1={}", hex::encode(signature))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(values: &[&str]) -> Vec<SecretString> {
        values
            .iter()
            .map(|s| SecretString::from((*s).to_owned()))
            .collect()
    }

    #[test]
    fn a_header_signed_with_any_current_secret_passes() {
        let body = br#"{"id":"evt_1"}"#;
        let header = sign(body, "whsec_new", 1_000);
        let keys = secrets(&["whsec_old", "whsec_new"]);
        assert_eq!(verify(body, Some(&header), &keys, 1_000, 300), Ok(1_000));
    }

    #[test]
    fn a_tampered_body_fails() {
        let header = sign(b"{\"amount\":100}", "whsec_a", 1_000);
        let keys = secrets(&["whsec_a"]);
        assert_eq!(
            verify(b"{\"amount\":999}", Some(&header), &keys, 1_000, 300),
            Err(SignatureError::NoMatch)
        );
    }

    #[test]
    fn timestamps_outside_the_tolerance_fail_both_ways() {
        let body = b"{}";
        let keys = secrets(&["whsec_a"]);
        let old = sign(body, "whsec_a", 1_000);
        assert_eq!(
            verify(body, Some(&old), &keys, 1_301, 300),
            Err(SignatureError::OutsideTolerance)
        );
        assert_eq!(verify(body, Some(&old), &keys, 1_300, 300), Ok(1_000));
        assert_eq!(
            verify(body, Some(&old), &keys, 699, 300),
            Err(SignatureError::OutsideTolerance)
        );
    }

    #[test]
    fn headers_without_a_timestamp_or_v1_are_malformed() {
        let keys = secrets(&["whsec_a"]);
        assert_eq!(
            verify(b"{}", Some("v1=abcd"), &keys, 0, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"{}", Some("t=5,v0=abcd"), &keys, 5, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"{}", None, &keys, 5, 300),
            Err(SignatureError::Missing)
        );
    }
}
