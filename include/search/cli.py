"""``python -m include.search``: search patterns and logs, apply templates, ship, show the shipping state.

    python -m include.search patterns "wine cheese" [--min-utility U] [--round N|latest|all] [--size N] [--json]
    python -m include.search logs [--store S] [--user U] [--action A[,B]] [--since T] [--until T]
                                  [--text WORDS] [--as-store-manager STORE] [--size N] [--json]
    python -m include.search apply-templates
    python -m include.search ship [--batch-size N] [--overlap-minutes M] [--reconcile hourly|always|never]
    python -m include.search status

T is ISO 8601 (2026-11-01, 2026-11-01T08:00:00Z) or relative (30m, 24h, 7d). ``--as-store-manager``
runs the query as that store's manager (held to the store, as the API does). ``--prefix`` selects an
index namespace (tests, benchmarks). Exit codes: 0 ok, 1 bad input / access denied, 2 service down.
"""
from __future__ import annotations

import argparse
import json
import sys
from decimal import Decimal


def _json_default(v):
    if isinstance(v, Decimal):
        return float(v)
    return str(v)


def _print_patterns(res: dict) -> None:
    print(f"round: {res['round'] if res['round'] is not None else 'all'}   matches: {res['total']}"
          f"   ({res.get('took_ms')} ms)")
    for h in res["hits"]:
        items = h.get("highlight") or ", ".join(h["pattern_items"])
        conf = "" if h.get("confident") is None else ("  confident" if h["confident"] else "  not confident")
        print(f"  utility {h['aggregated_utility']:>12.2f}  support {h['global_support']:>10.4g}  "
              f"stores {h['contributing_stores']:>3}  coverage {h['client_coverage_percent']:>5.1f}%  "
              f"round {h['round_number']:>3}{conf}  [{items}]")
    a = res.get("aggregations") or {}
    if a.get("top_items"):
        print("top items: " + ", ".join(f"{k} ({n})" for k, n in a["top_items"]))
    if a.get("by_round"):
        print("patterns per round: " + ", ".join(f"#{k}: {n}" for k, n in a["by_round"]))


def _print_logs(res: dict) -> None:
    print(f"matches: {res['total']}   ({res.get('took_ms')} ms)")
    for h in res["hits"]:
        desc = (h.get("highlight", {}).get("action_description") or [h.get("action_description")])[0]
        print(f"  {h['created_at'][:19]}  {h['action_type']:<24} store {str(h.get('store_id') or '-')[:8]}  "
              f"user {str(h.get('user_id') or '-')[:8]}  {desc}")
    a = res.get("aggregations") or {}
    if a.get("actions_per_day"):
        print("actions per day:")
        for d in a["actions_per_day"]:
            print(f"  {d['day']}  {d['count']:>6}  " + ", ".join(f"{k}={v}" for k, v in d["actions"].items()))
    if a.get("top_actions"):
        print("top actions: " + ", ".join(f"{k} ({n})" for k, n in a["top_actions"]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m include.search", description=__doc__.split("\n\n")[0])
    p.add_argument("--prefix", default="", help="index namespace (default: the platform's indices)")
    sub = p.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("patterns", help="search global patterns by item words")
    pp.add_argument("text", nargs="?", default="")
    pp.add_argument("--min-utility", type=float)
    pp.add_argument("--round", default="latest", help="round number, 'latest' (default) or 'all'")
    pp.add_argument("--confident", action="store_true", help="only patterns flagged confident")
    pp.add_argument("--size", type=int, default=20)
    pp.add_argument("--json", action="store_true")
    pl = sub.add_parser("logs", help="search activity logs")
    pl.add_argument("--store")
    pl.add_argument("--user")
    pl.add_argument("--action", help="action_type, or several separated by commas")
    pl.add_argument("--since")
    pl.add_argument("--until")
    pl.add_argument("--text")
    pl.add_argument("--as-store-manager", metavar="STORE", help="query as this store's manager")
    pl.add_argument("--size", type=int, default=50)
    pl.add_argument("--json", action="store_true")
    sub.add_parser("apply-templates", help="apply the index templates")
    ps = sub.add_parser("ship", help="one shipping run (as the index_search DAG does)")
    ps.add_argument("--batch-size", type=int, default=5000)
    ps.add_argument("--overlap-minutes", type=float, default=10)
    ps.add_argument("--reconcile", choices=["hourly", "always", "never"], default="hourly")
    sub.add_parser("status", help="shipping state per stream")
    args = p.parse_args(argv)

    from elasticsearch import TransportError

    from include.search.clients import ServiceUnavailable, describe_es, es_client
    from include.search.indices import Namespace
    from include.search.query import AccessDenied

    es = None
    try:
        ns = Namespace(args.prefix)
        es = es_client()
        if args.cmd == "patterns":
            from include.search.query import search_patterns

            rnd = args.round if args.round in ("latest", "all") else int(args.round)
            res = search_patterns(es, args.text, ns=ns, min_utility=args.min_utility, round=rnd,
                                  confident_only=args.confident, size=args.size)
            print(json.dumps(res, default=_json_default, indent=1)) if args.json else _print_patterns(res)
        elif args.cmd == "logs":
            from include.search.query import Viewer, search_logs

            viewer = Viewer.store_manager(args.as_store_manager) if args.as_store_manager else Viewer.admin()
            res = search_logs(es, viewer=viewer, ns=ns, store=args.store, user=args.user, action=args.action,
                              since=args.since, until=args.until, text=args.text, size=args.size)
            print(json.dumps(res, default=_json_default, indent=1)) if args.json else _print_logs(res)
        elif args.cmd == "apply-templates":
            from include.search.indices import apply_templates

            print("applied: " + ", ".join(apply_templates(es, ns.prefix)))
        elif args.cmd == "ship":
            from datetime import timedelta

            from include.db.session import connect
            from include.search.clients import redis_client
            from include.search.ship import ship_all

            with connect() as conn:
                out = ship_all(conn, es, ns=ns, redis=redis_client(), batch_size=args.batch_size,
                               overlap=timedelta(minutes=args.overlap_minutes), reconcile=args.reconcile)
            print(json.dumps(out, default=_json_default, indent=1))
        elif args.cmd == "status":
            from include.db.session import connect

            with connect() as conn:
                rows = conn.execute("SELECT stream, hwm_time, docs_created, docs_existing, runs, last_success_at,"
                                    " last_error FROM search_ship_state ORDER BY stream").fetchall()
                rounds = conn.execute("SELECT target, count(*), max(round_number), sum(patterns_indexed)"
                                      " FROM search_shipped_rounds GROUP BY 1 ORDER BY 1").fetchall()
            for r in rows:
                print(f"{r[0]:<40} hwm {r[1]}  created {r[2]}  existing {r[3]}  runs {r[4]}  ok {r[5]}"
                      + (f"  ERROR {r[6]}" if r[6] else ""))
            for t, n, mx, pats in rounds:
                print(f"{t + '/global_patterns':<40} rounds {n} (latest #{mx}), patterns {pats}")
        return 0
    except ServiceUnavailable as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    except TransportError as e:
        print(f"ERROR: Elasticsearch is unavailable at {describe_es(es)}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
    except (AccessDenied, ValueError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
