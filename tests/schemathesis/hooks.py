"""schemathesis hooks for scripts/schema_fuzz.sh.

The fuzzer draws `Idempotency-Key` values from a small space and reuses
them with different bodies, which Dispatch rightly refuses with 422
`idempotency_key_reused`; the document cannot say "a key is single-use".
A well-formed key is therefore replaced by a fresh one before each call, so
a schema-valid request is judged on its body. Malformed keys are left as
generated: their 400 is what the negative checks test.
"""

import re
import uuid

import schemathesis

WELL_FORMED_KEY = re.compile(r"[\x21-\x7e]{1,255}")


@schemathesis.hook
def before_call(context, case, kwargs):
    headers = case.headers or {}
    key = headers.get("Idempotency-Key")
    if isinstance(key, str) and WELL_FORMED_KEY.fullmatch(key):
        headers["Idempotency-Key"] = f"fuzz-{uuid.uuid4()}"
