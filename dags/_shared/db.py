"""The platform database's libpq URI from the Airflow connection (call inside tasks only)."""
from __future__ import annotations

PLATFORM_POSTGRES = "platform_postgres"


def platform_dsn() -> str:
    """libpq URI of connection ``platform_postgres`` (secrets backend, env or metadata DB)."""
    from airflow.providers.postgres.hooks.postgres import PostgresHook

    uri = PostgresHook(postgres_conn_id=PLATFORM_POSTGRES).get_uri()
    # the hook names its SQLAlchemy dialect in the scheme; psycopg wants plain libpq
    return "postgresql://" + uri.split("://", 1)[1]
