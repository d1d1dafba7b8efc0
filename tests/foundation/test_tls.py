"""TLS mode of the local stack (docs/tls.md, scripts/tls.sh).

Two parts:

* ``spare_*``: in every run (either mode) the module starts its own TLS PostgreSQL and TLS Redis on spare
  ports, with a CA of their own, through the same script (``scripts/services.sh up --tls postgres redis``
  with ``PLATFORM_STATE_DIR``/``PLATFORM_PORTS_FILE`` pointing at a temporary directory), and checks them and
  the connection settings the script wrote for them. So the TLS configuration is tested in every CI run.
* ``main_*``: the shared services, checked for the mode they run in (``PLATFORM_TLS_MODE`` of env.sh). In TLS
  mode: plaintext connections to every service fail, a TLS 1.2-only client is refused, verified TLS 1.3
  connections succeed, a client that does not trust the project CA is refused. In plaintext mode: the
  connections carry no TLS settings and the services answer plaintext, not TLS (settings and services agree).
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import certifi
import psycopg
import pytest

from tests import tlsmode
from tests.apiserver import api_server, free_port

ROOT = Path(__file__).resolve().parents[2]
SERVICES = ROOT / "scripts" / "services.sh"
PORT_KEYS = ("PG_PORT", "REDIS_PORT", "KAFKA_PORT", "KAFKA_CONTROLLER_PORT", "ES_PORT", "ES_TRANSPORT_PORT",
             "S3_PORT", "AIRFLOW_API_PORT", "BACKUP_S3_PORT")


def load_env(path: Path) -> dict[str, str]:
    out = subprocess.run(["bash", "-c", 'set -a; source "$0"; env -0', str(path)], check=True,
                         capture_output=True, env={"PATH": os.environ["PATH"]}).stdout
    return dict(e.decode().split("=", 1) for e in out.split(b"\0") if b"=" in e)


def conn(env: dict[str, str], conn_id: str) -> dict:
    return json.loads(env[f"AIRFLOW_CONN_{conn_id.upper()}"])


def libpq_dsn(c: dict, **params: str) -> str:
    """A libpq conninfo for a postgres connection dict, its extra and ``params`` as parameters."""
    return psycopg.conninfo.make_conninfo(host=c["host"], port=c["port"], user=c["login"],
                                          password=c.get("password", ""), dbname=c["schema"],
                                          connect_timeout=10, **{**c.get("extra", {}), **params})


def tls_handshake(port: int, ca: str, *, max_version: ssl.TLSVersion | None = None, timeout: float = 10) -> str:
    """Negotiated protocol of a verified TLS handshake with 127.0.0.1:port (raises when refused)."""
    ctx = ssl.create_default_context(cafile=ca)
    if max_version is not None:
        ctx.maximum_version = max_version
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            return s.version()


# ------------------------------------------------------------------ spare TLS PostgreSQL and Redis
@dataclass
class Spare:
    env: dict[str, str]      # the env.sh the script wrote for the spare stack
    ca: str

    def pg(self) -> dict:
        return conn(self.env, "platform_postgres")

    def redis(self) -> dict:
        return conn(self.env, "platform_redis")


@pytest.fixture(scope="module")
def spare():
    base = Path(tempfile.mkdtemp(prefix="platform-tls-test-", dir="/tmp"))
    os.chmod(base, 0o755)  # PostgreSQL runs as its own user and must reach its data directory
    ports = {k: free_port() for k in PORT_KEYS}
    (base / "ports.env").write_text("".join(f"{k}={v}\n" for k, v in ports.items()))
    env = {**{k: v for k, v in os.environ.items()
              if not k.startswith("AIRFLOW_CONN_") and k not in ("PLATFORM_TLS", "PLATFORM_TLS_MODE")},
           "PLATFORM_STATE_DIR": str(base / "state"), "PLATFORM_PORTS_FILE": str(base / "ports.env")}
    state = base / "state"
    try:
        up = subprocess.run(["bash", str(SERVICES), "up", "--tls", "postgres", "redis"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
        assert up.returncode == 0, f"spare TLS stack did not start:\n{up.stderr[-4000:]}"
        senv = load_env(state / "env.sh")
        yield Spare(senv, senv["PLATFORM_CA_FILE"])
    finally:
        subprocess.run(["bash", str(SERVICES), "down", "postgres", "redis"], env=env, cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
        data = Path((state / "data-dir").read_text().strip()) if (state / "data-dir").exists() else None
        shutil.rmtree(base, ignore_errors=True)
        if data is not None and not str(data).startswith(str(base)):
            shutil.rmtree(data, ignore_errors=True)


def test_spare_services_script_writes_verifying_connection_settings(spare):
    e = spare.env
    assert e["PLATFORM_TLS_MODE"] == "on" and Path(spare.ca).is_file()
    assert spare.pg()["extra"] == {"sslmode": "verify-full", "sslrootcert": spare.ca}
    api_pg = conn(e, "platform_api_postgres")["extra"]
    assert api_pg == {"sslmode": "verify-full", "sslrootcert": spare.ca}
    r = spare.redis()["extra"]
    assert r["ssl"] is True and r["ssl_ca_certs"] == spare.ca and r["ssl_cert_reqs"] == "required"
    for cid in ("platform_kafka", "platform_kafka_producer"):
        k = conn(e, cid)["extra"]
        assert k["security.protocol"] == "SSL" and k["ssl.ca.location"] == spare.ca
    s3 = conn(e, "platform_s3")["extra"]
    assert s3["endpoint_url"].startswith("https://127.0.0.1:") and s3["verify"] == spare.ca
    es = conn(e, "platform_es")
    assert es["schema"] == "https" and es["extra"]["ca_certs"] == spare.ca and es["login"] and es["password"]
    # Airflow itself: metadata database, api-server certificate, task logs in Elasticsearch
    assert "sslmode=verify-full" in e["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert e["AIRFLOW__API__BASE_URL"].startswith("https://")
    assert e["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("https://")
    assert Path(e["AIRFLOW__API__SSL_CERT"]).is_file() and Path(e["AIRFLOW__API__SSL_KEY"]).is_file()
    assert e["AIRFLOW__API__SSL_CA_FILE"] == spare.ca
    assert e["AIRFLOW__ELASTICSEARCH__HOST"].startswith("https://") and "@" not in e["AIRFLOW__ELASTICSEARCH__HOST"]
    assert e["AIRFLOW__ELASTICSEARCH_CONFIGS__BASIC_AUTH"]
    assert e["AIRFLOW__ELASTICSEARCH_CONFIGS__CA_CERTS"] == spare.ca


def test_spare_postgres_verified_tls13_through_the_connection_settings_only(spare, monkeypatch):
    from include.connections import postgres_dsn

    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_POSTGRES", json.dumps(spare.pg()))
    with psycopg.connect(postgres_dsn(), connect_timeout=10) as c:
        ssl_on, version = c.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
        assert (ssl_on, version) == (True, "TLSv1.3")


def test_spare_postgres_refuses_a_tls12_only_client(spare):
    with pytest.raises(psycopg.OperationalError, match="SSL|TLS|protocol"):
        psycopg.connect(libpq_dsn(spare.pg(), ssl_max_protocol_version="TLSv1.2")).close()


def test_spare_postgres_refuses_plaintext(spare):
    with pytest.raises(psycopg.OperationalError, match="no pg_hba.conf entry.*no encryption"):
        psycopg.connect(libpq_dsn(spare.pg(), sslmode="disable")).close()


def test_spare_postgres_client_refuses_a_server_it_cannot_verify(spare):
    # the public CAs do not vouch for the project CA's certificate: verify-full must fail
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        psycopg.connect(libpq_dsn(spare.pg(), sslrootcert=certifi.where())).close()


def test_spare_redis_verified_tls13_through_the_connection_settings_only(spare, monkeypatch):
    from include.search.clients import describe_redis, redis_client

    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_REDIS", json.dumps(spare.redis()))
    r = redis_client()
    assert r.ping() is True
    assert describe_redis(r).startswith("rediss://")
    assert tls_handshake(spare.redis()["port"], spare.ca) == "TLSv1.3"


def test_spare_redis_refuses_plaintext_and_tls12(spare):
    import redis

    c = spare.redis()
    with pytest.raises((redis.ConnectionError, redis.TimeoutError)):
        redis.Redis(host=c["host"], port=c["port"], socket_timeout=5, socket_connect_timeout=5).ping()
    with pytest.raises(ssl.SSLError):
        tls_handshake(c["port"], spare.ca, max_version=ssl.TLSVersion.TLSv1_2)
    with pytest.raises(ssl.SSLCertVerificationError):
        tls_handshake(c["port"], certifi.where())


# ------------------------------------------------------------------ the shared services, in their mode
MAIN_SERVICES = ("postgres", "redis", "kafka", "elasticsearch", "s3")


def main_port(service: str) -> int:
    e = os.environ
    if service == "postgres":
        return int(conn(e, "platform_postgres")["port"])
    if service == "redis":
        return int(conn(e, "platform_redis")["port"])
    if service == "kafka":
        return int(conn(e, "platform_kafka")["extra"]["bootstrap.servers"].split(",")[0].rsplit(":", 1)[1])
    if service == "elasticsearch":
        return int(conn(e, "platform_es")["port"])
    return int(conn(e, "platform_s3")["extra"]["endpoint_url"].rstrip("/").rsplit(":", 1)[1])


def plaintext_attempt(service: str) -> None:
    """One plaintext request to the service; raises when it fails."""
    port = main_port(service)
    if service == "postgres":
        psycopg.connect(libpq_dsn(conn(os.environ, "platform_postgres"), sslmode="disable")).close()
    elif service == "redis":
        import redis

        redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=5).ping()
    elif service == "kafka":
        from confluent_kafka.admin import AdminClient

        AdminClient({"bootstrap.servers": f"127.0.0.1:{port}", "security.protocol": "PLAINTEXT",
                     "socket.timeout.ms": 5000}).list_topics(timeout=8)
    elif service == "elasticsearch":
        c = conn(os.environ, "platform_es")
        req = urllib.request.Request(f"http://127.0.0.1:{port}/_cluster/health")
        if c.get("login"):
            import base64

            token = base64.b64encode(f"{c['login']}:{c.get('password', '')}".encode()).decode()
            req.add_header("Authorization", f"Basic {token}")
        urllib.request.urlopen(req, timeout=10).close()
    else:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10).close()


def client_from_settings(service: str) -> None:
    """The project's own client for the service, built from the connection settings only; one call."""
    if service == "postgres":
        from include.connections import postgres_dsn

        with psycopg.connect(postgres_dsn(), connect_timeout=10) as c:
            ssl_on, version = c.execute("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetchone()
            assert (ssl_on, version) == (True, "TLSv1.3")
    elif service == "redis":
        from include.search.clients import redis_client

        assert redis_client().ping() is True
    elif service == "kafka":
        from confluent_kafka.admin import AdminClient

        from include.connections import KAFKA, get_connection

        x = {k: v for k, v in get_connection(KAFKA).extra.items()
             if k not in ("group.id", "auto.offset.reset", "enable.auto.commit")}
        assert AdminClient(x).list_topics(timeout=15).brokers
    elif service == "elasticsearch":
        from include.search.clients import check_es, es_client

        assert check_es(es_client())["status"] in ("green", "yellow")
    else:
        import boto3

        from include.connections import S3, get_connection

        c = get_connection(S3)
        boto3.client("s3", endpoint_url=c.extra["endpoint_url"], region_name=c.extra.get("region_name"),
                     aws_access_key_id=c.login, aws_secret_access_key=c.password,
                     verify=c.extra.get("verify")).list_buckets()


@pytest.mark.parametrize("service", MAIN_SERVICES)
def test_main_plaintext_matches_the_mode(service):
    if tlsmode.tls_on():
        with pytest.raises(Exception) as e:  # noqa: PT011 - each client raises its own kind
            plaintext_attempt(service)
        assert not isinstance(e.value, AssertionError)
    else:
        plaintext_attempt(service)


@pytest.mark.parametrize("service", MAIN_SERVICES)
def test_main_tls_matches_the_mode(service):
    e = os.environ
    if not tlsmode.tls_on():
        # plaintext mode: no TLS setting in any connection, and the service is not speaking TLS
        for cid in ("platform_postgres", "platform_redis", "platform_kafka", "platform_es", "platform_s3"):
            c = conn(e, cid)
            x = c.get("extra", {})
            assert not ({"sslmode", "ssl", "ssl_ca_certs", "security.protocol", "ca_certs", "verify"} & set(x)), cid
            assert c.get("schema") != "https" and not str(x.get("endpoint_url", "")).startswith("https")
        if service == "postgres":
            with psycopg.connect(libpq_dsn(conn(e, "platform_postgres"))) as c:
                assert c.execute("SHOW ssl").fetchone() == ("off",)
        else:
            with pytest.raises((ssl.SSLError, OSError)):
                tls_handshake(main_port(service), certifi.where(), timeout=3)  # a plaintext server may just wait
        return
    ca = tlsmode.ca_file()
    assert ca and Path(ca).is_file()
    client_from_settings(service)
    if service == "postgres":
        c = conn(e, "platform_postgres")
        assert c["extra"]["sslmode"] == "verify-full"
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(libpq_dsn(c, ssl_max_protocol_version="TLSv1.2")).close()
        with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
            psycopg.connect(libpq_dsn(c, sslrootcert=certifi.where())).close()
    else:
        port = main_port(service)
        assert tls_handshake(port, ca) == "TLSv1.3"
        with pytest.raises((ssl.SSLError, ConnectionResetError)):
            tls_handshake(port, ca, max_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_handshake(port, certifi.where())


def test_main_elasticsearch_requires_the_file_realm_user_in_tls_mode():
    c = conn(os.environ, "platform_es")
    url = f"{c.get('schema', 'http')}://127.0.0.1:{c['port']}/_cluster/health"
    if not tlsmode.tls_on():
        with urllib.request.urlopen(url, timeout=10) as r:  # no security in plaintext mode
            assert r.status == 200
        return
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(url, timeout=10, context=tlsmode.urllib_context())
    assert e.value.code == 401


def test_main_airflow_api_server_matches_the_mode(tmp_path):
    """TLS mode: an api-server started with env.sh's settings serves https only (TLSv1.3 negotiated,
    verified against the project CA). Plaintext mode: env.sh has no certificate and http URLs."""
    import signal
    import time

    import requests

    e = os.environ
    if not tlsmode.tls_on():
        assert not e.get("AIRFLOW__API__SSL_CERT") and e["AIRFLOW__API__BASE_URL"].startswith("http://")
        assert e["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"].startswith("http://")
        return
    assert e["AIRFLOW__API__BASE_URL"].startswith("https://") and Path(e["AIRFLOW__API__SSL_CERT"]).is_file()
    port = free_port()
    with api_server(e, port, tmp_path / "api-server.log"):
        assert tls_handshake(port, tlsmode.ca_file()) == "TLSv1.3"
        with pytest.raises(ssl.SSLError):  # the minimum is TLS 1.3 (scripts/openssl-tls13.cnf)
            tls_handshake(port, tlsmode.ca_file(), max_version=ssl.TLSVersion.TLSv1_2)
        with pytest.raises(ssl.SSLCertVerificationError):
            tls_handshake(port, certifi.where())
        with pytest.raises(requests.ConnectionError):
            requests.get(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=10)
