"""docker-compose.yml checked statically (no Docker engine on these machines) against
airflow_settings.yaml, and the local settings loader checked against both."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SETTINGS = yaml.safe_load((ROOT / "airflow_settings.yaml").read_text())["airflow"]
SERVICES = COMPOSE["services"]
ONE_SHOT = {name for name, s in SERVICES.items() if s.get("restart") == "no"}

spec = importlib.util.spec_from_file_location("settings_loader", ROOT / "scripts" / "settings.py")
settings_loader = importlib.util.module_from_spec(spec)
spec.loader.exec_module(settings_loader)


def _container_ports(service: dict) -> set[int]:
    ports = set()
    for p in service.get("ports", []):
        ports.add(int(str(p).split(":")[-1].split("/")[0]))
    for p in service.get("expose", []):
        ports.add(int(p))
    return ports


def _addresses():
    """(conn_id, host, port) of every address a connection names, host part included in extras."""
    for c in SETTINGS["connections"]:
        if c.get("conn_host"):
            yield c["conn_id"], c["conn_host"], c.get("conn_port")
        for key in ("endpoint_url", "bootstrap.servers"):
            v = (c.get("conn_extra") or {}).get(key)
            if v:
                m = re.match(r"^(?:\w+://)?([\w.-]+):(\d+)", v)
                yield c["conn_id"], m.group(1), int(m.group(2))


@pytest.mark.parametrize(("conn_id", "host", "port"), list(_addresses()))
def test_every_connection_names_a_compose_service_and_its_port(conn_id, host, port):
    assert host in SERVICES, f"{conn_id}: host {host!r} is not a compose service"
    assert port in _container_ports(SERVICES[host]), f"{conn_id}: {host} does not publish/expose {port}"


def test_postgres_credentials_agree_with_the_connection():
    pg = next(c for c in SETTINGS["connections"] if c["conn_id"] == "platform_postgres")
    init_sql = (ROOT / "scripts" / "compose" / "init-db.sql").read_text()
    assert f"CREATE ROLE {pg['conn_login']} LOGIN" in init_sql
    assert f"PASSWORD '{pg['conn_password']}'" in init_sql
    assert f"CREATE DATABASE {pg['conn_schema']} OWNER {pg['conn_login']}" in init_sql
    mounted = [v for v in SERVICES["postgres"]["volumes"] if "init-db.sql" in v]
    assert mounted and mounted[0].startswith("./scripts/compose/init-db.sql:/docker-entrypoint-initdb.d/")
    airflow_url = COMPOSE["x-airflow-common"]["environment"]["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert airflow_url == "postgresql+psycopg://airflow:airflow@postgres:5432/airflow"
    assert "CREATE ROLE airflow LOGIN PASSWORD 'airflow'" in init_sql


def test_minio_credentials_and_bucket_agree_with_the_settings():
    s3 = next(c for c in SETTINGS["connections"] if c["conn_id"] == "platform_s3")
    env = SERVICES["minio"]["environment"]
    assert (env["MINIO_ROOT_USER"], env["MINIO_ROOT_PASSWORD"]) == (s3["conn_login"], s3["conn_password"])
    bucket = next(v["variable_value"] for v in SETTINGS["variables"] if v["variable_name"] == "platform_bucket")
    assert f"local/{bucket}" in SERVICES["minio-init"]["entrypoint"]


def test_images_are_pinned_and_long_running_services_have_healthchecks():
    for name, s in SERVICES.items():
        image = s.get("image") or COMPOSE["x-airflow-common"]["image"]
        tag = image.rsplit(":", 1)[-1] if ":" in image.split("/")[-1] else ""
        assert tag and tag != "latest", f"{name}: image {image!r} is not pinned"
        if name not in ONE_SHOT:
            assert "healthcheck" in s, f"{name}: no healthcheck"
            assert s["healthcheck"]["test"], f"{name}: empty healthcheck"


def test_stack_has_every_component_the_platform_needs():
    expected = {"postgres", "redis", "elasticsearch", "minio", "kafka", "spark-master", "spark-worker",
                "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                "airflow-worker"}
    assert expected <= set(SERVICES)
    assert SERVICES["postgres"]["image"].startswith("timescale/timescaledb:")
    assert COMPOSE["x-airflow-common"]["environment"]["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert COMPOSE["x-airflow-common"]["environment"]["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:6379")
    mounts = {v.split(":")[0] for v in COMPOSE["x-airflow-common"]["volumes"]}
    assert {"./dags", "./plugins", "./include"} <= mounts
    named = set(COMPOSE["volumes"])
    for name, s in SERVICES.items():
        for v in s.get("volumes", []):
            src = v.split(":")[0]
            if not src.startswith("."):
                assert src in named, f"{name}: volume {src} is not a declared named volume"


def test_local_loader_maps_every_service_to_its_loopback_port():
    ports = settings_loader.read_ports()
    local = settings_loader.local_connections()
    assert local["platform_postgres"]["host"] == "127.0.0.1"
    assert local["platform_postgres"]["port"] == ports["PG_PORT"]
    assert local["platform_s3"]["extra"]["endpoint_url"] == f"http://127.0.0.1:{ports['S3_PORT']}"
    assert local["platform_kafka"]["extra"]["bootstrap.servers"] == f"127.0.0.1:{ports['KAFKA_PORT']}"
    assert local["platform_es"]["port"] == ports["ES_PORT"]
    assert local["platform_redis"]["port"] == ports["REDIS_PORT"]
    # credentials are carried over unchanged
    compose = settings_loader.compose_connections()
    for conn_id, d in compose.items():
        assert local[conn_id].get("login") == d.get("login")
        assert local[conn_id].get("password") == d.get("password")
    assert set(compose) == set(local)
