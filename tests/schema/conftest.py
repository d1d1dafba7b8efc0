"""Fixtures of the schema tests: temporary databases in the real cluster (never the shared `platform`
database), login roles for the application roles, a keyring, and the spec parsed from the markdown."""
from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass, field

import psycopg
import pytest
from psycopg import sql

from include.connections import postgres_dsn
from include.db.migrate import migrate
from include.security.crypto import Keyring
from tests.schema.schemaspec import Spec, load_spec



# ------------------------------------------------------------------------------------- databases
@pytest.fixture(scope="session")
def base_dsn() -> str:
    return postgres_dsn()


def _dsn_for(base: str, **overrides) -> str:
    return psycopg.conninfo.make_conninfo(base, **overrides)


class TempDatabases:
    """Creates databases named t_schema_<random> and drops them (WITH FORCE) at the end."""

    def __init__(self, base: str):
        self.base = base
        self.names: list[str] = []

    def create(self, prefix: str = "t_schema") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.base, autocommit=True) as c:
            c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        self.names.append(name)
        return _dsn_for(self.base, dbname=name)

    def drop_all(self) -> None:
        # WITH (FORCE) may not terminate a backend of another role (the test login roles) that is still
        # closing; such a backend goes away by itself within moments, so retry for a while
        with psycopg.connect(self.base, autocommit=True) as c:
            for name in self.names:
                for attempt in range(100):
                    try:
                        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                        break
                    except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
                        if attempt == 99:
                            raise
                        time.sleep(0.1)
        self.names.clear()


@pytest.fixture(scope="session")
def temp_databases(base_dsn):
    dbs = TempDatabases(base_dsn)
    yield dbs
    dbs.drop_all()


SCHEMA_TARGET = 99  # the last migration number of issue 3's range (0001-0099)


@pytest.fixture(scope="session")
def schema_dsn(temp_databases) -> str:
    """A database with the migrations of this area (0001-0099) applied, shared by the session's tests.
    Other areas' migrations may deliberately change spec columns (with a reason in their file); the
    full set is exercised by test_migrate.py."""
    dsn = temp_databases.create()
    migrate(dsn, target=SCHEMA_TARGET)
    return dsn


@pytest.fixture(scope="session")
def full_dsn(temp_databases) -> str:
    """A database with every migration of include/sql applied (all areas)."""
    dsn = temp_databases.create()
    migrate(dsn)
    return dsn


@pytest.fixture
def fresh_dsn(temp_databases) -> str:
    """An empty database of its own."""
    return temp_databases.create()


@pytest.fixture
def migrated_dsn(temp_databases) -> str:
    """A migrated database of its own (for tests that change things globally, e.g. key rotation)."""
    dsn = temp_databases.create()
    migrate(dsn, target=SCHEMA_TARGET)
    return dsn


@pytest.fixture
def conn(schema_dsn):
    with psycopg.connect(schema_dsn, autocommit=True) as c:
        yield c


@pytest.fixture(scope="session")
def keyring() -> Keyring:
    return Keyring.generate("k1")


# ------------------------------------------------------------------------------------- login roles
@dataclass
class LoginRoles:
    dsns: dict[str, str] = field(default_factory=dict)   # app role -> DSN of a login role member of it
    names: list[str] = field(default_factory=list)


@pytest.fixture(scope="session")
def login_roles(base_dsn, schema_dsn):
    """One LOGIN role per application role (random names, INHERIT), connectable to the schema database."""
    roles = LoginRoles()
    tag = uuid.uuid4().hex[:8]
    with psycopg.connect(base_dsn, autocommit=True) as c:
        for app_role in ("store_manager", "regional_coordinator", "admin"):
            name, password = f"t_{app_role}_{tag}", secrets.token_urlsafe(16)
            c.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} IN ROLE {}").format(
                sql.Identifier(name), sql.Literal(password), sql.Identifier(f"app_{app_role}")))
            roles.names.append(name)
            roles.dsns[app_role] = _dsn_for(schema_dsn, user=name, password=password)
    yield roles
    with psycopg.connect(base_dsn, autocommit=True) as c:
        for name in roles.names:
            c.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(name)))




@pytest.fixture(scope="session")
def spec() -> Spec:
    return load_spec()
