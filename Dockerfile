# Airflow image of the platform for docker-compose: the locked Python set, Java for PySpark,
# and the compiled mining engine built from native/ in a Rust stage.
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

FROM apache/airflow:3.3.2-python3.11
USER root
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=jars /jars/ /opt/airflow/jars/
USER airflow
COPY requirements.txt constraints.txt /opt/airflow/
RUN pip install --no-cache-dir -r /opt/airflow/requirements.txt -c /opt/airflow/constraints.txt
COPY --from=engine /wheels /tmp/wheels
RUN pip install --no-cache-dir --no-deps /tmp/wheels/*.whl
