# Airflow image of the platform for docker-compose: the locked Python set, Java for PySpark,
# the compiled mining engine built from native/ in a Rust stage, and pgBackRest with the PostgreSQL 16 +
# TimescaleDB server binaries for the backup DAGs and the restore drill (docs/retain.md, docker-compose), and the
# entrypoint that gives every container the stack's connections (docker/airflow/entrypoint.sh, docs/compose.md).
FROM rust:1.95-slim-bookworm AS engine
RUN pip3 --version >/dev/null 2>&1 || (apt-get update && apt-get install -y --no-install-recommends python3 python3-pip python3-venv && rm -rf /var/lib/apt/lists/*)
RUN python3 -m venv /opt/build && /opt/build/bin/pip install "maturin>=1.5,<2"
COPY native/ /src/native/
RUN cd /src/native/huim && /opt/build/bin/maturin build --release --interpreter python3.11 -o /wheels || \
    /opt/build/bin/maturin build --release -o /wheels

# the PostgreSQL JDBC driver Spark uses to read a store's transactions
FROM maven:3.9.9-eclipse-temurin-17 AS jars
RUN mvn -B -q dependency:get -Dtransitive=false -Dartifact=org.postgresql:postgresql:42.7.14 \
    && mkdir /jars && cp /root/.m2/repository/org/postgresql/postgresql/42.7.14/postgresql-42.7.14.jar /jars/postgresql.jar

# pgBackRest for the workers (backup, check, info, expire through the database's pgBackRest TLS server, and
# the restore drill): the SAME pinned release as docker/postgres/Dockerfile, built the same way, since
# pgBackRest refuses a remote of another version (tests/foundation/test_compose.py checks both pins).
# Built on the runtime image itself so it links the libraries that image has.
FROM apache/airflow:3.3.2-python3.11 AS pgbackrest
ARG PGBACKREST_VERSION=2.59.3
ARG PGBACKREST_SHA256=14037901db002e5536a948bf9f0fc0ff6cde31f4e675d3e9b46f129071bf2e5f
USER root
RUN apt-get update && apt-get install -y --no-install-recommends build-essential meson ninja-build pkg-config \
      curl ca-certificates libpq-dev libssl-dev libxml2-dev liblz4-dev libzstd-dev libbz2-dev zlib1g-dev libyaml-dev \
    && rm -rf /var/lib/apt/lists/* \
    && curl -fsSL -o /tmp/pgbackrest.tar.gz \
      "https://github.com/pgbackrest/pgbackrest/releases/download/release/${PGBACKREST_VERSION}/pgbackrest-${PGBACKREST_VERSION}.tar.gz" \
    && echo "${PGBACKREST_SHA256}  /tmp/pgbackrest.tar.gz" | sha256sum -c - \
    && mkdir /src && tar -xzf /tmp/pgbackrest.tar.gz -C /src --strip-components=1 \
    && meson setup /build /src --buildtype=release \
    && meson compile -C /build \
    && strip /build/src/pgbackrest \
    && /build/src/pgbackrest version

FROM apache/airflow:3.3.2-python3.11
# the compose database's PostgreSQL major and TimescaleDB version (docker/postgres/Dockerfile): the restore
# drill starts the restored copy here, and its postgresql.conf preloads timescaledb of exactly that version
ARG PG_MAJOR=16
ARG TIMESCALEDB_VERSION=2.17.2
ARG PGBACKREST_VERSION=2.59.3
USER root
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless curl \
    && rm -rf /var/lib/apt/lists/*
# PostgreSQL server binaries (PGDG) and TimescaleDB (Timescale's repository) for the restore drill, plus the
# runtime libraries of pgBackRest; postgresql-common must not create a default cluster
RUN . /etc/os-release \
    && curl -fsSL https://www.postgresql.org/media/keys/ACCC4CF8.asc -o /usr/share/keyrings/pgdg.asc \
    && echo "deb [signed-by=/usr/share/keyrings/pgdg.asc] https://apt.postgresql.org/pub/repos/apt ${VERSION_CODENAME}-pgdg main" \
      > /etc/apt/sources.list.d/pgdg.list \
    && curl -fsSL https://packagecloud.io/timescale/timescaledb/gpgkey -o /usr/share/keyrings/timescaledb.asc \
    && echo "deb [signed-by=/usr/share/keyrings/timescaledb.asc] https://packagecloud.io/timescale/timescaledb/debian/ ${VERSION_CODENAME} main" \
      > /etc/apt/sources.list.d/timescaledb.list \
    && apt-get update \
    && apt-get install -y --no-install-recommends postgresql-common \
    && sed -ri 's/^#?[[:space:]]*create_main_cluster[[:space:]]*=.*/create_main_cluster = false/' \
      /etc/postgresql-common/createcluster.conf \
    && apt-get install -y --no-install-recommends "postgresql-${PG_MAJOR}" \
      "timescaledb-2-postgresql-${PG_MAJOR}=${TIMESCALEDB_VERSION}~debian${VERSION_ID}*" \
      "timescaledb-2-loader-postgresql-${PG_MAJOR}=${TIMESCALEDB_VERSION}~debian${VERSION_ID}*" \
      libpq5 libssl3 libxml2 liblz4-1 libzstd1 libbz2-1.0 zlib1g libyaml-0-2 \
    && rm -rf /var/lib/apt/lists/* \
    && test -x "/usr/lib/postgresql/${PG_MAJOR}/bin/pg_ctl" \
    && test -f "/usr/lib/postgresql/${PG_MAJOR}/lib/timescaledb-${TIMESCALEDB_VERSION}.so"
COPY --from=pgbackrest /build/src/pgbackrest /usr/bin/pgbackrest
# pgBackRest runs as the airflow user (connection platform_backup has no os_user in compose); the
# restore drill's scratch clusters go to /opt/airflow/restore-drill (extra scratch_root, a named volume)
RUN pgbackrest version | grep -qx "pgBackRest ${PGBACKREST_VERSION}" \
    && install -d -o airflow -g 0 -m 0750 /var/log/pgbackrest /var/spool/pgbackrest /tmp/pgbackrest \
    && install -d -o airflow -g 0 -m 0700 /opt/airflow/restore-drill
COPY --from=jars /jars/ /opt/airflow/jars/
# the platform's entrypoint (docs/compose.md): exports the connections secrets-init wrote (volume airflow-secrets,
# PLATFORM_ENV_DIR) as AIRFLOW_CONN_* variables, then runs the official image's /entrypoint under dumb-init
COPY --chmod=0755 docker/airflow/entrypoint.sh /usr/local/bin/platform-airflow-entrypoint.sh
ENTRYPOINT ["/usr/bin/dumb-init", "--", "/usr/local/bin/platform-airflow-entrypoint.sh"]
USER airflow
COPY requirements.txt constraints.txt /opt/airflow/
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt -c /opt/airflow/constraints.txt
COPY --from=engine /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps /tmp/wheels/*.whl
