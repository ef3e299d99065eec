#!/usr/bin/env bash
# Checks the deployment files without running the stack (no Docker daemon
# needed). Run from anywhere: bash deploy/validate.sh
#
#   - Prometheus: promtool check config / check rules / test rules
#   - Grafana dashboard and alert expressions vs the metrics in src/
#     (deploy/check_dashboard.py)
#   - compose.yaml: `docker compose config` when the compose plugin exists,
#     otherwise Compose v1 (`docker-compose config`, on a copy without the
#     top-level `name:` that v1 predates)
#   - Caddyfile: `caddy validate`
#
# Tools come from Debian (apt-get install prometheus caddy docker-compose);
# a missing tool is reported as SKIPPED, a failing check makes the script
# exit 1. Loki, Promtail and Grafana are not packaged where our machines can
# reach: their configs are checked only by running the stack.
set -uo pipefail
cd "$(dirname "$0")/.."

failed=0
run() { # name, command…
  local name=$1; shift
  printf '\n== %s\n$ %s\n' "$name" "$*"
  if "$@"; then echo "-> PASS"; else echo "-> FAIL"; failed=1; fi
}
skip() { printf '\n== %s\n-> SKIPPED: %s\n' "$1" "$2"; }

if command -v promtool >/dev/null; then
  run "prometheus config" promtool check config deploy/prometheus/prometheus.yml
  run "alert rules" promtool check rules deploy/prometheus/alerts.yml
  run "alert rule tests" promtool test rules deploy/prometheus/alerts_test.yml
else
  skip "prometheus" "promtool not installed (apt-get install prometheus)"
fi

run "dashboard and alert expressions vs src/" python3 deploy/check_dashboard.py

# Required compose variables get throwaway values; the env file is the example.
compose_env=(env POSTGRES_PASSWORD=validate GRAFANA_ADMIN_PASSWORD=validate DISPATCH_ENV_FILE=.env.example)
if docker compose version >/dev/null 2>&1; then
  run "compose file (docker compose)" "${compose_env[@]}" docker compose -f compose.yaml --env-file .env.example config --quiet
elif command -v docker-compose >/dev/null; then
  copy=$(mktemp --suffix=.yaml -p .)
  trap 'rm -f "$copy"' EXIT
  sed '/^name: /d' compose.yaml > "$copy"
  run "compose file (Compose v1, without the top-level name:)" \
    "${compose_env[@]}" docker-compose -f "$copy" --env-file .env.example config --quiet
else
  skip "compose file" "neither the docker compose plugin nor docker-compose is installed"
fi

if command -v caddy >/dev/null; then
  run "Caddyfile" caddy validate --config deploy/caddy/Caddyfile --adapter caddyfile
else
  skip "Caddyfile" "caddy not installed (apt-get install caddy)"
fi

skip "loki, promtail, grafana" "no binaries here; checked when the stack starts"

if [ "$failed" = 0 ]; then echo; echo "all checks that could run passed"; fi
exit "$failed"
