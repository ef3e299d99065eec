#!/usr/bin/env bash
# Memory benchmark: resident memory (RSS) of the service's processes, idle
# and under load, read from /proc/<pid>/status (VmRSS now, VmHWM the peak
# since the last reset through /proc/<pid>/clear_refs).
#
#   scripts/bench_memory.sh                 # both topologies, one after the other
#   scripts/bench_memory.sh embedded        # one `serve` on SQLite, in-process cache/locks/limits
#   scripts/bench_memory.sh postgres        # `serve --role api` + `serve --role worker`
#                                           # on PostgreSQL + Redis, each process measured
#
# Per topology, on fresh processes:
#   1. idle: RSS 5 s after /health/ready answers, before any request (and
#      IDLE_WAIT seconds later, if set);
#   2. ROUNDS rounds (default 5) of the load generator's `mixed` scenario,
#      USERS virtual users (64) for DURATION (30s), in the same processes:
#      the peak while the load runs, the peak of the round's set-up (it
#      registers and signs in USERS accounts, 8 at a time: USERS × 2
#      password hashes), and the RSS SETTLE seconds (5) after the round;
#   3. a sign-in flood: FLOOD (1000) simultaneous sign-ins against 8
#      accounts, half with a wrong password, rate limits off (an attacker
#      spreading over addresses and emails): the peak, the RSS after, the
#      status counts; every answer must be 200, 401, 429 or 503 with
#      Retry-After, and transport errors are counted.
#
# Environment: DISPATCH_BIN / LOADTEST_BIN (default: the release binaries,
# built first; point DISPATCH_BIN at another build to compare), USERS,
# DURATION, ROUNDS, SETTLE, FLOOD, VERIFY (1: verify every round through the
# API, slower), BUILD (the label of the measured build in the report; default
# the checkout's commit), PG_URL (postgres://postgres@127.0.0.1:5432), REDIS_URL
# (redis://127.0.0.1:6379), OUT (folder for the reports and the service's
# logs, target/bench-memory).
# Other environment variables reach the service (PASSWORD_HASH_MEMORY_KIB, …).
# Rate limits are off: the load generator needs it.
set -euo pipefail
cd "$(dirname "$0")/.."

topologies=${1:-both}
[ "$topologies" = both ] && topologies="embedded postgres"
users=${USERS:-64}
duration=${DURATION:-30s}
rounds=${ROUNDS:-5}
settle=${SETTLE:-5}
idle_wait=${IDLE_WAIT:-0}
flood=${FLOOD:-1000}
verify=${VERIFY:-0}
pg_url=${PG_URL:-postgres://postgres@127.0.0.1:5432}
redis_url=${REDIS_URL:-redis://127.0.0.1:6379}
out=${OUT:-target/bench-memory}
mkdir -p "$out"

if [ -z "${DISPATCH_BIN:-}" ] || [ -z "${LOADTEST_BIN:-}" ]; then
  cargo build --release --quiet --bin dispatch --bin dispatch-loadtest
fi
bin=${DISPATCH_BIN:-target/release/dispatch}
loadtest=${LOADTEST_BIN:-target/release/dispatch-loadtest}
# 1 000 simultaneous connections on each side.
ulimit -n "$(( flood + 1024 ))" 2>/dev/null || ulimit -n "$(ulimit -Hn)"

work=$(mktemp -d)
pids=()
database=
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "$database" ]; then
    psql "$pg_url/postgres" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
    redis-cli -u "$redis_url" --scan --pattern "bench-memory:$database:*" 2>/dev/null \
      | xargs -r redis-cli -u "$redis_url" del >/dev/null 2>&1 || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

mib() { # KiB -> MiB; a number without unit (threads) or "gone" passes through
  case $1 in
    gone) echo gone ;;
    *) awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }' ;;
  esac
}
field() { # pid field -> its value (KiB for sizes), or "gone" if the process exited
  awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null || echo gone
}
reset_peak() { for pid in "$@"; do echo 5 >"/proc/$pid/clear_refs"; done; }

# Names and pids of the measured processes, in order.
names=()
measured=()
report=

line() { echo "$*" | tee -a "$report"; }
cells() { local text="" value; for value in "$@"; do text+=" $value |"; done; echo "$text"; }
# Prints one row: label, then one value (KiB -> MiB) per measured process.
row() {
  local label=$1 field_name=$2 values=() pid
  for pid in "${measured[@]}"; do values+=("$(mib "$(field "$pid" "$field_name")")"); done
  line "| $label |$(cells "${values[@]}")"
}
threads_row() {
  local values=() pid
  for pid in "${measured[@]}"; do values+=("$(field "$pid" Threads)"); done
  line "| $1 |$(cells "${values[@]}")"
}

# Runs the load generator; the set-up's peak is recorded and the peak
# counter reset when it says the load starts, so VmHWM afterwards is the
# load's own peak.
load() { # tag loadtest-args…
  local tag=$1; shift
  reset_peak "${measured[@]}"
  "$loadtest" --url "$url" --admin-email bench@example.com \
    --admin-password bench-memory-admin-password "$@" \
    --json "$out/$topology-$tag.json" >"$work/$tag.out" \
    2> >(while IFS= read -r text; do
           if [[ $text == run* ]]; then
             for pid in "${measured[@]}"; do field "$pid" VmHWM; done >"$work/$tag.setup"
             reset_peak "${measured[@]}"
           fi
         done) || { echo "load generator failed; its output:"; cat "$work/$tag.out"; return 1; }
  sleep 0.5  # the stderr reader finishes
}

setup_row() { # tag label
  local values=() kib
  while read -r kib; do values+=("$(mib "$kib")"); done <"$work/$1.setup"
  line "| $2 |$(cells "${values[@]}")"
}

start() { # role port-or-empty log
  if [ -n "$2" ]; then
    BIND_ADDR="127.0.0.1:$2" MIGRATE_ON_START=false "$bin" serve --role "$1" >>"$3" 2>&1 &
  else
    MIGRATE_ON_START=false "$bin" serve --role "$1" >>"$3" 2>&1 &
  fi
  echo $!
}

stop_all() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}

# As the container image sets it (see the Dockerfile); MIMALLOC_PURGE_DELAY=1000
# measures mimalloc's own default, what `cargo run` gets.
export MIMALLOC_PURGE_DELAY=${MIMALLOC_PURGE_DELAY:-0}
export LOG_LEVEL=warn SEED_DEMO_DATA=false \
  RATE_LIMIT_LOGIN=off RATE_LIMIT_LOGIN_ADDRESS=off RATE_LIMIT_REGISTER=off RATE_LIMIT_ORDERS=off \
  STRIPE_WEBHOOK_SECRETS=whsec_bench_memory SIMULATED_PAYMENT_DELAY=100ms \
  JWT_ACCESS_TTL=2h
port=3996
url="http://127.0.0.1:$port"
build=${BUILD:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
[ -n "${BUILD:-}" ] || git diff --quiet 2>/dev/null || build="$build+changes"

for topology in $topologies; do
  report="$out/$topology.md"
  : >"$report"
  export DATA_DIR="$work/$topology"
  if [ "$topology" = postgres ]; then
    database="bench_memory_$(date +%s)"
    psql "$pg_url/postgres" -qc "CREATE DATABASE $database" >/dev/null
    export DATABASE_URL="$pg_url/$database" REDIS_URL="$redis_url" \
      REDIS_KEY_PREFIX="bench-memory:$database:"
  else
    export DATABASE_URL="sqlite://$work/$topology/dispatch.db"
    unset REDIS_URL REDIS_KEY_PREFIX
  fi
  "$bin" migrate >/dev/null
  "$bin" create-admin --email bench@example.com --password bench-memory-admin-password \
    --role admin >/dev/null
  if [ "$topology" = postgres ]; then
    api=$(start api $port "$work/api.log"); pids+=("$api")
    worker=$(start worker "" "$work/worker.log"); pids+=("$worker")
    names=(api worker); measured=("$api" "$worker")
  else
    all=$(start all $port "$work/all.log"); pids+=("$all")
    names=("serve (all)"); measured=("$all")
  fi
  for _ in $(seq 150); do
    curl -fs "$url/health/ready" >/dev/null 2>&1 && break
    sleep 0.2
  done
  sleep 5

  line "### $topology: build $build, $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  line ""
  line "USERS=$users DURATION=$duration ROUNDS=$rounds FLOOD=$flood; MiB"
  line ""
  line "| measure |$(cells "${names[@]}")"
  line "|---|$(printf -- '---|%.0s' "${names[@]}")"
  row "idle (5 s after start)" VmRSS
  row "… of which file-backed (the binary's pages, shared, reclaimable)" RssFile
  threads_row "… threads"
  if [ "$idle_wait" -gt 0 ]; then
    sleep "$idle_wait"
    row "idle, $((idle_wait + 5)) s after start" VmRSS
    threads_row "… threads"
  fi

  verify_flag=(--no-verify)
  [ "$verify" = 1 ] && verify_flag=()
  for round in $(seq "$rounds"); do
    echo "  [$topology] mixed round $round …" >&2
    load "mixed-$round" --scenario mixed --users "$users" --duration "$duration" \
      --webhook-secret whsec_bench_memory "${verify_flag[@]}"
    [ "$round" = 1 ] && setup_row "mixed-1" "round 1 set-up peak ($users registrations + sign-ins)"
    row "round $round: peak under mixed load" VmHWM
    sleep "$settle"
    row "round $round: ${settle} s after" VmRSS
    grep -E '^scenario' "$work/mixed-$round.out" | sed 's/^/    /' >&2
  done
  threads_row "threads after the rounds"

  echo "  [$topology] sign-in flood of $flood …" >&2
  load flood --scenario sign-ins --users "$flood" --requests "$flood" --no-verify
  row "sign-in flood ($flood at once): peak" VmHWM
  sleep "$settle"
  row "sign-in flood: ${settle} s after" VmRSS
  line ""
  line "flood: $(grep -E '^scenario' "$work/flood.out")"
  line "flood statuses: $(grep -E '^sign-in' "$work/flood.out" | sed 's/  */ /g')"
  line ""
  stop_all
  for log in "$work"/*.log; do cp "$log" "$out/$topology-$(basename "$log")"; done
  rm -f "$work"/*.log
  if [ -n "$database" ]; then
    psql "$pg_url/postgres" -qc "DROP DATABASE IF EXISTS $database WITH (FORCE)" >/dev/null 2>&1 || true
    redis-cli -u "$redis_url" --scan --pattern "bench-memory:$database:*" 2>/dev/null \
      | xargs -r redis-cli -u "$redis_url" del >/dev/null 2>&1 || true
    database=
  fi
done
echo "reports in $out/" >&2
