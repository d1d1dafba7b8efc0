#!/usr/bin/env bash
# The local stack's real services, each on a loopback port (scripts/ports.env), data under .local/.
#
#   scripts/services.sh up [SERVICE...]      start (idempotent), wait until healthy, write .local/env.sh
#   scripts/services.sh down [SERVICE...]    stop
#   scripts/services.sh status               one line per service; exit 1 if any is down
#
#   scripts/services.sh up --tls|--plaintext  the same, in TLS mode or plaintext (also PLATFORM_TLS=1|0);
#                                            the mode is recorded in .local/tls-mode, a switch restarts
#                                            the services; without a request the recorded mode is kept
#
# TLS mode (docs/tls.md, scripts/tls.sh): TLS 1.3 with a project-local CA on PostgreSQL, Redis, Kafka, the
# S3 API, Elasticsearch (https + file-realm user) and the Airflow api-server settings in .local/env.sh.
#
# SERVICE: backup-s3 postgres redis kafka elasticsearch s3 (default: all). Binaries come from
# scripts/install.sh (Debian packages, Maven Central jars, the venv's moto server and gunicorn).
#
# backup-s3 (issue 10) is the S3 API that holds the pgBackRest repositories: moto's WSGI app served by
# gunicorn with TLS (pgBackRest's S3 driver is HTTPS-only and needs keep-alive, which moto_server's
# Werkzeug server does not give it). It keeps its objects in memory: a restart empties
# the repositories (the backup DAG's freshness check then fails until the next backup). PostgreSQL
# archives its WAL into both repositories (archive_command in $DATA/pgbackrest/postgresql.archive.conf);
# backup-s3 is listed first so that `down` stops PostgreSQL before the repositories go away.
source "$(dirname "$0")/lib.sh"

ALL=(backup-s3 postgres redis kafka elasticsearch s3)
DATA="$(data_dir)"
LOGS="$STATE/logs"; mkdir -p "$LOGS"
# shellcheck disable=SC1091
source "$ROOT/scripts/tls.sh"
TLS_MODE="$(tls_recorded)"

# ---------------------------------------------------------------- PostgreSQL
pg_bin() {
  local d; d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
  [ -n "$d" ] || die "PostgreSQL binaries not found: run scripts/install.sh (apt package postgresql)"
  printf '%s\n' "$d"
}
PGDATA_DIR="$DATA/postgres"; PGSOCK="$DATA/pg-socket"; PGLOG_DIR="$DATA/pg-log"; PGLOG="$PGLOG_DIR/postgres.log"
pg_ready() { "$(pg_bin)/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; }
pg_ours() { [ -f "$PGDATA_DIR/postmaster.pid" ] && kill -0 "$(head -1 "$PGDATA_DIR/postmaster.pid")" 2>/dev/null; }
psql_su() { PGOPTIONS="-c client_min_messages=warning" as_user "$PG_USER" "$(pg_bin)/psql" -X -q -v ON_ERROR_STOP=1 -h "$PGSOCK" -p "$PG_PORT" -U postgres "$@"; }

up_postgres() {
  local bin; bin="$(pg_bin)"
  if pg_ready && pg_ours; then log "postgres already running on 127.0.0.1:$PG_PORT"; pg_archive_settings
    pg_tls_settings "$PGDATA_DIR"; else
    mkdir -p "$PGDATA_DIR" "$PGSOCK" "$PGLOG_DIR"
    [ "$(id -u)" = 0 ] && chown "$PG_USER:" "$PGDATA_DIR" "$PGSOCK" "$PGLOG_DIR"
    chmod 700 "$PGDATA_DIR"
    if [ ! -f "$PGDATA_DIR/PG_VERSION" ]; then
      log "postgres: initdb $PGDATA_DIR"
      as_user "$PG_USER" "$bin/initdb" -D "$PGDATA_DIR" -U postgres -E UTF8 --locale=C.UTF-8 \
        --auth-local=trust --auth-host=scram-sha-256 >"$LOGS/initdb.log" 2>&1 \
        || die "postgres initdb failed, see $LOGS/initdb.log"
      cat >>"$PGDATA_DIR/postgresql.conf" <<EOF
# --- retail platform (scripts/services.sh)
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PGSOCK'
max_connections = 200
shared_buffers = 256MB
wal_level = replica
max_wal_senders = 4
log_min_duration_statement = 5000
timezone = 'UTC'
EOF
    fi
    pg_archive_settings
    pg_tls_settings "$PGDATA_DIR"
    port_open "$PG_PORT" && die "port $PG_PORT is taken by another process; free it or change PG_PORT in scripts/ports.env"
    as_user "$PG_USER" "$bin/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -w -t 60 start >/dev/null \
      || die "postgres did not start, see $PGLOG: $(tail -3 "$PGLOG" 2>/dev/null)"
    wait_for 30 "postgres on 127.0.0.1:$PG_PORT" pg_ready || die "postgres not ready, see $PGLOG"
  fi
  # roles and databases (idempotent)
  psql_su -d postgres <<'SQL'
SELECT 'CREATE ROLE platform LOGIN CREATEROLE PASSWORD ''platform'''
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'platform') \gexec
SELECT 'CREATE ROLE airflow LOGIN PASSWORD ''airflow'''
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'airflow') \gexec
SELECT 'CREATE DATABASE platform OWNER platform'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'platform') \gexec
SELECT 'CREATE DATABASE airflow OWNER airflow'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'airflow') \gexec
ALTER ROLE platform CREATEDB;
SQL
  # extensions that need a superuser are created here, once, for the platform database
  psql_su -d platform -c "CREATE EXTENSION IF NOT EXISTS pgcrypto" >/dev/null
  pg_archive_apply
  if status_backup_s3 2>/dev/null && [ -f "$PGBR_CONF" ]; then pgbackrest_stanza; fi
}

# WAL archiving into the pgBackRest repositories (issue 10). The settings live in their own file,
# included by postgresql.conf, so an existing cluster gets them too. While pgbackrest.conf does not
# exist yet (backup-s3 never started) a WAL segment is let go, since no repository exists to need it.
PGBR_DIR="$DATA/pgbackrest"; PGBR_CONF="$PGBR_DIR/pgbackrest.conf"; PGBR_STANZA=platform
PGBR_ARCHIVE_CONF="$PGBR_DIR/postgresql.archive.conf"
pg_archive_settings() {
  mkdir -p "$PGBR_DIR"/{log,lock,spool}
  [ "$(id -u)" = 0 ] && chown -R "$PG_USER:" "$PGBR_DIR"
  cat >"$PGBR_ARCHIVE_CONF.tmp" <<EOF
# generated by scripts/services.sh (issue 10, docs/retain.md): WAL archiving with pgBackRest
archive_mode = on
archive_command = 'test ! -f $PGBR_CONF || pgbackrest --config=$PGBR_CONF --stanza=$PGBR_STANZA archive-push %p'
archive_timeout = 300
EOF
  chmod 644 "$PGBR_ARCHIVE_CONF.tmp"; mv "$PGBR_ARCHIVE_CONF.tmp" "$PGBR_ARCHIVE_CONF"
  local inc="include_if_exists = '$PGBR_ARCHIVE_CONF'"
  grep -qxF "$inc" "$PGDATA_DIR/postgresql.conf" || printf '%s\n' "$inc" >>"$PGDATA_DIR/postgresql.conf"
}
pg_archive_apply() {  # archive_mode needs a restart (once per cluster); archive_command only a reload
  if [ "$(psql_su -d postgres -Atc 'SHOW archive_mode')" != on ]; then
    log "postgres: restarting once to turn on WAL archiving (archive_mode needs a restart)"
    as_user "$PG_USER" "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" -l "$PGLOG" -m fast -w -t 60 restart >/dev/null \
      || die "postgres did not restart, see $PGLOG: $(tail -3 "$PGLOG" 2>/dev/null)"
    wait_for 30 "postgres (WAL archiving on)" pg_ready || die "postgres not ready after restart, see $PGLOG"
  else
    psql_su -d postgres -Atc 'SELECT pg_reload_conf()' >/dev/null
  fi
}
down_postgres() {
  if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
    as_user "$PG_USER" "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null || true
  fi
}
status_postgres() { pg_ready && pg_ours; }

# ---------------------------------------------------------------- Redis
REDIS_DIR="$DATA/redis"
redis_ready() {
  local tls; mapfile -t tls < <(redis_cli_tls)
  [ "$(redis-cli "${tls[@]}" -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]
}
up_redis() {
  command -v redis-server >/dev/null || die "redis-server not found: run scripts/install.sh (apt package redis-server)"
  if redis_ready && pid_alive "$REDIS_DIR/redis.pid"; then log "redis already running on 127.0.0.1:$REDIS_PORT"; return; fi
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process"
  mkdir -p "$REDIS_DIR"
  local ports; mapfile -t ports < <(redis_tls_args)
  # Redis holds only live, reconstructible state (progress, caches, locks): no persistence.
  redis-server "${ports[@]}" --bind 127.0.0.1 --dir "$REDIS_DIR" --save "" --appendonly no \
    --daemonize yes --pidfile "$REDIS_DIR/redis.pid" --logfile "$LOGS/redis.log" \
    || die "redis did not start, see $LOGS/redis.log"
  wait_for 15 "redis on 127.0.0.1:$REDIS_PORT" redis_ready || die "redis not ready, see $LOGS/redis.log"
}
down_redis() { stop_pid "$REDIS_DIR/redis.pid" redis 10; }
status_redis() { redis_ready && pid_alive "$REDIS_DIR/redis.pid"; }

# ---------------------------------------------------------------- Kafka (KRaft, single node)
KAFKA_DIR="$DATA/kafka"; KAFKA_LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
kafka_ready() { port_open "$KAFKA_PORT"; }
up_kafka() {
  [ -d "$KAFKA_LIBS" ] || die "Kafka jars not found in $KAFKA_LIBS: run scripts/install.sh"
  if kafka_ready && pid_alive "$KAFKA_DIR/kafka.pid"; then log "kafka already running on 127.0.0.1:$KAFKA_PORT"; return; fi
  { port_open "$KAFKA_PORT" || port_open "$KAFKA_CONTROLLER_PORT"; } \
    && die "port $KAFKA_PORT or $KAFKA_CONTROLLER_PORT is taken by another process (a broker of another checkout?)"
  mkdir -p "$KAFKA_DIR/data"
  cat >"$KAFKA_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
$(kafka_tls_properties)
log.dirs=$KAFKA_DIR/data
num.partitions=1
offsets.topic.replication.factor=1
offsets.topic.num.partitions=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.network.threads=2
num.io.threads=2
broker.session.timeout.ms=3000
broker.heartbeat.interval.ms=500
auto.create.topics.enable=false
EOF
  cat >"$KAFKA_DIR/log4j2.properties" <<'EOF'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
EOF
  if [ ! -f "$KAFKA_DIR/data/meta.properties" ]; then
    java -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" -cp "$KAFKA_LIBS/*" kafka.tools.StorageTool \
      format -t MkU3OEVBNTcwNTJENDM2Qg -c "$KAFKA_DIR/server.properties" >"$LOGS/kafka-format.log" 2>&1 \
      || die "kafka storage format failed, see $LOGS/kafka-format.log"
  fi
  nohup java -Xms128m -Xmx512m -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$KAFKA_DIR/log4j2.properties" -cp "$KAFKA_LIBS/*" \
    kafka.Kafka "$KAFKA_DIR/server.properties" >"$LOGS/kafka.log" 2>&1 </dev/null &
  echo $! >"$KAFKA_DIR/kafka.pid"
  wait_for 180 "kafka on 127.0.0.1:$KAFKA_PORT" kafka_ready \
    || die "kafka did not start, see $LOGS/kafka.log: $(tail -3 "$LOGS/kafka.log")"
}
down_kafka() { stop_pid "$KAFKA_DIR/kafka.pid" kafka 30; }
status_kafka() { kafka_ready && pid_alive "$KAFKA_DIR/kafka.pid"; }

# ---------------------------------------------------------------- Elasticsearch (integ-test-zip)
ES_HOME="$CACHE/elasticsearch-$ES_VERSION"; ES_DIR="$DATA/elasticsearch"
es_ready() { es_curl "/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null; }
up_elasticsearch() {
  [ -x "$ES_HOME/bin/elasticsearch" ] || die "Elasticsearch not found in $ES_HOME: run scripts/install.sh"
  if es_ready && pid_alive "$ES_DIR/logs/es.pid"; then log "elasticsearch already running on 127.0.0.1:$ES_PORT"; return; fi
  port_open "$ES_PORT" && die "port $ES_PORT is taken by another process"
  mkdir -p "$ES_DIR/data" "$ES_DIR/logs" "$ES_DIR/tmp"
  if [ ! -f "$ES_DIR/config/elasticsearch.yml" ]; then
    rm -rf "$ES_DIR/config"; cp -r "$ES_HOME/config" "$ES_DIR/config"
  fi
  # rewritten on every start: the security lines follow the TLS mode (scripts/tls.sh)
  cat >"$ES_DIR/config/elasticsearch.yml" <<EOF
cluster.name: retail-platform
node.name: local
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
path.data: $ES_DIR/data
path.logs: $ES_DIR/logs
$(es_security_yml)
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
EOF
  [ "$(id -u)" = 0 ] && chown -R "$ES_USER:" "$ES_DIR"
  local java_home; java_home="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
  es_tls_setup "$ES_DIR" "$ES_HOME" "$java_home"
  as_user "$ES_USER" env ES_JAVA_HOME="$java_home" ES_PATH_CONF="$ES_DIR/config" ES_TMPDIR="$ES_DIR/tmp" \
    ES_JAVA_OPTS="-Xms512m -Xmx512m" "$ES_HOME/bin/elasticsearch" -d -p "$ES_DIR/logs/es.pid" \
    >"$LOGS/elasticsearch.log" 2>&1 || die "elasticsearch did not start, see $LOGS/elasticsearch.log and $ES_DIR/logs"
  wait_for 300 "elasticsearch on 127.0.0.1:$ES_PORT" es_ready \
    || die "elasticsearch not healthy, see $ES_DIR/logs/retail-platform.log"
}
down_elasticsearch() { stop_pid "$ES_DIR/logs/es.pid" elasticsearch 30; }
status_elasticsearch() { es_ready && pid_alive "$ES_DIR/logs/es.pid"; }

# ---------------------------------------------------------------- S3 API (moto server)
S3_DIR="$DATA/s3"
s3_ready() { local tls; mapfile -t tls < <(s3_curl_tls); curl -s -o /dev/null "${tls[@]}" "$(s3_url)"; }
up_s3() {
  [ -x "$VENV/bin/moto_server" ] || die "moto_server not found in $VENV: run scripts/install.sh"
  if s3_ready && pid_alive "$S3_DIR/moto.pid"; then log "s3 (moto) already running on 127.0.0.1:$S3_PORT"; return; fi
  port_open "$S3_PORT" && die "port $S3_PORT is taken by another process"
  mkdir -p "$S3_DIR"
  if tls_on; then
    [ -x "$VENV/bin/gunicorn" ] || die "gunicorn not found in $VENV: run scripts/install.sh"
    s3_tls_start "$S3_DIR"
  else
    nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$LOGS/s3.log" 2>&1 </dev/null &
    echo $! >"$S3_DIR/moto.pid"
  fi
  wait_for 30 "s3 (moto) on $(s3_url)" s3_ready || die "moto server did not start, see $LOGS/s3.log"
}
down_s3() { stop_pid "$S3_DIR/moto.pid" s3 10; }
status_s3() { s3_ready && pid_alive "$S3_DIR/moto.pid"; }

# ---------------------------------------------------------------- backup-s3: TLS S3 API for pgBackRest
BACKUP_DIR="$DATA/backup-s3"; BACKUP_TLS="$BACKUP_DIR/tls"
backup_s3_ready() { curl -s -o /dev/null --cacert "$BACKUP_TLS/ca.crt" "https://localhost:$BACKUP_S3_PORT/"; }
backup_tls() {  # a local CA and a server certificate for DNS:localhost (pgBackRest ignores IP SANs)
  if [ -f "$BACKUP_TLS/ca.crt" ] && [ -f "$BACKUP_TLS/server.key" ] \
     && openssl x509 -checkend 604800 -noout -in "$BACKUP_TLS/server.crt" >/dev/null 2>&1; then return; fi
  mkdir -p "$BACKUP_TLS"; chmod 755 "$BACKUP_DIR" "$BACKUP_TLS"
  ( cd "$BACKUP_TLS"
    openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 \
      -subj "/CN=retail-platform local backup CA" \
    && openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj "/CN=localhost" \
    && printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >ext.cnf \
    && openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out server.crt \
         -days 825 -extfile ext.cnf
  ) >"$LOGS/backup-s3-tls.log" 2>&1 || die "backup-s3: TLS certificate generation failed, see $LOGS/backup-s3-tls.log"
  chmod 600 "$BACKUP_TLS/ca.key" "$BACKUP_TLS/server.key"; chmod 644 "$BACKUP_TLS/ca.crt" "$BACKUP_TLS/server.crt"
  log "backup-s3: TLS certificate for localhost written to $BACKUP_TLS"
}
pgbackrest_conf() {  # the repositories and the stanza, from connection platform_backup; postgres-owned, 600
  command -v pgbackrest >/dev/null || die "pgbackrest not found: run scripts/install.sh (apt package pgbackrest)"
  mkdir -p "$PGBR_DIR"/{log,lock,spool}
  ( umask 077; "$PY" "$ROOT/scripts/settings.py" pgbackrest-conf >"$PGBR_CONF.tmp" ) \
    || die "could not render $PGBR_CONF (scripts/settings.py pgbackrest-conf)"
  [ "$(id -u)" = 0 ] && chown -R "$PG_USER:" "$PGBR_DIR"
  mv "$PGBR_CONF.tmp" "$PGBR_CONF"
}
PGBR_STANZA_OK=
pgbackrest_stanza() {  # idempotent: create the stanza in both repositories, then prove WAL reaches them
  [ -z "$PGBR_STANZA_OK" ] || return 0
  local out="$LOGS/pgbackrest-stanza.log"
  as_user "$PG_USER" pgbackrest --config="$PGBR_CONF" --stanza="$PGBR_STANZA" stanza-create >"$out" 2>&1 \
    || die "pgBackRest stanza-create failed, see $out: $(tail -2 "$out")"
  if [ "$(psql_su -d postgres -Atc 'SHOW archive_mode')" != on ]; then
    log "pgbackrest stanza '$PGBR_STANZA' created; WAL archiving starts with \`services.sh up postgres\`"; return
  fi
  as_user "$PG_USER" pgbackrest --config="$PGBR_CONF" --stanza="$PGBR_STANZA" check >>"$out" 2>&1 \
    || die "pgBackRest check failed (WAL archiving into repo1/repo2), see $out: $(tail -2 "$out")"
  PGBR_STANZA_OK=1
  log "pgbackrest stanza '$PGBR_STANZA' ready: WAL archived to repo1 and repo2"
}
up_backup_s3() {
  [ -x "$VENV/bin/gunicorn" ] || die "gunicorn not found in $VENV: run scripts/install.sh"
  if backup_s3_ready && pid_alive "$BACKUP_DIR/gunicorn.pid"; then
    log "backup-s3 already running on https://localhost:$BACKUP_S3_PORT"
  else
    port_open "$BACKUP_S3_PORT" && die "port $BACKUP_S3_PORT is taken by another process"
    backup_tls
    cat >"$BACKUP_DIR/moto_wsgi.py" <<'PYEOF'
# moto's S3 as a WSGI app for gunicorn (scripts/services.sh, service backup-s3)
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

app = DomainDispatcherApplication(create_backend_app)
PYEOF
    # one worker: moto keeps its state in process memory; keep-alive: pgBackRest must not read to EOF
    nohup "$VENV/bin/gunicorn" --no-control-socket -k gthread --workers 1 --threads 8 --keep-alive 75 \
      --timeout 300 --certfile "$BACKUP_TLS/server.crt" --keyfile "$BACKUP_TLS/server.key" \
      -b "127.0.0.1:$BACKUP_S3_PORT" --chdir "$BACKUP_DIR" moto_wsgi:app >"$LOGS/backup-s3.log" 2>&1 </dev/null &
    echo $! >"$BACKUP_DIR/gunicorn.pid"
    wait_for 30 "backup-s3 (moto, TLS) on https://localhost:$BACKUP_S3_PORT" backup_s3_ready \
      || die "backup-s3 did not start, see $LOGS/backup-s3.log: $(tail -3 "$LOGS/backup-s3.log")"
  fi
  "$PY" "$ROOT/scripts/settings.py" backup-buckets 2>>"$LOGS/backup-s3.log" \
    || die "backup-s3: creating the repository buckets failed, see $LOGS/backup-s3.log"
  pgbackrest_conf
  if status_postgres 2>/dev/null; then pgbackrest_stanza; fi
}
down_backup_s3() { stop_pid "$BACKUP_DIR/gunicorn.pid" backup-s3 10; }
status_backup_s3() { backup_s3_ready && pid_alive "$BACKUP_DIR/gunicorn.pid"; }

# ---------------------------------------------------------------- helpers
stop_pid() {  # PIDFILE NAME GRACE_SECONDS: TERM, wait, then KILL
  local pidfile="$1" name="$2" grace="$3" pid
  [ -f "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null || true
    local end=$((SECONDS + grace))
    while kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 0.3; done
    if kill -0 "$pid" 2>/dev/null; then log "$name did not stop in ${grace}s: SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; fi
  fi
  rm -f "$pidfile"
}

write_env() {
  [ -x "$PY" ] || die "venv missing: run scripts/install.sh"
  # mode 600: it carries the backup cipher passphrases (connection platform_backup)
  ( umask 077; "$PY" "$ROOT/scripts/settings.py" env >"$STATE/env.sh.tmp" ) && mv "$STATE/env.sh.tmp" "$STATE/env.sh"
  log "connection settings written to $STATE/env.sh"
}

cmd="${1:-status}"; shift || true
services=(); tls_flag=
for a in "$@"; do
  case "$a" in
    --tls) tls_flag=on ;;
    --plaintext|--no-tls) tls_flag=off ;;
    *) services+=("$a") ;;
  esac
done
[ ${#services[@]} -gt 0 ] || services=("${ALL[@]}")
for s in "${services[@]}"; do
  case " ${ALL[*]} " in *" $s "*) ;; *) die "unknown service '$s' (known: ${ALL[*]})";; esac
done
case "$cmd" in
  up)
    want="$(tls_requested "$tls_flag")"
    if [ "$want" != "$TLS_MODE" ]; then
      # a switch restarts every running service in the new mode (a mixed stack would match neither
      # mode's env.sh), together with the ones asked for
      running=()
      for s in "${ALL[@]}"; do if "status_${s//-/_}" 2>/dev/null; then running+=("$s"); fi; done
      log "TLS mode $TLS_MODE -> $want: restarting ${running[*]:-nothing}"
      for ((i=${#running[@]}-1; i>=0; i--)); do "down_${running[$i]//-/_}"; done
      restart=()
      for s in "${ALL[@]}"; do
        if [[ " ${services[*]} ${running[*]:-} " == *" $s "* ]]; then restart+=("$s"); fi
      done
      services=("${restart[@]}")
    fi
    TLS_MODE="$want"
    printf '%s\n' "$TLS_MODE" >"$TLS_MODE_FILE"
    if tls_on; then tls_certs; fi
    for s in "${services[@]}"; do "up_${s//-/_}"; done
    write_env
    if [[ " ${services[*]} " == *" s3 "* ]]; then "$PY" "$ROOT/scripts/settings.py" buckets; fi ;;
  down)
    for ((i=${#services[@]}-1; i>=0; i--)); do "down_${services[$i]//-/_}"; log "${services[$i]} stopped"; done ;;
  status)
    rc=0
    for s in "${services[@]}"; do
      if "status_${s//-/_}" 2>/dev/null; then echo "$s: up"; else echo "$s: down"; rc=1; fi
    done
    exit $rc ;;
  *) die "usage: scripts/services.sh up|down|status [--tls|--plaintext] [SERVICE...]" ;;
esac
