#!/usr/bin/env bash
# The local stack's real services, each on a loopback port (scripts/ports.env), data under .local/.
#
#   scripts/services.sh up [SERVICE...]      start (idempotent), wait until healthy, write .local/env.sh
#   scripts/services.sh down [SERVICE...]    stop
#   scripts/services.sh status               one line per service; exit 1 if any is down
#
# SERVICE: postgres redis kafka elasticsearch s3 (default: all). Binaries come from
# scripts/install.sh (Debian packages, Maven Central jars, the venv's moto server).
source "$(dirname "$0")/lib.sh"

ALL=(postgres redis kafka elasticsearch s3)
DATA="$(data_dir)"
LOGS="$STATE/logs"; mkdir -p "$LOGS"

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
  if pg_ready && pg_ours; then log "postgres already running on 127.0.0.1:$PG_PORT"; else
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
}
down_postgres() {
  if [ -f "$PGDATA_DIR/postmaster.pid" ]; then
    as_user "$PG_USER" "$(pg_bin)/pg_ctl" -D "$PGDATA_DIR" -m fast -w -t 60 stop >/dev/null || true
  fi
}
status_postgres() { pg_ready && pg_ours; }

# ---------------------------------------------------------------- Redis
REDIS_DIR="$DATA/redis"
redis_ready() { [ "$(redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" = PONG ]; }
up_redis() {
  command -v redis-server >/dev/null || die "redis-server not found: run scripts/install.sh (apt package redis-server)"
  if redis_ready && pid_alive "$REDIS_DIR/redis.pid"; then log "redis already running on 127.0.0.1:$REDIS_PORT"; return; fi
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process"
  mkdir -p "$REDIS_DIR"
  # Redis holds only live, reconstructible state (progress, caches, locks): no persistence.
  redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$REDIS_DIR" --save "" --appendonly no \
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
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
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
  wait_for 90 "kafka on 127.0.0.1:$KAFKA_PORT" kafka_ready \
    || die "kafka did not start, see $LOGS/kafka.log: $(tail -3 "$LOGS/kafka.log")"
}
down_kafka() { stop_pid "$KAFKA_DIR/kafka.pid" kafka 30; }
status_kafka() { kafka_ready && pid_alive "$KAFKA_DIR/kafka.pid"; }

# ---------------------------------------------------------------- Elasticsearch (integ-test-zip)
ES_HOME="$CACHE/elasticsearch-$ES_VERSION"; ES_DIR="$DATA/elasticsearch"
es_ready() { curl -sf "http://127.0.0.1:$ES_PORT/_cluster/health?wait_for_status=yellow&timeout=1s" >/dev/null; }
up_elasticsearch() {
  [ -x "$ES_HOME/bin/elasticsearch" ] || die "Elasticsearch not found in $ES_HOME: run scripts/install.sh"
  if es_ready && pid_alive "$ES_DIR/logs/es.pid"; then log "elasticsearch already running on 127.0.0.1:$ES_PORT"; return; fi
  port_open "$ES_PORT" && die "port $ES_PORT is taken by another process"
  mkdir -p "$ES_DIR/data" "$ES_DIR/logs" "$ES_DIR/tmp"
  if [ ! -f "$ES_DIR/config/elasticsearch.yml" ]; then
    rm -rf "$ES_DIR/config"; cp -r "$ES_HOME/config" "$ES_DIR/config"
    cat >"$ES_DIR/config/elasticsearch.yml" <<EOF
cluster.name: retail-platform
node.name: local
discovery.type: single-node
network.host: 127.0.0.1
http.port: $ES_PORT
transport.port: $ES_TRANSPORT_PORT
path.data: $ES_DIR/data
path.logs: $ES_DIR/logs
xpack.security.enabled: false
cluster.routing.allocation.disk.threshold_enabled: false
action.destructive_requires_name: false
EOF
  fi
  [ "$(id -u)" = 0 ] && chown -R "$ES_USER:" "$ES_DIR"
  local java_home; java_home="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
  as_user "$ES_USER" env ES_JAVA_HOME="$java_home" ES_PATH_CONF="$ES_DIR/config" ES_TMPDIR="$ES_DIR/tmp" \
    ES_JAVA_OPTS="-Xms512m -Xmx512m" "$ES_HOME/bin/elasticsearch" -d -p "$ES_DIR/logs/es.pid" \
    >"$LOGS/elasticsearch.log" 2>&1 || die "elasticsearch did not start, see $LOGS/elasticsearch.log and $ES_DIR/logs"
  wait_for 120 "elasticsearch on 127.0.0.1:$ES_PORT" es_ready \
    || die "elasticsearch not healthy, see $ES_DIR/logs/retail-platform.log"
}
down_elasticsearch() { stop_pid "$ES_DIR/logs/es.pid" elasticsearch 30; }
status_elasticsearch() { es_ready && pid_alive "$ES_DIR/logs/es.pid"; }

# ---------------------------------------------------------------- S3 API (moto server)
S3_DIR="$DATA/s3"
s3_ready() { curl -s -o /dev/null "http://127.0.0.1:$S3_PORT/"; }
up_s3() {
  [ -x "$VENV/bin/moto_server" ] || die "moto_server not found in $VENV: run scripts/install.sh"
  if s3_ready && pid_alive "$S3_DIR/moto.pid"; then log "s3 (moto) already running on 127.0.0.1:$S3_PORT"; return; fi
  port_open "$S3_PORT" && die "port $S3_PORT is taken by another process"
  mkdir -p "$S3_DIR"
  nohup "$VENV/bin/moto_server" -H 127.0.0.1 -p "$S3_PORT" >"$LOGS/s3.log" 2>&1 </dev/null &
  echo $! >"$S3_DIR/moto.pid"
  wait_for 30 "s3 (moto) on 127.0.0.1:$S3_PORT" s3_ready || die "moto server did not start, see $LOGS/s3.log"
}
down_s3() { stop_pid "$S3_DIR/moto.pid" s3 10; }
status_s3() { s3_ready && pid_alive "$S3_DIR/moto.pid"; }

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
  "$PY" "$ROOT/scripts/settings.py" env >"$STATE/env.sh.tmp" && mv "$STATE/env.sh.tmp" "$STATE/env.sh"
  log "connection settings written to $STATE/env.sh"
}

cmd="${1:-status}"; shift || true
services=("$@"); [ ${#services[@]} -gt 0 ] || services=("${ALL[@]}")
for s in "${services[@]}"; do
  case " ${ALL[*]} " in *" $s "*) ;; *) die "unknown service '$s' (known: ${ALL[*]})";; esac
done
case "$cmd" in
  up)
    for s in "${services[@]}"; do "up_$s"; done
    write_env
    if [[ " ${services[*]} " == *" s3 "* ]]; then "$PY" "$ROOT/scripts/settings.py" buckets; fi ;;
  down)
    for ((i=${#services[@]}-1; i>=0; i--)); do "down_${services[$i]}"; log "${services[$i]} stopped"; done ;;
  status)
    rc=0
    for s in "${services[@]}"; do
      if "status_$s" 2>/dev/null; then echo "$s: up"; else echo "$s: down"; rc=1; fi
    done
    exit $rc ;;
  *) die "usage: scripts/services.sh up|down|status [SERVICE...]" ;;
esac
