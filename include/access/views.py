"""What the platform API reads and changes, on a connection scoped to the caller (row-level security
applies to every query here). Results are JSON-ready dicts; ``limit``/``offset`` page the lists."""
from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import psycopg

from include.access.accounts import Principal
from include.access.errors import Forbidden, Invalid, Missing
from include.access.models import RoundRequest
from include.access.permissions import REGIONAL_COORDINATOR
from include.access.scope import require_region
from include.db import configs as db_configs
from include.db.mining import items_context
from include.db.privacy import get_privacy_config
from include.security.crypto import Keyring


def _rows(cur) -> list[dict[str, Any]]:
    cols = [d.name for d in cur.description]
    return [{k: (float(v) if isinstance(v, Decimal) else v) for k, v in zip(cols, r)} for r in cur.fetchall()]


def stores(conn: psycopg.Connection, *, region_id: uuid.UUID | None = None, limit: int, offset: int) -> list[dict]:
    """Store metadata the caller may see (RLS: own store, own region, or all)."""
    return _rows(conn.execute(
        """SELECT id, name, location, region_id, is_active, created_at, updated_at FROM stores
            WHERE (%(r)s::uuid IS NULL OR region_id = %(r)s::uuid)
            ORDER BY name, id LIMIT %(l)s OFFSET %(o)s""", {"r": region_id, "l": limit, "o": offset}))


def store(conn: psycopg.Connection, store_id: uuid.UUID) -> dict:
    rows = _rows(conn.execute(
        """SELECT s.id, s.name, s.location, s.region_id, s.is_active, s.created_at, s.updated_at,
                  (SELECT count(*) FROM transaction_files f WHERE f.store_id = s.id) AS files,
                  (SELECT max(upload_timestamp) FROM transaction_files f WHERE f.store_id = s.id) AS last_upload,
                  (SELECT max(completed_at) FROM mining_jobs j WHERE j.store_id = s.id AND j.status = 'completed')
                      AS last_mining
             FROM stores s WHERE s.id = %s""", (store_id,)))
    if not rows:
        raise Missing(f"store {store_id} does not exist")
    return rows[0]


_FILE_COLS = """id, store_id, filename, file_size, file_type, upload_timestamp, processing_status, error_message,
                duplicate_of, s3_key"""


def files(conn: psycopg.Connection, store_id: uuid.UUID, *, status: str | None, limit: int, offset: int) -> list[dict]:
    return _rows(conn.execute(
        f"""SELECT {_FILE_COLS} FROM transaction_files
             WHERE store_id = %(s)s AND (%(st)s::text IS NULL OR processing_status = %(st)s::text)
             ORDER BY upload_timestamp DESC, id LIMIT %(l)s OFFSET %(o)s""",
        {"s": store_id, "st": status, "l": limit, "o": offset}))


def file(conn: psycopg.Connection, store_id: uuid.UUID, file_id: uuid.UUID) -> dict:
    rows = _rows(conn.execute(f"SELECT {_FILE_COLS} FROM transaction_files WHERE id = %s AND store_id = %s",
                              (file_id, store_id)))
    if not rows:
        raise Missing(f"store {store_id} has no file {file_id}")
    return rows[0]


def mining_jobs(conn: psycopg.Connection, store_id: uuid.UUID, *, limit: int, offset: int) -> list[dict]:
    return _rows(conn.execute(
        """SELECT id, store_id, status, min_utility, min_support, max_pattern_length, engine_path, window_start,
                  window_end, n_transactions, started_at, completed_at, execution_time_seconds, memory_used_mb,
                  patterns_found, error_message
             FROM mining_jobs WHERE store_id = %s
            ORDER BY started_at DESC NULLS FIRST, id LIMIT %s OFFSET %s""", (store_id, limit, offset)))


def local_patterns(conn: psycopg.Connection, keyring: Keyring, store_id: uuid.UUID, *, limit: int,
                   offset: int) -> list[dict]:
    """The store's current patterns (not superseded), best utility first, decrypted when stored encrypted."""
    rows = _rows(conn.execute(
        """SELECT id, mining_job_id, pattern_items, utility, support, confidence, pattern_length, created_at,
                  items_key_id
             FROM local_patterns WHERE store_id = %s AND superseded_at IS NULL
            ORDER BY utility DESC, id LIMIT %s OFFSET %s""", (store_id, limit, offset)))
    for r in rows:
        kid = r.pop("items_key_id")
        if kid is not None:
            r["pattern_items"] = keyring.decrypt_many(r["pattern_items"], kid, items_context(store_id))
    return rows


def privacy(conn: psycopg.Connection, store_id: uuid.UUID) -> dict:
    cfg = get_privacy_config(conn, store_id)
    if cfg is None:
        raise Missing(f"store {store_id} has no privacy config")
    return {k: (float(v) if isinstance(v, Decimal) else v) for k, v in cfg.__dict__.items()}


def budget_ledger(conn: psycopg.Connection, store_id: uuid.UUID, *, limit: int, offset: int) -> list[dict]:
    """The store's privacy budget charges (never the released values or plans)."""
    return _rows(conn.execute(
        """SELECT id, round_id, release_name, window_start, window_end, mode, mechanism, accounting, rho, epsilon,
                  delta, epsilon_display, delta_display, status, error_message, created_at, charged_at, aborted_at
             FROM privacy_budget_ledger WHERE store_id = %s
            ORDER BY created_at DESC, id LIMIT %s OFFSET %s""", (store_id, limit, offset)))


def round_conf(conn: psycopg.Connection, p: Principal, req: RoundRequest) -> dict:
    """The ``federated_round`` conf of a request. Named stores must exist and be active; a coordinator
    invites only (and by default all) active stores of their region (RLS shows them no others)."""
    conf = req.conf()
    conf["store_ids"] = [str(s) for s in req.store_ids]
    region = p.region_id if p.role == REGIONAL_COORDINATOR else None
    known = {r[0]: r[1] for r in conn.execute(
        """SELECT id, is_active FROM stores WHERE (%(r)s::uuid IS NULL OR region_id = %(r)s::uuid)
              AND (cardinality(%(ids)s::uuid[]) = 0 OR id = ANY(%(ids)s::uuid[]))""",
        {"r": region, "ids": req.store_ids})}
    unknown = [str(s) for s in req.store_ids if s not in known]
    if unknown and region:
        raise Forbidden(f"store_ids {', '.join(unknown)} are not stores of your region {region}")
    if unknown:
        raise Invalid(f"store_ids {', '.join(unknown)} do not exist")
    inactive = [str(s) for s in req.store_ids if not known[s]]
    if inactive:
        raise Invalid(f"store_ids {', '.join(inactive)} are deactivated")
    if region and not req.store_ids:
        conf["store_ids"] = sorted(str(s) for s, active in known.items() if active)
        if len(conf["store_ids"]) < 2:
            raise Invalid(f"your region {region} has fewer than 2 active stores: no round is possible")
    return conf


_ROUND_COLS = """id, round_number, status, region_id, mode, min_clients_required, participating_clients, started_at,
                 completed_at, duration_seconds, patterns_aggregated, global_privacy_budget, error_message,
                 current_phase, dag_run_id"""


def rounds(conn: psycopg.Connection, p: Principal, *, limit: int, offset: int) -> list[dict]:
    region = p.region_id if p.role == REGIONAL_COORDINATOR else None
    return _rows(conn.execute(
        f"""SELECT {_ROUND_COLS} FROM federated_rounds
             WHERE (%(r)s::uuid IS NULL OR region_id = %(r)s::uuid)
             ORDER BY round_number DESC LIMIT %(l)s OFFSET %(o)s""", {"r": region, "l": limit, "o": offset}))


def round_(conn: psycopg.Connection, p: Principal, round_id: uuid.UUID) -> dict:
    rows = _rows(conn.execute(f"SELECT {_ROUND_COLS}, params, levels FROM federated_rounds WHERE id = %s",
                              (round_id,)))
    if not rows:
        raise Missing(f"round {round_id} does not exist")
    require_region(p, rows[0]["region_id"], f"round {round_id}")
    return rows[0]


def global_patterns(conn: psycopg.Connection, p: Principal, round_id: uuid.UUID, *, limit: int,
                    offset: int) -> list[dict]:
    round_(conn, p, round_id)
    return _rows(conn.execute(
        """SELECT id, pattern_rank, pattern_items, aggregated_utility, utility_stddev, utility_ci_low,
                  utility_ci_high, confident, global_support, contributing_stores, client_coverage_percent,
                  pattern_length, created_at
             FROM global_patterns WHERE round_id = %s
            ORDER BY aggregated_utility DESC, id LIMIT %s OFFSET %s""", (round_id, limit, offset)))


def configs(conn: psycopg.Connection) -> list[dict]:
    return _rows(conn.execute("""SELECT config_key, config_value, data_type, description, updated_at, updated_by
                                   FROM server_configs ORDER BY config_key"""))


def set_config(conn: psycopg.Connection, key: str, value: str) -> dict:
    """Change an existing setting; the value must parse as its data_type (audited by trigger)."""
    row = conn.execute("SELECT data_type FROM server_configs WHERE config_key = %s", (key,)).fetchone()
    if row is None:
        raise Missing(f"server_configs has no key {key!r}")
    try:
        parsed = db_configs.parse_value(key, value, row[0])
    except db_configs.ConfigError as e:
        raise Invalid(str(e)) from None
    if row[0] == "number" and not parsed.is_finite():
        raise Invalid(f"server_configs.{key}: value {value!r} is not a finite number")
    db_configs.set_config(conn, key, parsed, data_type=row[0])
    return next(c for c in configs(conn) if c["config_key"] == key)
