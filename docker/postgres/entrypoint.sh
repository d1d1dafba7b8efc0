#!/bin/sh
# Entrypoint of the postgres image (docker-compose, issue 10). The one-shot `backup-init` renders
# pgbackrest.conf and the TLS files into the read-only volume /run/pgbackrest-init; they are installed here
# under /etc/pgbackrest, owned by postgres and mode 600 (they hold the cipher passphrases and S3 keys), at
# every start, so a re-run of backup-init takes effect with the next restart.
#   platform-entrypoint.sh postgres -c ...     -> docker-entrypoint.sh (initdb on first start, then postgres);
#                                                 first the server's TLS pair from the one-shot `tls-init`
#                                                 (read-only volume $TLS_SRC) is installed in $TLS_DIR, owned by
#                                                 postgres, key mode 600 (PostgreSQL refuses a key others can read)
#   platform-entrypoint.sh pgbackrest ...      -> pgBackRest as postgres (service pgbackrest-server)
#   platform-entrypoint.sh ping                -> healthcheck of pgbackrest-server (server-ping, installs nothing)
set -eu
SRC=/run/pgbackrest-init
CONF=/etc/pgbackrest/pgbackrest.conf
TLS_SRC=/run/postgres-tls
TLS_DIR=/etc/postgresql/tls

as_postgres() {  # pgBackRest refuses to run as root (and root-run commands leave root-owned lock files)
  if [ "$(id -u)" != 0 ]; then exec "$@"; fi
  if command -v su-exec >/dev/null 2>&1; then exec su-exec postgres "$@"; fi
  exec gosu postgres "$@"
}

if [ "${1:-}" = ping ]; then
  as_postgres pgbackrest --config="$CONF" server-ping localhost
fi

if [ "$(id -u)" = 0 ]; then
  if [ ! -f "$SRC/pgbackrest.conf" ]; then
    echo "platform-entrypoint: $SRC/pgbackrest.conf missing: the one-shot service backup-init must run first" >&2
    exit 1
  fi
  install -d -o postgres -g postgres -m 0750 /etc/pgbackrest /etc/pgbackrest/tls
  install -o postgres -g postgres -m 0600 "$SRC/pgbackrest.conf" "$CONF"
  for f in ca.crt server.crt server.key; do
    install -o postgres -g postgres -m 0600 "$SRC/tls/$f" "/etc/pgbackrest/tls/$f"
  done
fi
if [ "${1:-}" = postgres ] && [ "$(id -u)" = 0 ]; then
  for f in server.crt server.key ca.crt; do
    if [ ! -s "$TLS_SRC/$f" ]; then
      echo "platform-entrypoint: $TLS_SRC/$f missing: the one-shot service tls-init must run first" >&2
      exit 1
    fi
  done
  install -d -o postgres -g postgres -m 0700 "$TLS_DIR"
  install -o postgres -g postgres -m 0600 "$TLS_SRC/server.key" "$TLS_DIR/server.key"
  install -o postgres -g postgres -m 0644 "$TLS_SRC/server.crt" "$TLS_DIR/server.crt"
  install -o postgres -g postgres -m 0644 "$TLS_SRC/ca.crt" "$TLS_DIR/ca.crt"
fi
if [ "${1:-}" = pgbackrest ]; then
  as_postgres "$@"
fi
exec docker-entrypoint.sh "$@"
