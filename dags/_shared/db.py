"""The platform database's libpq URI from the Airflow connection (call inside tasks only)."""
from __future__ import annotations

PLATFORM_POSTGRES = "platform_postgres"


def platform_dsn() -> str:
    """libpq URI of connection ``platform_postgres`` (secrets backend, env or metadata DB)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    from urllib.parse import quote

    from include.connections import LIBPQ_SSL_KEYS

    hook = PostgresHook(postgres_conn_id=PLATFORM_POSTGRES)
    uri = hook.get_uri()
    # the hook names its SQLAlchemy dialect in the scheme; psycopg wants plain libpq
    dsn = "postgresql://" + uri.split("://", 1)[1]
    # get_uri drops the extra: carry libpq's TLS settings over (TLS mode, docs/tls.md)
    extra = hook.get_connection(PLATFORM_POSTGRES).extra_dejson or {}
    ssl = "&".join(f"{k}={quote(str(extra[k]), safe='/')}" for k in LIBPQ_SSL_KEYS if k in extra)
    return dsn + ("&" if "?" in dsn else "?") + ssl if ssl else dsn
