"""Binary COPY that also works where row-level security applies.

PostgreSQL refuses ``COPY ... FROM`` on a table whose RLS applies to the current role. Then the rows are
COPYed into a temporary table and moved with one ``INSERT ... SELECT``, so the policies check every row
(a row of another store fails the whole load). Otherwise (the owner on a table that is not FORCEd) the
COPY goes straight into the table.
"""
from __future__ import annotations

import uuid
from typing import Iterable, Sequence

import psycopg
from psycopg import sql


def rls_applies(conn: psycopg.Connection, table: str) -> bool:
    return conn.execute("SELECT row_security_active(%s::regclass)", (table,)).fetchone()[0]


def copy_rows(conn: psycopg.Connection, table: str, columns: Sequence[str], types: Sequence[str],
              rows: Iterable[Sequence]) -> int:
    """COPY ``rows`` (tuples in ``columns`` order, Postgres ``types``) into ``table``; returns the row count."""
    cols = sql.SQL(", ").join(map(sql.Identifier, columns))
    n = 0
    with conn.transaction():
        if not rls_applies(conn, table):
            target = sql.Identifier(table)
            staged = None
        else:
            staged = sql.Identifier(f"_stage_{table}_{uuid.uuid4().hex[:8]}")
            conn.execute(sql.SQL("CREATE TEMP TABLE {} AS SELECT {} FROM {} WITH NO DATA").format(
                staged, cols, sql.Identifier(table)))
            target = staged
        with conn.cursor() as cur:
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(target, cols)) as copy:
                copy.set_types(list(types))
                for r in rows:
                    copy.write_row(r)
                    n += 1
        if staged is not None:
            conn.execute(sql.SQL("INSERT INTO {} ({}) SELECT {} FROM {}").format(
                sql.Identifier(table), cols, cols, staged))
            conn.execute(sql.SQL("DROP TABLE {}").format(staged))
    return n
