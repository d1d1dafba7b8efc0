#!/usr/bin/env bash
# Entrypoint of the platform's Airflow image (../../Dockerfile; docker-compose, docs/compose.md).
#
# Exports every file of $PLATFORM_ENV_DIR as the environment variable of its name, then hands over to the
# official image's entrypoint (/entrypoint). scripts/compose/secrets_init.py writes that directory (volume
# airflow-secrets, owned by AIRFLOW_UID, mode 400): the AIRFLOW_CONN_* connections, whose keys and passwords come
# from the compose secrets, and the task-log handler's Elasticsearch credentials. Airflow has no _CMD variant for
# those (its own keys use AIRFLOW__..._CMD instead), and the project's code outside the hooks reads the same
# AIRFLOW_CONN_* variables (include/connections.py). The values only exist in the processes' environment: not in
# docker-compose.yml, not in `docker inspect`, not in any log.
#
# PLATFORM_ENV_DIR unset or empty: nothing is exported (the one-shots that run before secrets-init).
# PLATFORM_ENV_DIR set but missing or empty: the container stops with a message (secrets-init has not run).
set -euo pipefail

if [ -n "${PLATFORM_ENV_DIR:-}" ]; then
  n=0
  if [ -d "$PLATFORM_ENV_DIR" ]; then
    for f in "$PLATFORM_ENV_DIR"/*; do
      [ -f "$f" ] || continue
      name="${f##*/}"
      if [[ ! "$name" =~ ^[A-Z_][A-Z0-9_]*$ ]]; then
        echo "platform-entrypoint: $f: not an environment variable name, ignored" >&2
        continue
      fi
      value="$(<"$f")"
      export "$name=$value"
      n=$((n + 1))
    done
  fi
  if [ "$n" -eq 0 ]; then
    echo "platform-entrypoint: no settings in $PLATFORM_ENV_DIR: the one-shot service secrets-init must run first" \
         "(docker compose up runs it; its secrets come from scripts/compose/secrets.sh)" >&2
    exit 1
  fi
fi
exec "${PLATFORM_NEXT_ENTRYPOINT:-/entrypoint}" "$@"
