//! Our Stripe webhook verifier against vectors computed by the official
//! `stripe` Python package (`scripts/stripe_webhook_vectors.py`), not by our
//! code. `.ci/run` regenerates them with the latest `stripe` and points
//! `STRIPE_WEBHOOK_VECTORS` at the fresh file; otherwise the committed
//! `tests/fixtures/stripe_webhook_vectors.json` is used.

use std::path::PathBuf;

use dispatch::payments::signature::{SignatureError, sign, verify};
use secrecy::SecretString;
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Vectors {
    stripe_version: String,
    vectors: Vec<Vector>,
    signed_headers: Vec<SignedHeader>,
}

#[derive(Debug, Deserialize)]
struct Vector {
    name: String,
    payload: String,
    header: Option<String>,
    secrets: Vec<String>,
    now: i64,
    tolerance: i64,
    stripe_accepts: bool,
    expected: String,
    /// The signed timestamp `verify` returns, on the accepted vectors.
    timestamp: Option<i64>,
    /// Why we deliberately disagree with Stripe (we are stricter).
    note: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SignedHeader {
    name: String,
    payload: String,
    secret: String,
    timestamp: i64,
    header: String,
}

fn load() -> (PathBuf, Vectors) {
    let path = std::env::var_os("STRIPE_WEBHOOK_VECTORS").map_or_else(
        || {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures/stripe_webhook_vectors.json")
        },
        PathBuf::from,
    );
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let vectors =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    (path, vectors)
}

fn outcome(result: Result<i64, SignatureError>) -> &'static str {
    match result {
        Ok(_) => "ok",
        Err(SignatureError::Missing) => "missing",
        Err(SignatureError::Malformed) => "malformed",
        Err(SignatureError::NoMatch) => "no_match",
        Err(SignatureError::OutsideTolerance) => "outside_tolerance",
    }
}

#[test]
fn our_webhook_verifier_agrees_with_the_official_stripe_library() {
    let (path, file) = load();
    assert!(
        !file.vectors.is_empty(),
        "{} holds no vectors",
        path.display()
    );
    let mut failures = Vec::new();
    for vector in &file.vectors {
        let name = &vector.name;
        // The file itself: Stripe's verdict must match ours, except where a
        // note documents that we are stricter (a far-future timestamp).
        match &vector.note {
            None => assert_eq!(
                vector.stripe_accepts,
                vector.expected == "ok",
                "vector {name:?}: stripe_accepts contradicts expected {:?}",
                vector.expected
            ),
            Some(note) => assert!(
                vector.stripe_accepts && vector.expected == "outside_tolerance",
                "vector {name:?}: only a stricter outside_tolerance may differ from Stripe ({note})"
            ),
        }
        let secrets: Vec<SecretString> = vector
            .secrets
            .iter()
            .map(|s| SecretString::from(s.clone()))
            .collect();
        let result = verify(
            vector.payload.as_bytes(),
            vector.header.as_deref(),
            &secrets,
            vector.now,
            vector.tolerance,
        );
        if outcome(result) != vector.expected {
            failures.push(format!(
                "vector {name:?}: expected {}, got {result:?}",
                vector.expected
            ));
        } else if let (Ok(signed_at), Some(timestamp)) = (result, vector.timestamp)
            && signed_at != timestamp
        {
            failures.push(format!(
                "vector {name:?}: returned timestamp {signed_at}, expected {timestamp}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} vectors from stripe {} ({}) disagree:\n{}",
        failures.len(),
        file.vectors.len(),
        file.stripe_version,
        path.display(),
        failures.join("\n")
    );
    // A truncated or regenerated-but-broken file must not pass vacuously.
    for wanted in [
        "ok",
        "missing",
        "malformed",
        "no_match",
        "outside_tolerance",
    ] {
        assert!(
            file.vectors.iter().any(|v| v.expected == wanted),
            "{} has no {wanted:?} vector",
            path.display()
        );
    }
}

#[test]
fn our_signed_header_is_byte_for_byte_the_one_the_official_stripe_library_generates() {
    let (path, file) = load();
    assert!(
        !file.signed_headers.is_empty(),
        "{} holds no signed headers",
        path.display()
    );
    for case in &file.signed_headers {
        assert_eq!(
            sign(case.payload.as_bytes(), &case.secret, case.timestamp),
            case.header,
            "signed header {:?} (stripe {})",
            case.name,
            file.stripe_version
        );
    }
}
