"""``python -m include.federate round [...]``: run one federated round outside Airflow.

The coordinator steps of the ``federated_round`` DAG (open, run, finalize: same tables, topics, Redis
lock) plus one store agent process per invited store (``include.federate.agent``, the client logic of
the ``federated_client`` DAG). Prints the top global patterns. Meant for the main job and for
operators without a scheduler at hand; in production the DAGs run both sides.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m include.federate")
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("round", help="run a round with local store agents")
    r.add_argument("--store-id", action="append", default=[], help="repeat; default: every configured store")
    r.add_argument("--mode", default="secure", choices=["secure", "local"])
    r.add_argument("--epsilon", type=float, default=1.0)
    r.add_argument("--noise-type", default="gaussian", choices=["gaussian", "laplace"])
    r.add_argument("--top-k", type=int, default=100)
    r.add_argument("--show", type=int, default=10)
    r.add_argument("--window-start")
    r.add_argument("--window-end")
    r.add_argument("--phase-timeout-minutes", type=float, default=2.0)
    r.add_argument("--min-clients", type=int)
    args = ap.parse_args(argv)

    import psycopg

    from include.connections import KAFKA, KAFKA_PRODUCER, REDIS, get_connection, postgres_dsn, redis_ssl_kwargs
    from include.federate import service
    from include.federate.topics import INVITATIONS, ensure_topics
    from include.federate.transport import KafkaTransport

    dsn = postgres_dsn()
    cons, prod = get_connection(KAFKA).extra, get_connection(KAFKA_PRODUCER).extra
    rc = get_connection(REDIS)
    redis = {"host": rc.host, "port": rc.port, "password": rc.password, "db": rc.extra.get("db", 0),
             **redis_ssl_kwargs(rc.extra)}
    with psycopg.connect(dsn) as c:
        stores, problems = service.resolve_stores(c, args.store_id)
    if problems:
        print("; ".join(problems), file=sys.stderr)
        return 2
    ensure_topics(cons)
    offset = KafkaTransport(cons, prod).end_offset(INVITATIONS, 0)
    agents = [subprocess.Popen([sys.executable, "-m", "include.federate.agent", "--store-id", s["store_id"],
                                "--dsn", dsn, "--invitations-offset", str(offset), "--stop-after", "1800"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for s in stores]
    try:
        deadline = time.monotonic() + 120
        ids = [s["store_id"] for s in stores]
        with psycopg.connect(dsn) as c:
            while time.monotonic() < deadline and c.execute(
                    "SELECT count(*) FROM federate_parties WHERE store_id = ANY(%s::uuid[])", (ids,)).fetchone()[0] < len(ids):
                time.sleep(0.5)
        params = {"store_ids": ids, "mode": args.mode, "epsilon": args.epsilon, "noise_type": args.noise_type,
                  "top_k": args.top_k, "window_start": args.window_start, "window_end": args.window_end,
                  "phase_timeout_minutes": args.phase_timeout_minutes, "min_clients_required": args.min_clients}
        opened = None
        try:
            opened = service.open_round(dsn, params, kafka=(cons, prod), redis=redis, dag_run_id=None)
            out = service.run_round(dsn, opened, kafka=(cons, prod), redis=redis)
        except service.RoundFailedCleanly as exc:
            print(str(exc), file=sys.stderr)
            return 1
        finally:
            service.finalize(dsn, opened, redis=redis, dag_run_id=None)
        print(f"round {out['round_number']} ({out['round_id']}): {out['participants']} stores, "
              f"{out['patterns']} patterns, {out['seconds']:.1f}s")
        print("\n".join(out["top_patterns"].splitlines()[: args.show + 1]))
        print(json.dumps({k: out[k] for k in ("round_id", "round_number", "participants", "patterns")}))
        return 0
    finally:
        for a in agents:
            try:
                a.wait(timeout=60)
            except subprocess.TimeoutExpired:
                a.kill()


if __name__ == "__main__":
    raise SystemExit(main())
