#!/usr/bin/env python3
"""Stripe webhook signature test vectors, computed by the official `stripe`
package (PyPI) rather than by our own code.

Every signature below comes from Stripe's own `WebhookSignature`
(`generate_signature_header` / `_compute_signature`), and every vector's
`stripe_accepts` is what Stripe's own `WebhookSignature.verify_header` says
with the clock pinned to the vector's `now`, trying each secret in turn
(accepted if any secret verifies, as we do during secret rotation).

`expected` is what `dispatch::payments::signature::verify` must return:
"ok", "missing", "malformed", "no_match" or "outside_tolerance". The script
asserts that Stripe agrees (`stripe_accepts == (expected == "ok")`) except on
the vectors carrying a `note`, where our verifier is documented as stricter
than Stripe's (a timestamp too far in the future).

The Rust side is `tests/api/webhook_signature.rs`; `.ci/run` regenerates the
vectors with the latest `stripe` and points that test at them.

Usage: python3 scripts/stripe_webhook_vectors.py [OUTPUT_JSON]
       (default tests/fixtures/stripe_webhook_vectors.json)

Needs `pip install stripe` (e.g. in a venv: python3 -m venv /tmp/stripe-venv).
"""

import json
import os
import sys
import time
from unittest import mock

import stripe

try:
    from stripe import WebhookSignature
except ImportError:  # older releases only exposed it under stripe.webhook
    from stripe.webhook import WebhookSignature

try:
    from stripe import SignatureVerificationError
except ImportError:
    from stripe.error import SignatureVerificationError

DEFAULT_OUTPUT = "tests/fixtures/stripe_webhook_vectors.json"
TOLERANCE = 300  # Stripe's default, and our TOLERANCE_SECONDS
T = 1_767_225_600  # 2026-01-01T00:00:00Z: every vector's signing time

# Test-only secrets, shaped like Stripe's endpoint secrets.
SECRET = "whsec_dispatch_test_current_5Yq2Lb9TnW"
OLD_SECRET = "whsec_dispatch_test_previous_Hk3Vz8Rm1P"
OTHER_SECRET = "whsec_someone_elses_endpoint_Qx7Jd4Cs0E"

# Whitespace-sensitive JSON: Stripe signs the exact bytes it sends.
PRETTY = (
    '{\n  "id": "evt_1QdispatchTest",\n  "object": "event",\n'
    '  "type": "payment_intent.succeeded",\n'
    '  "data": {\n    "object": {\n      "id": "pi_3QdispatchTest",\n'
    '      "amount": 4200,\n      "currency": "eur"\n    }\n  }\n}\n'
)
COMPACT = json.dumps(json.loads(PRETTY), separators=(",", ":"))
# Non-ASCII UTF-8: precomposed "é" (NFC), CJK, an emoji outside the BMP.
UNICODE = (
    '{"id":"evt_2QdispatchTest","object":"event","type":"customer.updated",'
    '"data":{"object":{"name":"Zoë Café — 配送センター 🚚","city":"Zürich"}}}'
)
# The same text with "é" decomposed (NFD: "e" + U+0301): equal to a human,
# different bytes, so a different signature.
UNICODE_NFD = UNICODE.replace("\u00e9", "e\u0301")
assert UNICODE_NFD != UNICODE


def header(payload, secret, timestamp=T):
    """Stripe's own `t=...,v1=...` header for `payload`."""
    return WebhookSignature.generate_signature_header(
        payload, secret, timestamp=timestamp
    )


def v1(payload, secret, timestamp=T):
    """Stripe's own v1 signature (hex) of `payload` at `timestamp`."""
    return WebhookSignature._compute_signature(f"{timestamp}.{payload}", secret)


def stripe_accepts(payload, sig_header, secrets, now, tolerance):
    """Stripe's verdict, with its clock pinned to `now`."""
    with mock.patch.object(time, "time", return_value=float(now)):
        for secret in secrets:
            try:
                WebhookSignature.verify_header(payload, sig_header, secret, tolerance)
            except SignatureVerificationError:
                continue
            return True
    return False


FUTURE_NOTE = (
    "ours is stricter than Stripe's libraries: a timestamp more than the "
    "tolerance in the future is refused too (Stripe only refuses old ones), "
    "so stripe_accepts is true while we answer outside_tolerance"
)


def cases():
    """(name, payload, header, secrets, now, expected[, note])."""
    good = header(PRETTY, SECRET)
    return [
        ("valid", PRETTY, good, [SECRET], T, "ok"),
        ("valid compact JSON", COMPACT, header(COMPACT, SECRET), [SECRET], T, "ok"),
        (
            "valid non-ASCII UTF-8 body",
            UNICODE,
            header(UNICODE, SECRET),
            [SECRET],
            T,
            "ok",
        ),
        (
            "rotation: header signed with the second of two secrets",
            PRETTY,
            header(PRETTY, SECRET),
            [OLD_SECRET, SECRET],
            T,
            "ok",
        ),
        (
            "rotation: header signed with the first of two secrets",
            PRETTY,
            header(PRETTY, OLD_SECRET),
            [OLD_SECRET, SECRET],
            T,
            "ok",
        ),
        (
            "two v1 signatures, the second matches",
            PRETTY,
            f"t={T},v1={v1(PRETTY, OTHER_SECRET)},v1={v1(PRETTY, SECRET)}",
            [SECRET],
            T,
            "ok",
        ),
        (
            "two v1 signatures, the first matches",
            PRETTY,
            f"t={T},v1={v1(PRETTY, SECRET)},v1={v1(PRETTY, OTHER_SECRET)}",
            [SECRET],
            T,
            "ok",
        ),
        (
            "unknown v0 scheme alongside a valid v1",
            PRETTY,
            f"t={T},v0={v1(PRETTY, OTHER_SECRET)},v1={v1(PRETTY, SECRET)}",
            [SECRET],
            T,
            "ok",
        ),
        (
            "non-hex v1 alongside a valid v1",
            PRETTY,
            f"t={T},v1=not-hex-at-all,v1={v1(PRETTY, SECRET)}",
            [SECRET],
            T,
            "ok",
        ),
        (
            "timestamp just inside the tolerance (300 s old)",
            PRETTY,
            good,
            [SECRET],
            T + TOLERANCE,
            "ok",
        ),
        (
            "timestamp 299 s old",
            PRETTY,
            good,
            [SECRET],
            T + TOLERANCE - 1,
            "ok",
        ),
        (
            "timestamp just outside the tolerance (301 s old)",
            PRETTY,
            good,
            [SECRET],
            T + TOLERANCE + 1,
            "outside_tolerance",
        ),
        (
            "timestamp a day old",
            PRETTY,
            good,
            [SECRET],
            T + 86_400,
            "outside_tolerance",
        ),
        (
            "timestamp 300 s in the future",
            PRETTY,
            good,
            [SECRET],
            T - TOLERANCE,
            "ok",
        ),
        (
            "timestamp 301 s in the future",
            PRETTY,
            good,
            [SECRET],
            T - TOLERANCE - 1,
            "outside_tolerance",
            FUTURE_NOTE,
        ),
        (
            "tampered body (amount changed)",
            PRETTY.replace("4200", "4201"),
            good,
            [SECRET],
            T,
            "no_match",
        ),
        (
            "body reformatted (pretty JSON signed, compact JSON received)",
            COMPACT,
            good,
            [SECRET],
            T,
            "no_match",
        ),
        (
            "body missing its trailing newline",
            PRETTY.rstrip("\n"),
            good,
            [SECRET],
            T,
            "no_match",
        ),
        (
            "non-ASCII body re-normalised (NFC signed, NFD received)",
            UNICODE_NFD,
            header(UNICODE, SECRET),
            [SECRET],
            T,
            "no_match",
        ),
        (
            "signed with another endpoint's secret",
            PRETTY,
            header(PRETTY, OTHER_SECRET),
            [SECRET],
            T,
            "no_match",
        ),
        (
            "signed with a secret rotated out",
            PRETTY,
            header(PRETTY, OLD_SECRET),
            [SECRET],
            T,
            "no_match",
        ),
        (
            "timestamp altered after signing",
            PRETTY,
            good.replace(f"t={T}", f"t={T + 1}"),
            [SECRET],
            T,
            "no_match",
        ),
        (
            # The signature is checked before the timestamp, by Stripe and us.
            "wrong secret and stale timestamp",
            PRETTY,
            header(PRETTY, OTHER_SECRET),
            [SECRET],
            T + 86_400,
            "no_match",
        ),
        ("v1 with an empty value", PRETTY, f"t={T},v1=", [SECRET], T, "no_match"),
        (
            "header missing t",
            PRETTY,
            f"v1={v1(PRETTY, SECRET)}",
            [SECRET],
            T,
            "malformed",
        ),
        (
            "header with a non-numeric t",
            PRETTY,
            f"t=yesterday,v1={v1(PRETTY, SECRET)}",
            [SECRET],
            T,
            "malformed",
        ),
        (
            "header missing v1 (only v0)",
            PRETTY,
            f"t={T},v0={v1(PRETTY, SECRET)}",
            [SECRET],
            T,
            "malformed",
        ),
        ("header with t only", PRETTY, f"t={T}", [SECRET], T, "malformed"),
        ("empty header", PRETTY, "", [SECRET], T, "malformed"),
        ("garbage header", PRETTY, "not a signature header", [SECRET], T, "malformed"),
        ("no header at all", PRETTY, None, [SECRET], T, "missing"),
    ]


def build():
    vectors = []
    for case in cases():
        name, payload, sig_header, secrets, now, expected = case[:6]
        note = case[6] if len(case) > 6 else None
        accepted = stripe_accepts(payload, sig_header, secrets, now, TOLERANCE)
        if note is None:
            assert accepted == (expected == "ok"), (
                f"{name!r}: stripe_accepts={accepted} but expected={expected!r}"
            )
        else:
            # The documented stricter cases: Stripe accepts, we refuse.
            assert accepted and expected == "outside_tolerance", name
        vector = {
            "name": name,
            "payload": payload,
            "header": sig_header,
            "secrets": secrets,
            "now": now,
            "tolerance": TOLERANCE,
            "stripe_accepts": accepted,
            "expected": expected,
        }
        if expected == "ok":
            vector["timestamp"] = T
        if note is not None:
            vector["note"] = note
        vectors.append(vector)
    names = [v["name"] for v in vectors]
    assert len(names) == len(set(names)), "vector names must be unique"

    # Headers exactly as Stripe generates them, for comparison with our `sign`.
    signed_headers = [
        {
            "name": name,
            "payload": payload,
            "secret": secret,
            "timestamp": timestamp,
            "header": header(payload, secret, timestamp),
        }
        for name, payload, secret, timestamp in [
            ("pretty JSON", PRETTY, SECRET, T),
            ("compact JSON", COMPACT, SECRET, T),
            ("non-ASCII UTF-8", UNICODE, OLD_SECRET, T),
            ("empty body at the epoch", "", SECRET, 0),
        ]
    ]
    return {
        "generator": "scripts/stripe_webhook_vectors.py",
        "stripe_version": stripe.VERSION,
        "vectors": vectors,
        "signed_headers": signed_headers,
    }


def main():
    output = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_OUTPUT
    document = build()
    directory = os.path.dirname(output)
    if directory:
        os.makedirs(directory, exist_ok=True)
    with open(output, "w", encoding="utf-8") as file:
        json.dump(document, file, indent=2, ensure_ascii=True)
        file.write("\n")
    print(
        f"stripe {stripe.VERSION}: {len(document['vectors'])} vectors and "
        f"{len(document['signed_headers'])} signed headers written to {output}"
    )


if __name__ == "__main__":
    main()
