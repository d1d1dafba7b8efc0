# Shared shell settings of the project's scripts (sourced, not run).
# Paths:
#   ROOT   the repository
#   STATE  git-ignored local state of this checkout: env.sh, logs, airflow home (ROOT/.local;
#          PLATFORM_STATE_DIR overrides it, e.g. for a second stack next to the usual one, docs/tls.md)
#   DATA   service data; ROOT/.local/data when the service users can reach it, otherwise
#          /var/lib/retail-platform/<checkout-hash> (e.g. a checkout under /root, mode 700)
#   CACHE  downloads and the venv, shared by checkouts so a warm machine reinstalls nothing:
#          /var/cache/retail-platform as root, ~/.cache/retail-platform otherwise
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE="${PLATFORM_STATE_DIR:-$ROOT/.local}"
# PLATFORM_PORTS_FILE: another ports file (same variables) for a second stack on other ports
PORTS_FILE="${PLATFORM_PORTS_FILE:-$ROOT/scripts/ports.env}"
# shellcheck disable=SC1090
source "$PORTS_FILE"
if [ "$(id -u)" = 0 ]; then
  CACHE="${PLATFORM_CACHE_DIR:-/var/cache/retail-platform}"
else
  CACHE="${PLATFORM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/retail-platform}"
fi
VENV="$ROOT/.venv"
PY="$VENV/bin/python"
KAFKA_VERSION=4.4.0
LOG4J_VERSION=2.25.5
ES_VERSION=8.19.21
PG_JDBC_VERSION=42.7.14
ES_USER=esrun          # Elasticsearch refuses to run as root
PG_USER=postgres       # initdb refuses to run as root
mkdir -p "$STATE" "$CACHE"

log()  { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die()  { printf '[%s] ERROR: %s\n' "$(date +%H:%M:%S)" "$*" >&2; exit 1; }

# Run a command as a service user when we are root, as ourselves otherwise.
as_user() {
  local user="$1"; shift
  if [ "$(id -u)" = 0 ]; then runuser -u "$user" -- "$@"; else "$@"; fi
}

data_dir() {
  if [ -f "$STATE/data-dir" ]; then cat "$STATE/data-dir"; return; fi
  local d="$STATE/data"
  mkdir -p "$d"; chmod 755 "$STATE" "$d"
  if [ "$(id -u)" = 0 ] && ! runuser -u "$PG_USER" -- test -x "$d"; then
    local key="$ROOT"; [ "$STATE" = "$ROOT/.local" ] || key="$STATE"  # a second stack gets its own
    d="/var/lib/retail-platform/$(printf '%s' "$key" | sha256sum | cut -c1-12)"
    mkdir -p "$d"; chmod 755 /var/lib/retail-platform "$d"
  fi
  printf '%s\n' "$d" > "$STATE/data-dir"; printf '%s\n' "$d"
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...: poll COMMAND until it succeeds.
wait_for() {
  local secs="$1" what="$2"; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    [ "$SECONDS" -lt "$end" ] || return 1
    sleep 0.3
  done
  log "$what ready"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
