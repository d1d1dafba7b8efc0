#!/usr/bin/env bash
# Install everything the project needs, idempotently, fast on a warm machine:
#   1. Debian packages (PostgreSQL, Redis, pgBackRest, pg_partman, Maven, Java) when missing;
#   2. the Python venv from requirements.txt + constraints.txt (the lock), kept in the cache under
#      the lock's hash and reused while the hash matches; .venv links to it;
#   3. the compiled mining engine (built by pip from native/), rebuilt when its sources change;
#   4. Kafka broker jars, the Elasticsearch integ-test-zip and the PostgreSQL JDBC driver (for
#      Spark) from Maven Central.
# Usage: scripts/install.sh [--no-apt]   (PLATFORM_SKIP_ENGINE_BUILD=1 skips step 3, for work on the rest)
source "$(dirname "$0")/lib.sh"

APT=1; [ "${1:-}" = "--no-apt" ] && APT=0
APT_PACKAGES=(postgresql postgresql-contrib postgresql-15-partman redis-server pgbackrest maven
              openjdk-17-jre-headless unzip curl ca-certificates
              chromium chromium-driver)   # dashboards (issue 13): headless browser tests (tests/ui)

# ---------------------------------------------------------------- 1. Debian packages
if [ "$APT" = 1 ]; then
  missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    [ "$(id -u)" = 0 ] || die "missing Debian packages: ${missing[*]} (run as root, or: sudo apt-get install ${missing[*]})"
    log "apt: installing ${missing[*]}"
    apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$STATE/apt.log" 2>&1 \
      || die "apt-get install failed, see $STATE/apt.log"
  fi
  if [ "$(id -u)" = 0 ] && ! id "$ES_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$ES_USER"
  fi
fi

# ---------------------------------------------------------------- 2. Python venv (keyed by the lock)
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
"$PYTHON" -c 'import sys; assert sys.version_info[:2] == (3, 11), sys.version' 2>/dev/null \
  || die "Python 3.11 is required ($PYTHON is $("$PYTHON" --version 2>&1))"
LOCK_HASH="$(cat "$ROOT/requirements.txt" "$ROOT/constraints.txt" | sha256sum | cut -c1-16)-$("$PYTHON" -c 'import sys;print("%d%d"%sys.version_info[:2])')"
VENV_REAL="$CACHE/venv-$LOCK_HASH"
if [ ! -f "$VENV_REAL/.complete" ]; then
  log "venv: installing the lock into $VENV_REAL (a few minutes on a fresh machine)"
  rm -rf "$VENV_REAL"
  "$PYTHON" -m venv "$VENV_REAL"
  export PIP_CACHE_DIR="$CACHE/pip" PIP_DISABLE_PIP_VERSION_CHECK=1
  "$VENV_REAL/bin/pip" install -q --progress-bar off -U "pip==26.3" >/dev/null 2>&1 \
    || "$VENV_REAL/bin/pip" install -q -U pip >/dev/null
  "$VENV_REAL/bin/pip" install -q --progress-bar off -r "$ROOT/requirements.txt" -c "$ROOT/constraints.txt" \
    >"$STATE/pip.log" 2>&1 || die "pip install failed, see $STATE/pip.log: $(tail -5 "$STATE/pip.log")"
  touch "$VENV_REAL/.complete"
else
  log "venv: lock unchanged, reusing $VENV_REAL"
fi
if [ "$(readlink "$VENV" 2>/dev/null)" != "$VENV_REAL" ]; then
  [ -L "$VENV" ] || [ ! -e "$VENV" ] || rm -rf "$VENV"
  ln -sfn "$VENV_REAL" "$VENV"
fi

# ---------------------------------------------------------------- 3. compiled mining engine
if [ -f "$ROOT/native/huim/pyproject.toml" ] && [ "${PLATFORM_SKIP_ENGINE_BUILD:-0}" != 1 ]; then
  SRC_HASH="$(cd "$ROOT/native/huim" && find . -path ./target -prune -o -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
  MARK="$VENV_REAL/.huim-$SRC_HASH"
  if [ ! -f "$MARK" ]; then
    # rustup installs cargo under ~/.cargo/bin, which a non-login shell may not have on PATH
    command -v cargo >/dev/null || [ ! -x "$HOME/.cargo/bin/cargo" ] || export PATH="$HOME/.cargo/bin:$PATH"
    command -v cargo >/dev/null || die "cargo (Rust) is required to build the mining engine (rustup.rs or apt cargo)"
    log "mining engine: building native/huim (cargo, release)"
    export CARGO_TARGET_DIR="$CACHE/cargo-target"
    # the maturin build backend runs the `maturin` executable of the venv
    PATH="$VENV_REAL/bin:$PATH" "$VENV_REAL/bin/pip" install -q --no-build-isolation --no-deps "$ROOT/native/huim" >"$STATE/engine-build.log" 2>&1 \
      || die "building the mining engine failed, see $STATE/engine-build.log: $(tail -5 "$STATE/engine-build.log")"
    rm -f "$VENV_REAL"/.huim-*; touch "$MARK"
  fi
fi

# ---------------------------------------------------------------- 4. Maven Central artifacts
M2="$CACHE/m2"
KAFKA_LIBS="$CACHE/kafka-$KAFKA_VERSION/libs"
if [ ! -f "$KAFKA_LIBS/.complete" ]; then
  log "kafka: fetching broker jars $KAFKA_VERSION from Maven Central"
  rm -rf "$KAFKA_LIBS"; mkdir -p "$KAFKA_LIBS"
  mvn -B -q -Dmaven.repo.local="$M2" -f "$ROOT/scripts/maven/kafka-broker.pom.xml" \
    -Dkafka.version="$KAFKA_VERSION" -Dlog4j.version="$LOG4J_VERSION" \
    dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime >"$STATE/mvn-kafka.log" 2>&1 \
    || die "fetching Kafka jars failed, see $STATE/mvn-kafka.log"
  touch "$KAFKA_LIBS/.complete"
fi
ES_HOME="$CACHE/elasticsearch-$ES_VERSION"
if [ ! -f "$ES_HOME/.complete" ]; then
  log "elasticsearch: fetching integ-test-zip $ES_VERSION from Maven Central"
  mvn -B -q -Dmaven.repo.local="$M2" dependency:get -Dtransitive=false \
    -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" >"$STATE/mvn-es.log" 2>&1 \
    || die "fetching Elasticsearch failed, see $STATE/mvn-es.log"
  rm -rf "$ES_HOME" "$CACHE/es-unzip"; mkdir -p "$CACHE/es-unzip"
  unzip -q "$M2/org/elasticsearch/distribution/integ-test-zip/elasticsearch/$ES_VERSION/elasticsearch-$ES_VERSION.zip" -d "$CACHE/es-unzip"
  mv "$CACHE/es-unzip/elasticsearch-$ES_VERSION" "$ES_HOME"; rmdir "$CACHE/es-unzip"
  chmod -R a+rX "$ES_HOME"; chmod 755 "$CACHE"
  touch "$ES_HOME/.complete"
fi
JDBC_JAR="$M2/org/postgresql/postgresql/$PG_JDBC_VERSION/postgresql-$PG_JDBC_VERSION.jar"
if [ ! -f "$JDBC_JAR" ]; then
  log "postgresql JDBC driver $PG_JDBC_VERSION (Spark reads transactions over JDBC)"
  mvn -B -q -Dmaven.repo.local="$M2" dependency:get -Dtransitive=false \
    -Dartifact="org.postgresql:postgresql:$PG_JDBC_VERSION" >"$STATE/mvn-jdbc.log" 2>&1 \
    || die "fetching the PostgreSQL JDBC driver failed, see $STATE/mvn-jdbc.log"
fi
# ---------------------------------------------------------------- 5. dashboards' npm packages (issue 13)
# plugins/platform_ui: `npm ci` from its lockfile, redone only when the lockfile changes; the chart
# library is copied into the plugin's static dir (served by the plugin, no CDN).
UI_DIR="$ROOT/plugins/platform_ui"
if [ -f "$UI_DIR/package-lock.json" ]; then
  UI_HASH="$(sha256sum "$UI_DIR/package-lock.json" | cut -c1-16)"
  if [ ! -f "$UI_DIR/node_modules/.platform-lock-$UI_HASH" ] || [ ! -f "$UI_DIR/static/vendor/chart.umd.min.js" ]; then
    command -v npm >/dev/null || die "npm is required for the dashboards plugin (apt install npm)"
    log "dashboards: npm ci (plugins/platform_ui)"
    (cd "$UI_DIR" && npm ci --no-audit --no-fund >"$STATE/npm-ui.log" 2>&1) \
      || die "npm ci failed, see $STATE/npm-ui.log: $(tail -5 "$STATE/npm-ui.log")"
    mkdir -p "$UI_DIR/static/vendor"
    cp "$UI_DIR/node_modules/chart.js/dist/chart.umd.min.js" "$UI_DIR/node_modules/chart.js/LICENSE.md" "$UI_DIR/static/vendor/"
    touch "$UI_DIR/node_modules/.platform-lock-$UI_HASH"
  fi
fi
# ---------------------------------------------------------------- 6. the compose file's checker (issue 12)
# scripts/compose/composecheck: compose-go (Docker Compose's own loader, pinned in go.sum) for the static
# checks of docker-compose.yml in tests/foundation/test_compose.py. Modules fetched and the program built
# here, redone only when its sources change, so the test itself needs no network.
CHECK_DIR="$ROOT/scripts/compose/composecheck"
if [ -f "$CHECK_DIR/go.sum" ]; then
  CHECK_HASH="$(cat "$CHECK_DIR/go.mod" "$CHECK_DIR/go.sum" "$CHECK_DIR"/*.go | sha256sum | cut -c1-16)"
  if [ ! -f "$STATE/.composecheck-$CHECK_HASH" ]; then
    command -v go >/dev/null || die "the Go toolchain is required for scripts/compose/composecheck (https://go.dev/dl)"
    log "compose checker: go mod download + build (scripts/compose/composecheck)"
    (cd "$CHECK_DIR" && go mod download && go build -buildvcs=false -o /dev/null .) >"$STATE/go-composecheck.log" 2>&1 \
      || die "building the compose checker failed, see $STATE/go-composecheck.log"
    touch "$STATE/.composecheck-$CHECK_HASH"
  fi
fi
log "install complete"
