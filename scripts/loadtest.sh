#!/usr/bin/env bash
# Runs dispatch-loadtest against a local topology it starts itself, and
# prints each scenario's report and verification.
#
#   scripts/loadtest.sh embedded            # one `dispatch serve` on SQLite
#   scripts/loadtest.sh postgres            # 1 api + 2 workers on PostgreSQL + Redis
#   scripts/loadtest.sh postgres chaos      # checkout while a worker is killed (-9)
#                                           # and restarted every few seconds
#
# Environment: DURATION (default 30s), USERS (default 32), PG_URL
# (default postgres://postgres@127.0.0.1:5432), REDIS_URL (default
# redis://127.0.0.1:6379), OUT (folder for the JSON reports, default
# target/loadtest). Uses release binaries (built first).
set -euo pipefail
cd "$(dirname "$0")/.."

topology=${1:-embedded}
mode=${2:-scenarios}
duration=${DURATION:-30s}
users=${USERS:-32}
pg_url=${PG_URL:-postgres://postgres@127.0.0.1:5432}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
out=${OUT:-target/loadtest}
mkdir -p "$out"

cargo build --release --quiet --bin dispatch --bin dispatch-loadtest
bin=target/release/dispatch
loadtest=target/release/dispatch-loadtest

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${database:-}" ]; then
    psql "$pg_url/postgres" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

export DATA_DIR="$work/data" LOG_LEVEL=warn SEED_DEMO_DATA=false \
  RATE_LIMIT_LOGIN=off RATE_LIMIT_LOGIN_ADDRESS=off RATE_LIMIT_REGISTER=off RATE_LIMIT_ORDERS=off \
  STRIPE_WEBHOOK_SECRETS=whsec_loadtest_secret SIMULATED_PAYMENT_DELAY=100ms \
  JWT_ACCESS_TTL=2h
port=3997
url="http://127.0.0.1:$port"

if [ "$topology" = postgres ]; then
  database="dispatch_loadtest_$(date +%s)"
  psql "$pg_url/postgres" -qc "CREATE DATABASE $database" >/dev/null
  export DATABASE_URL="$pg_url/$database" REDIS_URL="$redis_url" \
    REDIS_KEY_PREFIX="loadtest:$database:" DB_MAX_CONNECTIONS=24 JOB_LEASE=5s
else
  export DATABASE_URL="sqlite://$work/data/dispatch.db"
  unset REDIS_URL
fi

"$bin" migrate >/dev/null
"$bin" create-admin --email loadtest@example.com --password loadtest-admin-password --role admin >/dev/null

start() { # role port-or-empty log
  if [ -n "$2" ]; then
    BIND_ADDR="127.0.0.1:$2" MIGRATE_ON_START=false "$bin" serve --role "$1" >>"$3" 2>&1 &
  else
    MIGRATE_ON_START=false "$bin" serve --role "$1" >>"$3" 2>&1 &
  fi
  echo $!
}

if [ "$topology" = postgres ]; then
  pids+=("$(start api $port "$work/api.log")")
  worker1=$(start worker "" "$work/worker1.log"); pids+=("$worker1")
  worker2=$(start worker "" "$work/worker2.log"); pids+=("$worker2")
  echo "topology: 1 api + 2 workers on PostgreSQL + Redis"
else
  pids+=("$(start all $port "$work/all.log")")
  echo "topology: one process on SQLite, in-process cache/locks/limits"
fi
for _ in $(seq 100); do
  curl -fs "$url/health/ready" >/dev/null 2>&1 && break
  sleep 0.2
done

run() { # scenario json
  "$loadtest" --url "$url" --scenario "$1" --users "$users" --duration "$duration" \
    --admin-email loadtest@example.com --admin-password loadtest-admin-password \
    --webhook-secret whsec_loadtest_secret --json "$2"
}

status=0
if [ "$mode" = chaos ]; then
  [ "$topology" = postgres ] || { echo "chaos needs the postgres topology"; exit 2; }
  (
    # Kill one worker with SIGKILL every few seconds and start a new one.
    victim=$worker1
    while sleep 4; do
      kill -9 "$victim" 2>/dev/null || true
      echo "  [chaos] killed worker $victim" >&2
      sleep 1
      victim=$(start worker "" "$work/worker-chaos.log")
      echo "$victim" >>"$work/chaos.pids"
    done
  ) &
  chaos=$!
  pids+=("$chaos")
  run checkout "$out/$topology-checkout-chaos.json" || status=$?
  kill "$chaos" 2>/dev/null || true
  if [ -f "$work/chaos.pids" ]; then
    while read -r pid; do pids+=("$pid"); done <"$work/chaos.pids"
  fi
else
  for scenario in browse checkout duplicates mixed; do
    echo "=== $scenario"
    run "$scenario" "$out/$topology-$scenario.json" || status=$?
  done
fi
exit $status
