"""The local stack's TLS mode as tests see it (docs/tls.md).

``.local/env.sh`` says which mode the services run in (``PLATFORM_TLS_MODE=on|off``) and, in TLS mode, where
the project CA is (``PLATFORM_CA_FILE``). Service clients get their TLS settings from the connections;
this module is for what tests set up themselves: an Airflow api-server on a port of their own, HTTP calls
to it, and connection JSON built from a DSN.
"""
from __future__ import annotations

import json
import os
import ssl

import psycopg

LIBPQ_SSL_KEYS = ("sslmode", "sslrootcert", "sslcert", "sslkey")


def tls_on() -> bool:
    return os.environ.get("PLATFORM_TLS_MODE") == "on"


def ca_file() -> str | None:
    return os.environ.get("PLATFORM_CA_FILE") if tls_on() else None


def api_base_url(port: int) -> str:
    """Base URL of an api-server a test starts on ``port`` (https in TLS mode: env.sh sets its certificate)."""
    return f"{'https' if tls_on() else 'http'}://127.0.0.1:{port}"


def api_server_env(port: int) -> dict[str, str]:
    """``AIRFLOW__API__*`` for an api-server on ``port`` and the task runners that call it."""
    base = api_base_url(port)
    env = {"AIRFLOW__API__PORT": str(port), "AIRFLOW__API__BASE_URL": base,
           "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{base}/execution/"}
    if tls_on():  # TLS 1.3 as the api-server's minimum (scripts/openssl-tls13.cnf)
        env["OPENSSL_CONF"] = os.environ["PLATFORM_API_OPENSSL_CONF"]
    return env


def http_verify() -> str | bool:
    """``verify=`` for requests/httpx calls to a local https endpoint: the project CA in TLS mode."""
    return ca_file() or True


def urllib_context() -> ssl.SSLContext | None:
    """``context=`` for urllib.request.urlopen: verifies the project CA in TLS mode."""
    ca = ca_file()
    return ssl.create_default_context(cafile=ca) if ca else None


def kafka_base(extra: dict) -> dict:
    """The address and TLS keys of a Kafka connection's extra (for a client a test configures itself)."""
    return {k: v for k, v in extra.items() if k == "bootstrap.servers" or k.startswith(("security.", "ssl."))}


def pg_conn_extra(dsn: str) -> dict:
    """libpq's TLS settings of ``dsn`` as a postgres connection's extra (empty in plaintext mode)."""
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    return {k: info[k] for k in LIBPQ_SSL_KEYS if k in info}


def pg_conn_json(dsn: str, **over) -> str:
    """Airflow connection JSON (postgres) for ``dsn``, its TLS settings in the extra."""
    i = psycopg.conninfo.conninfo_to_dict(dsn)
    d = {"conn_type": "postgres", "host": i["host"], "port": int(i["port"]), "login": i["user"],
         "password": i.get("password", ""), "schema": i["dbname"]}
    extra = pg_conn_extra(dsn)
    if extra:
        d["extra"] = extra
    return json.dumps({**d, **over})
