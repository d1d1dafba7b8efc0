"""``python -m include.privacy COMMAND``

  suggest          suggest ℓ (p95 basket length) and C (p99 transaction utility) from transactions
                   (from the database, or a JSON-lines file); --apply writes them to server_configs
  budget           a store's spend and what is left for a window
  hash-dictionary  (key holders) fill privacy_hash_dictionary from the item catalogue, for the
                   global_patterns_decoded view; the key comes from connection platform_privacy_hmac

Exit codes: 0 ok, 1 bad input, 2 database unreachable / missing settings.
"""
from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime


def _dt(s: str | None):
    if s is None:
        return None
    d = datetime.fromisoformat(s)
    if d.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{s!r}: give a timezone, e.g. {s}+00:00")
    return d


def _connect(dsn: str | None):
    import psycopg

    from include.connections import postgres_dsn
    return psycopg.connect(dsn or postgres_dsn(), application_name="include.privacy")


def _jsonl(path: str):
    from .bounding import BoundingError, Transaction
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                yield Transaction.of(d["items"], d["quantities"], d["unit_utilities"], id=f"{path}:{n}")
            except (ValueError, KeyError, TypeError, BoundingError) as e:
                raise SystemExit(f"{path}, line {n}: {e} (fields: items, quantities, unit_utilities)")


def cmd_suggest(a) -> int:
    from .bounding import suggest_bounds
    if a.jsonl:
        txs = list(_jsonl(a.jsonl))
        s = suggest_bounds(txs, a.utility_scale)
    else:
        from .store_data import iter_all_transactions
        with _connect(a.dsn) as conn:
            s = suggest_bounds(iter_all_transactions(conn, a.since, a.until, a.store_id), a.utility_scale)
    out = s.as_dict()
    out["note"] = ("derived from the data itself: use an earlier period than the windows you release, "
                   "so the bounds do not depend on the released data")
    if a.apply:
        from include.db.configs import set_config

        from .settings import KEY_MAX_ITEMS, KEY_UTILITY_CAP, KEY_UTILITY_SCALE
        with _connect(a.dsn) as conn:
            set_config(conn, KEY_MAX_ITEMS, s.max_items, data_type="number")
            set_config(conn, KEY_UTILITY_CAP, out["privacy_utility_cap"], data_type="number")
            set_config(conn, KEY_UTILITY_SCALE, s.utility_scale, data_type="number")
            conn.commit()
        out["applied"] = True
    print(json.dumps(out, indent=2))
    return 0


def cmd_budget(a) -> int:
    from . import ledger as L
    from .settings import load_platform_settings, load_privacy_config
    with _connect(a.dsn) as conn:
        platform = load_platform_settings(conn)
        budget = load_privacy_config(conn, a.store_id).budget(platform)
        spend = L.spent(conn, a.store_id, a.since, a.until, budget)
        left = L.headroom(conn, a.store_id, a.since, a.until, budget)
    print(json.dumps({"store_id": a.store_id, "window": [a.since.isoformat(), a.until.isoformat()],
                      "accounting": budget.accounting, "budget_epsilon": budget.epsilon,
                      "global_epsilon": budget.global_epsilon, "delta": budget.delta,
                      "spent_epsilon": spend.epsilon, "spent_rho": spend.cost.rho, "spent_delta": spend.cost.delta,
                      "remaining": left, "remaining_unit": "epsilon" if budget.accounting == "pure" else "rho"},
                     indent=2))
    return 0


def cmd_hash_dictionary(a) -> int:
    from include.connections import get_connection

    from .hashing import HMAC_CONN_ID, HashKey
    key = HashKey(get_connection(a.key_conn or HMAC_CONN_ID).password or "")
    with _connect(a.dsn) as conn:
        with conn.transaction():
            items = [r[0] for r in conn.execute(
                "SELECT DISTINCT unnest(items) FROM transactions WHERE (%s::uuid IS NULL OR store_id = %s::uuid)",
                (a.store_id, a.store_id)).fetchall()]
            with conn.cursor() as cur:
                cur.execute("CREATE TEMP TABLE _hd (item_hash char(16), item text) ON COMMIT DROP")
                with cur.copy("COPY _hd (item_hash, item) FROM STDIN") as cp:
                    for i in items:
                        cp.write_row((key.item_id(i), i))
                cur.execute("INSERT INTO privacy_hash_dictionary (key_fingerprint, item_hash, item) "
                            "SELECT %s, item_hash, item FROM _hd ON CONFLICT DO NOTHING", (key.fingerprint,))
    print(json.dumps({"key_fingerprint": key.fingerprint, "items": len(items)}))
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m include.privacy", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dsn", help="libpq URI (default: connection platform_postgres)")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("suggest", help="suggest ℓ and C")
    s.add_argument("--store-id")
    s.add_argument("--since", type=_dt, help="ISO timestamp with zone, inclusive")
    s.add_argument("--until", type=_dt, help="ISO timestamp with zone, exclusive")
    s.add_argument("--jsonl", help="read transactions from a JSON-lines file instead of the database")
    s.add_argument("--utility-scale", type=int, default=100)
    s.add_argument("--apply", action="store_true", help="write the suggestion to server_configs")
    s.set_defaults(fn=cmd_suggest)
    b = sub.add_parser("budget", help="a store's spend and headroom for a window")
    b.add_argument("--store-id", required=True)
    b.add_argument("--since", type=_dt, required=True)
    b.add_argument("--until", type=_dt, required=True)
    b.set_defaults(fn=cmd_budget)
    h = sub.add_parser("hash-dictionary", help="(key holders) fill privacy_hash_dictionary")
    h.add_argument("--store-id")
    h.add_argument("--key-conn", help="connection id holding the hex key as password")
    h.set_defaults(fn=cmd_hash_dictionary)
    a = p.parse_args(argv)
    try:
        return a.fn(a)
    except Exception as e:  # a clean message, never a key
        import psycopg

        from include.connections import ConnectionNotConfigured
        from .bounding import BoundingError
        if isinstance(e, (psycopg.OperationalError, ConnectionNotConfigured)):
            print(f"error: {e}", file=sys.stderr)
            return 2
        if isinstance(e, (BoundingError, ValueError)):
            print(f"error: {e}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
