"""Connection settings for code that runs outside Airflow (CLI commands, tests, Spark drivers).

Airflow reads connections from ``AIRFLOW_CONN_<ID>`` environment variables; the local stack writes
them (JSON form) to ``.local/env.sh`` from ``airflow_settings.yaml``. This module reads the same
variables so that a command run from a shell and a task run by Airflow use the same settings.
Inside tasks, prefer the provider hooks; this module is for code that must not import Airflow.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from urllib.parse import quote, unquote, urlsplit

POSTGRES = "platform_postgres"
S3 = "platform_s3"
KAFKA = "platform_kafka"
KAFKA_PRODUCER = "platform_kafka_producer"
ELASTICSEARCH = "platform_es"
REDIS = "platform_redis"
# the platform API's database login (NOINHERIT, acts only through SET ROLE app_<role>): include/access
API_POSTGRES = "platform_api_postgres"
# key-only connections: secrets backend in production, generated into .local/secrets locally
ENCRYPTION = "platform_encryption"
PRIVACY_HMAC = "platform_privacy_hmac"


class ConnectionNotConfigured(RuntimeError):
    """Raised when ``AIRFLOW_CONN_<ID>`` is missing; the message says how to set it."""


@dataclass(frozen=True)
class Connection:
    conn_id: str
    conn_type: str
    host: str | None = None
    port: int | None = None
    login: str | None = None
    password: str | None = None
    schema: str | None = None
    extra: dict = field(default_factory=dict)


def get_connection(conn_id: str) -> Connection:
    """The connection ``conn_id`` from the environment (JSON or URI form, as Airflow accepts)."""
    var = f"AIRFLOW_CONN_{conn_id.upper()}"
    raw = os.environ.get(var)
    if not raw:
        raise ConnectionNotConfigured(
            f"{var} is not set: run `source .local/env.sh` after `scripts/services.sh up`, "
            f"or define connection '{conn_id}' in your secrets backend"
        )
    raw = raw.strip()
    if raw.startswith("{"):
        d = json.loads(raw)
        extra = d.get("extra") or {}
        if isinstance(extra, str):
            extra = json.loads(extra) if extra else {}
        return Connection(conn_id, d.get("conn_type", ""), d.get("host"),
                          int(d["port"]) if d.get("port") else None, d.get("login"),
                          d.get("password"), d.get("schema"), extra)
    u = urlsplit(raw)
    return Connection(conn_id, u.scheme, u.hostname, u.port,
                      unquote(u.username) if u.username else None,
                      unquote(u.password) if u.password else None,
                      u.path.lstrip("/") or None, {})


def postgres_dsn(conn_id: str = POSTGRES, **overrides: str) -> str:
    """A libpq URI for a postgres connection; ``overrides`` replace user/password/dbname."""
    c = get_connection(conn_id)
    user = overrides.get("user", c.login or "")
    password = overrides.get("password", c.password or "")
    dbname = overrides.get("dbname", c.schema or "")
    auth = quote(user, safe="")
    if password:
        auth += ":" + quote(password, safe="")
    query = "&".join(f"{k}={quote(str(v), safe='/')}" for k, v in sorted(c.extra.items()))
    return f"postgresql://{auth}@{c.host}:{c.port or 5432}/{dbname}" + (f"?{query}" if query else "")


# ---------------------------------------------------------------- TLS (docs/tls.md)
# The TLS settings of a connection live in its extra, in the keys the Airflow providers read, so a hook
# and the code below build the same client: redis-py's ``ssl*`` keys (RedisHook), ``verify`` (AWS
# connections), ``ca_certs``/``verify_certs`` (Elasticsearch), libpq's ``sslmode``/``sslrootcert``
# (postgres_dsn puts every extra into the URI) and librdkafka's ``security.protocol``/``ssl.*`` keys.
REDIS_SSL_KEYS = ("ssl", "ssl_cert_reqs", "ssl_ca_certs", "ssl_keyfile", "ssl_certfile", "ssl_check_hostname")
LIBPQ_SSL_KEYS = ("sslmode", "sslrootcert", "sslcert", "sslkey", "sslcrl", "ssl_min_protocol_version")


def redis_ssl_kwargs(extra: dict) -> dict:
    """redis-py keyword arguments for the TLS keys of a redis connection's extra (none in plaintext)."""
    return {k: extra[k] for k in REDIS_SSL_KEYS if k in extra}


def s3_verify(extra: dict):
    """boto3's ``verify`` for an aws connection's extra: the CA bundle path, or None (default trust)."""
    return extra.get("verify")


def es_tls_kwargs(extra: dict) -> dict:
    """elasticsearch-py keyword arguments for the TLS keys of an elasticsearch connection's extra."""
    return {k: extra[k] for k in ("ca_certs", "verify_certs", "ssl_assert_hostname") if k in extra}
