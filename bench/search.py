"""Search benchmark (issue 11), against the real local PostgreSQL and Elasticsearch.

1. Indexing throughput: N activity_logs rows in a database of its own, shipped by ``ship_stream``
   (PostgreSQL read + create-only bulk + committed high-water marks), next to a bare
   ``elasticsearch.helpers.bulk`` of the same documents (already in memory, plain index actions,
   default chunk size) in the same run; docs/s of each and the ratio.
2. Pattern search latency: M global patterns (default 1,000,000) indexed under the platform's
   template, then ``search_patterns`` for random one- and two-word queries (latest round, and every
   round); p50/p95 of the whole call (client side) and of Elasticsearch's ``took``.

    python bench/search.py [--rows 100000] [--patterns 1000000] [--queries 300] [--keep]

Everything is created under a random index prefix and a temporary database, and removed at the end
(``--keep`` keeps the pattern index; ``--reuse-patterns PREFIX`` searches a kept one).
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

WORDS = ("wine cheese bread butter milk tea coffee beer pasta tomato basil olive oil rice bean sugar salt "
         "pepper apple pear grape lemon orange banana chicken beef pork salmon tuna shrimp egg yogurt cream "
         "flour honey jam chocolate cookie cracker chips salsa soda water juice cereal oat nut almond walnut "
         "garlic onion potato carrot lettuce spinach mushroom sauce soup candle napkin soap towel battery").split()
QUALIFIERS = "red white dark light organic fresh aged smoked spicy sweet sparkling whole".split()


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def make_db() -> tuple[str, str]:
    from include.connections import postgres_dsn
    from include.db.migrate import migrate

    base = postgres_dsn()
    name = f"bench_search_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(base, dbname=name)
    migrate(dsn)
    return base, name


def drop_db(base: str, name: str) -> None:
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def bench_indexing(es, rows: int) -> dict:
    from elasticsearch import helpers

    from include.search.indices import Namespace, apply_templates, delete_namespace
    from include.search.ship import ACTIVITY_LOGS, ship_stream

    base, name = make_db()
    dsn = psycopg.conninfo.make_conninfo(base, dbname=name)
    tag = uuid.uuid4().hex[:8]
    ns_ship, ns_bare = Namespace(f"bench-{tag}-ship-"), Namespace(f"bench-{tag}-bare-")
    try:
        for n in (ns_ship, ns_bare):
            apply_templates(es, n.prefix)
        rnd = random.Random(5)
        now = datetime.now(timezone.utc)
        with psycopg.connect(dsn) as conn:
            stores = [conn.execute("INSERT INTO stores (name) VALUES (%s) RETURNING id", (f"s{i}",)).fetchone()[0]
                      for i in range(20)]
            with conn.cursor() as cur, cur.copy(
                    "COPY activity_logs (id, store_id, action_type, action_description, ip_address, user_agent,"
                    " created_at, additional_data) FROM STDIN") as cp:
                for i in range(rows):
                    a = rnd.choice(["file_uploaded", "file_validated", "mining_completed", "login"])
                    cp.write_row((uuid.uuid4(), rnd.choice(stores), a, f"{a} of batch {i} by the pipeline",
                                  f"10.1.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}", "bench/1.0",
                                  now - timedelta(seconds=rnd.uniform(0, 20 * 86400)),
                                  psycopg.types.json.Jsonb({"i": i})))
            conn.commit()
            total = conn.execute("SELECT count(*) FROM activity_logs").fetchone()[0]
            conn.commit()
            # the same documents, in memory, for the bare helpers.bulk
            docs = [json.loads(src) for (src,) in conn.execute(
                f"SELECT ({ACTIVITY_LOGS.doc_sql})::text FROM activity_logs")]
            months = [d["created_at"][:7].replace("-", ".") for d in docs]
            conn.commit()

            t0 = time.perf_counter()
            res = ship_stream(conn, es, ACTIVITY_LOGS, ns=ns_ship, batch_size=5000)
            t_ship = time.perf_counter() - t0
        assert res.created == total, (res, total)
        actions = ({"_index": ns_bare.monthly("activity-logs", m), "_id": d["id"], "_source": d}
                   for d, m in zip(docs, months))
        t0 = time.perf_counter()
        ok, _ = helpers.bulk(es, actions, stats_only=True)
        t_bare = time.perf_counter() - t0
        assert ok == total
        es.indices.refresh(index=f"{ns_ship.activity_logs()},{ns_bare.activity_logs()}")
        n_ship = es.count(index=ns_ship.activity_logs())["count"]
        n_bare = es.count(index=ns_bare.activity_logs())["count"]
        return {"rows": total, "ship_s": round(t_ship, 2), "ship_docs_per_s": round(total / t_ship),
                "bare_bulk_s": round(t_bare, 2), "bare_bulk_docs_per_s": round(total / t_bare),
                "ratio_ship_over_bare": round(t_bare / t_ship, 2), "docs_ship": n_ship, "docs_bare": n_bare}
    finally:
        for n in (ns_ship, ns_bare):
            delete_namespace(es, n.prefix)
        drop_db(base, name)


def gen_patterns(es, ns, n: int, rounds: int = 10) -> float:
    """n synthetic global patterns over ``rounds`` rounds (items: qualifier_word, Zipf-like popularity)."""
    from include.search.ship import bulk_create, items_text

    rnd = random.Random(9)
    vocab = [f"{q}_{w}" for w in WORDS for q in QUALIFIERS] + WORDS
    weights = [1.0 / (i + 1) ** 0.8 for i in range(len(vocab))]
    round_ids = [str(uuid.uuid4()) for _ in range(rounds)]
    t_base = datetime(2026, 1, 1, tzinfo=timezone.utc)
    es.indices.create(index=ns.global_patterns, settings={"refresh_interval": "-1"})
    t0 = time.perf_counter()
    batch = []
    for i in range(n):
        k = rnd.choice((1, 2, 2, 3, 3, 3, 4))
        items = sorted(set(rnd.choices(vocab, weights, k=k)))
        r = i % rounds
        u = round(rnd.lognormvariate(3, 1.2), 2)
        doc = {"id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)), "round_id": round_ids[r],
               "round_number": r + 1, "round_completed_at": (t_base + timedelta(days=7 * r)).isoformat(),
               "pattern_items": items, "items_text": items_text(items), "pattern_length": len(items),
               "aggregated_utility": u, "global_support": round(rnd.random() / 10, 5),
               "contributing_stores": rnd.randint(2, 20), "client_coverage_percent": round(rnd.uniform(10, 100), 1),
               "utility_std": 1.5, "utility_ci_low": u - 2.94, "utility_ci_high": u + 2.94,
               "confident": u > 10, "created_at": (t_base + timedelta(days=7 * r)).isoformat()}
        batch.append((ns.global_patterns, doc["id"], json.dumps(doc)))
        if len(batch) == 5000:
            bulk_create(es, batch)
            batch = []
    if batch:
        bulk_create(es, batch)
    es.indices.put_settings(index=ns.global_patterns, settings={"refresh_interval": "5s"})
    es.indices.refresh(index=ns.global_patterns)
    es.options(request_timeout=1800).indices.forcemerge(index=ns.global_patterns, max_num_segments=5)
    return time.perf_counter() - t0


def bench_search(es, ns, queries: int) -> dict:
    from include.search.query import search_patterns

    rnd = random.Random(3)
    out = {}
    for label, rnd_arg, aggs in (("latest_round", "latest", True), ("all_rounds", "all", True),
                                 ("latest_round_no_aggs", "latest", False)):
        wall, took = [], []
        for i in range(queries):
            q = " ".join(rnd.sample(WORDS, rnd.choice((1, 2))))
            t0 = time.perf_counter()
            res = search_patterns(es, q, ns=ns, round=rnd_arg, min_utility=rnd.choice((None, 5.0, 50.0)), size=20,
                                  aggs=aggs)
            wall.append((time.perf_counter() - t0) * 1000)
            took.append(res["took_ms"])
        out[label] = {"queries": queries, "p50_ms": round(pct(wall, 50), 1), "p95_ms": round(pct(wall, 95), 1),
                      "es_took_p50_ms": pct(took, 50), "es_took_p95_ms": pct(took, 95)}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--patterns", type=int, default=1_000_000)
    p.add_argument("--queries", type=int, default=300)
    p.add_argument("--keep", action="store_true", help="keep the pattern index (prints its prefix)")
    p.add_argument("--reuse-patterns", metavar="PREFIX", help="search the kept index of an earlier run")
    p.add_argument("--skip-indexing", action="store_true")
    args = p.parse_args()

    from include.search.clients import check_es, es_client
    from include.search.indices import Namespace, apply_templates, delete_namespace

    es = es_client(request_timeout=300)
    check_es(es)
    report: dict = {}
    if not args.skip_indexing:
        report["indexing"] = bench_indexing(es, args.rows)
        i = report["indexing"]
        print(f"indexing {i['rows']} activity_logs rows: ship_stream {i['ship_docs_per_s']} docs/s ({i['ship_s']} s),"
              f" bare helpers.bulk {i['bare_bulk_docs_per_s']} docs/s ({i['bare_bulk_s']} s),"
              f" ratio ship/bare {i['ratio_ship_over_bare']}", flush=True)
    ns = Namespace(args.reuse_patterns or f"bench-{uuid.uuid4().hex[:8]}-")
    try:
        if not args.reuse_patterns:
            apply_templates(es, ns.prefix)
            secs = gen_patterns(es, ns, args.patterns)
            report["patterns_indexed"] = {"patterns": args.patterns, "seconds": round(secs, 1),
                                          "docs_per_s": round(args.patterns / secs)}
            print(f"indexed {args.patterns} patterns in {secs:.1f} s ({args.patterns / secs:.0f} docs/s)", flush=True)
        n = es.count(index=ns.global_patterns)["count"]
        report["search"] = bench_search(es, ns, args.queries)
        report["search"]["patterns_in_index"] = n
        for label in ("latest_round", "all_rounds", "latest_round_no_aggs"):
            s = report["search"][label]
            print(f"search_patterns over {n} patterns ({label}): p50 {s['p50_ms']} ms, p95 {s['p95_ms']} ms "
                  f"(Elasticsearch took p50 {s['es_took_p50_ms']} ms, p95 {s['es_took_p95_ms']} ms)")
    finally:
        if args.keep or args.reuse_patterns:
            print(f"pattern index kept: prefix {ns.prefix}")
        else:
            delete_namespace(es, ns.prefix)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
