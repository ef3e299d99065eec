#!/usr/bin/env bash
# Schema fuzzing: runs schemathesis (pinned below) against a fresh embedded
# Dispatch (SQLite, simulated gateway) three times — as the demo admin, as a
# plain user and anonymously — with every check on. It fails on any 5xx,
# response that breaks the document, undocumented status, schema-valid
# request refused or schema-invalid request accepted (the exceptions the
# document cannot express are in tests/schemathesis/schemathesis.toml, each
# with its reason).
#
#   scripts/schema_fuzz.sh                 # EXAMPLES=20 per operation and phase
#
# Environment: DISPATCH_BIN (default target/debug/dispatch, built if
# missing), EXAMPLES, SCHEMATHESIS_VENV (reuse a venv that has the pinned
# version), REPORT_DIR (JUnit reports; default a temporary folder).
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
bin=${DISPATCH_BIN:-target/debug/dispatch}
examples=${EXAMPLES:-20}
work=$(mktemp -d)
report_dir=${REPORT_DIR:-$work/reports}
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

[ -x "$bin" ] || cargo build --quiet --bin dispatch

venv=${SCHEMATHESIS_VENV:-$work/venv}
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$SCHEMATHESIS_VERSION"; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
env -u DATABASE_URL -u REDIS_URL DATA_DIR="$work/data" BIND_ADDR="127.0.0.1:$port" \
  LOG_LEVEL=warn "$bin" serve >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 60); do
  curl -fs "$base/health/ready" >/dev/null 2>&1 && break
  sleep 0.5
done
curl -fs "$base/health/ready" >/dev/null || { cat "$work/server.log"; echo "FATAL: Dispatch did not start" >&2; exit 1; }

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)['$1'])"; }
sign_in() { # email password -> access token
  curl -fs -X POST "$base/api/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$1\",\"password\":\"$2\"}" | json_field accessToken
}
admin_password=$(sed -n 's/.*Sign in as admin@dispatch.local with password \([^ ]*\) .*/\1/p' "$work/server.log")
admin_token=$(sign_in admin@dispatch.local "$admin_password")
curl -fs -X POST "$base/api/v1/users" -H 'content-type: application/json' \
  -H 'Idempotency-Key: schema-fuzz-user' \
  -d '{"name":"Fuzz Shopper","email":"fuzz@example.com","password":"fuzz-password-1"}' >/dev/null
user_token=$(sign_in fuzz@example.com fuzz-password-1)

# Sign-outs and account deletion would end the very session the run uses;
# they are fuzzed anonymously only. The live stream never ends by design.
session_enders=(--exclude-operation-id logout --exclude-operation-id logout_all
  --exclude-operation-id delete_me)
fuzz() { # name, access token ("" = anonymous), extra arguments...
  local name=$1 token=$2
  shift 2
  local started=$SECONDS config="$work/$name.toml"
  # The token goes through schemathesis' own auth settings (not -H), so its
  # "missing Authorization" scenarios really send none.
  cp tests/schemathesis/schemathesis.toml "$config"
  if [ -n "$token" ]; then
    printf '\n[auth.openapi.bearer]\nbearer = "%s"\n' "$token" >>"$config"
  fi
  echo "== schemathesis as $name"
  "$venv/bin/schemathesis" --config-file "$config" run \
    "$base/api/openapi.json" --checks all --max-examples "$examples" \
    --exclude-operation-id stream --generation-database none --no-color \
    --report junit --report-junit-path "$report_dir/$name.xml" "$@"
  echo "== schemathesis as $name: $((SECONDS - started)) s"
}
status=0
fuzz admin "$admin_token" "${session_enders[@]}" || status=1
fuzz user "$user_token" "${session_enders[@]}" || status=1
fuzz anonymous "" || status=1
if grep -q "panicked" "$work/server.log"; then
  echo "FATAL: the server panicked during fuzzing" >&2
  grep -B2 -A10 panicked "$work/server.log" >&2
  status=1
fi
exit $status
