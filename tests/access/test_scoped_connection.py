"""Defense in depth: the connection the API reads with (its NOINHERIT login role after SET ROLE
app_<role>) sees only the caller's scope even when a query asks for more, and without a role nothing."""
from __future__ import annotations

import psycopg
import pytest

from include.access import scope
from include.access.accounts import load_principal
from include.db.session import apply_context


def _api_conn(world, api_login_role):
    return psycopg.connect(psycopg.conninfo.make_conninfo(world.dsn, user=api_login_role[0],
                                                          password=api_login_role[1]),
                           autocommit=True)


@pytest.mark.parametrize("who,stores,files", [("sm_a", {"a"}, {"a"}), ("coord_r1", {"a", "c"}, {"a"}),
                                              ("admin", {"a", "b", "c"}, {"a", "b"})])
def test_rls_scope_of_each_role(world, api_login_role, who, stores, files):
    with psycopg.connect(world.dsn) as owner:
        ctx = scope.context(load_principal(owner, world.users[who]))
    ids = {v: k for k, v in world.stores.items()}
    with _api_conn(world, api_login_role) as c:
        apply_context(c, ctx)
        seen = {ids[r[0]] for r in c.execute("SELECT id FROM stores") if r[0] in ids}
        seen_files = {ids[r[0]] for r in c.execute("SELECT store_id FROM transaction_files WHERE id = ANY(%s)",
                                                    (list(world.files.values()),))}
    assert (seen, seen_files) == (stores, files)


def test_without_role_the_login_reads_nothing(world, api_login_role):
    with _api_conn(world, api_login_role) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT count(*) FROM stores")
