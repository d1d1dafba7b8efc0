"""Reading a store's window of transactions and its mined patterns; writing ``privacy_applications``."""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from decimal import Decimal

import psycopg

from .bounding import Transaction


def scope_to_store(conn: psycopg.Connection, store_id) -> None:
    """Hold the current transaction to the store under row-level security (migration 0004)."""
    conn.execute("SELECT set_config('app.current_store_id', %s, true)", (str(store_id),))


def iter_transactions(conn: psycopg.Connection, store_id, window_start: datetime | None = None,
                      window_end: datetime | None = None, batch: int = 5000) -> Iterator[Transaction]:
    """Transactions of the store with ``window_start <= transaction_date < window_end`` (server-side cursor)."""
    q = ("SELECT id, items, quantities, unit_utilities, transaction_date FROM transactions "
         "WHERE store_id = %s AND (%s::timestamptz IS NULL OR transaction_date >= %s::timestamptz) "
         "AND (%s::timestamptz IS NULL OR transaction_date < %s::timestamptz) ORDER BY transaction_date, id")
    with conn.transaction():
        scope_to_store(conn, store_id)
        with conn.cursor(name="privacy_window") as cur:
            cur.itersize = batch
            cur.execute(q, (store_id, window_start, window_start, window_end, window_end))
            for tid, items, qs, us, date in cur:
                yield Transaction.of(items, qs, us, date, str(tid))


def iter_all_transactions(conn: psycopg.Connection, window_start=None, window_end=None, store_id=None,
                          batch: int = 5000) -> Iterator[Transaction]:
    q = ("SELECT id, items, quantities, unit_utilities, transaction_date FROM transactions "
         "WHERE (%s::uuid IS NULL OR store_id = %s::uuid) "
         "AND (%s::timestamptz IS NULL OR transaction_date >= %s::timestamptz) "
         "AND (%s::timestamptz IS NULL OR transaction_date < %s::timestamptz)")
    with conn.transaction():
        with conn.cursor(name="privacy_all") as cur:
            cur.itersize = batch
            cur.execute(q, (store_id, store_id, window_start, window_start, window_end, window_end))
            for tid, items, qs, us, date in cur:
                yield Transaction.of(items, qs, us, date, str(tid))


def local_pattern_ids(conn: psycopg.Connection, store_id, mining_job_id) -> dict[tuple[str, ...], str]:
    """canonical itemset -> local_patterns.id for a mining job (encrypted patterns are skipped: their
    items cannot be matched without the pattern key, so their released values carry no pattern_id)."""
    if mining_job_id is None:
        return {}
    with conn.transaction():
        scope_to_store(conn, store_id)
        has_key_col = conn.execute(
            "SELECT 1 FROM information_schema.columns WHERE table_name = 'local_patterns' "
            "AND column_name = 'items_key_id'").fetchone() is not None
        q = "SELECT id, pattern_items FROM local_patterns WHERE store_id = %s AND mining_job_id = %s"
        if has_key_col:
            q += " AND items_key_id IS NULL"
        rows = conn.execute(q, (store_id, mining_job_id)).fetchall()
    return {tuple(sorted(set(items))): str(pid) for pid, items in rows}


APPLICATION_COLUMNS = ("store_id", "pattern_id", "original_utility", "noisy_utility", "noise_added",
                       "epsilon_used", "ledger_id", "round_id", "released_items", "pattern_length",
                       "original_support", "noisy_support", "noisy_presence", "delta_used", "noise_type")


def write_applications(conn: psycopg.Connection, store_id, rows: Iterable[tuple]) -> int:
    """Bulk-insert rows (in :data:`APPLICATION_COLUMNS` order, store_id first) into privacy_applications.

    COPY cannot target a table under row-level security, so rows are COPied into a temporary table and
    moved with one INSERT ... SELECT (which the store policy checks)."""
    n = 0
    cols = ", ".join(APPLICATION_COLUMNS)
    scope_to_store(conn, store_id)
    with conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE IF NOT EXISTS _privacy_applications_load "
                    "(LIKE privacy_applications INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        with cur.copy(f"COPY _privacy_applications_load ({cols}) FROM STDIN") as cp:
            for r in rows:
                cp.write_row(r)
                n += 1
        cur.execute(f"INSERT INTO privacy_applications ({cols}) SELECT {cols} FROM _privacy_applications_load")
        cur.execute("DELETE FROM _privacy_applications_load")
    return n


def fixed_to_decimal(units: int, scale: int) -> Decimal:
    return Decimal(int(units)) / Decimal(int(scale))
