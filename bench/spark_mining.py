"""Benchmark: one store mined by the local engine and by PySpark on local[1] and local[2].

    source .local/env.sh
    .venv/bin/python bench/spark_mining.py [--dataset foodmart] [--transactions 1000000]
                                           [--min-utility-ratio 0.0005] [--max-length 4]

The store's transactions are generated from a benchmark dataset's distributions (SPMF file under
bench/data/huim): each transaction takes the item set of a randomly drawn transaction of the
dataset (the joint item distribution) and, for each item, a utility drawn from that item's observed
utilities. They are loaded with COPY into a temporary database of the local PostgreSQL (schema and
mining migrations applied; dropped at the end), then mined through the real job path
(include.mine.jobs.run_job) three times: local engine (child process), Spark local[1], Spark local[2].

Printed: wall time of each run (the Spark runs without the session start, shown apart), speed-up of
local[2] over local[1] per added core, Spark against the local engine, peak memory, and whether the
three pattern sets are identical. On a shared 2-core machine the wall times depend on the other load.
"""
from __future__ import annotations

import argparse
import gzip
import os
import random
import shutil
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATASETS = ROOT / "bench" / "data" / "huim"


def load_spmf(path: Path):
    txs = []
    with gzip.open(path, "rt") as f:
        for line in f:
            line = line.strip()
            if line:
                items, _tu, utils = line.split(":")
                txs.append((items.split(), [int(u) for u in utils.split()]))
    return txs


def generate(source, n: int, seed: int = 6):
    rng = random.Random(seed)
    by_item = defaultdict(list)
    for items, utils in source:
        for i, u in zip(items, utils):
            by_item[i].append(u)
    for _ in range(n):
        items, _ = source[rng.randrange(len(source))]
        yield [f"i{i}" for i in items], [rng.choice(by_item[i]) for i in items]


def temp_database():
    import psycopg
    from psycopg import sql

    from include.connections import postgres_dsn
    from include.db.migrate import migrate

    base = postgres_dsn()
    name = f"b_mine_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(base, dbname=name)
    d = tempfile.mkdtemp()
    for f in sorted((ROOT / "include" / "sql").glob("*.sql")):
        k = int(f.name[:4])
        if k < 100 or 200 <= k < 300:
            shutil.copy(f, d)
    migrate(dsn, sql_dir=d)
    shutil.rmtree(d)

    def drop():
        with psycopg.connect(base, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    return dsn, drop


def load_store(dsn: str, rows, n: int) -> uuid.UUID:
    import psycopg

    from include.db.stores import create_store

    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    with psycopg.connect(dsn) as c:
        sid = create_store(c, "bench store")
        with c.cursor() as cur, cur.copy("COPY transactions (store_id, transaction_date, items, quantities, "
                                         "unit_utilities, total_utility) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(["uuid", "timestamptz", "text[]", "numeric[]", "numeric[]", "numeric"])
            for k, (items, utils) in enumerate(rows):
                cp.write_row((sid, start + timedelta(seconds=k), items, [1] * len(items), utils, sum(utils)))
        c.commit()
        c.execute("ANALYZE transactions")
    return sid


def mine(dsn: str, store_id, engine: str, args, session=None):
    import psycopg

    from include.db.mining import read_local_patterns
    from include.mine.jobs import plan_runs, run_job
    from include.mine.params import RunRequest

    req = RunRequest.from_params({"store_ids": [str(store_id)], "min_utility_ratio": args.min_utility_ratio,
                                  "max_pattern_length": args.max_length, "engine": engine,
                                  "batch_size": 5000, "window_start": "2000-01-01T00:00:00Z"})
    with psycopg.connect(dsn) as c:
        job = plan_runs(c, req, run_key=f"bench/{uuid.uuid4()}").jobs[0]
        c.commit()
    t = time.perf_counter()
    res = run_job(dsn, job.job_id, spark_session=session)
    wall = time.perf_counter() - t
    with psycopg.connect(dsn) as c:
        pats = {tuple(p.items): (p.utility, p.support, p.confidence) for p in read_local_patterns(c, store_id)}
        stats = c.execute("SELECT stats FROM mining_jobs WHERE id = %s", (job.job_id,)).fetchone()[0]
    return wall, res, pats, stats


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dataset", default="foodmart")
    ap.add_argument("--transactions", type=int, default=1_000_000)
    ap.add_argument("--min-utility-ratio", type=float, default=0.0005)
    ap.add_argument("--max-length", type=int, default=4)
    ap.add_argument("--keep", action="store_true", help="keep the temporary database")
    args = ap.parse_args()
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from include.mine.spark import get_session

    source = load_spmf(DATASETS / f"{args.dataset}.txt.gz")
    dsn, drop = temp_database()
    try:
        t = time.perf_counter()
        store_id = load_store(dsn, generate(source, args.transactions), args.transactions)
        print(f"store: {args.transactions} transactions generated from {args.dataset} ({len(source)} source "
              f"transactions), loaded in {time.perf_counter() - t:.1f} s", flush=True)
        runs = {}
        wall, res, pats, stats = mine(dsn, store_id, "local", args)
        runs["local engine"] = (wall, res, pats)
        print(f"local engine: {wall:.1f} s, {len(pats)} patterns, peak {res['memory_used_mb']:.0f} MB "
              f"(read {stats.get('read_seconds')} s, mine {stats.get('mine_seconds', 0):.1f} s)", flush=True)
        for cores in (1, 2):
            t = time.perf_counter()
            spark = get_session(f"local[{cores}]", app_name=f"bench.local{cores}",
                                conf={"spark.default.parallelism": str(cores)})
            spark.sparkContext.setLogLevel("ERROR")
            # warm-up (untimed): JVM classes, JDBC driver, Python workers
            from include.mine.spark import read_transactions

            read_transactions(spark, dsn, store_id, n_partitions=2 * cores).limit(10).collect()
            spark.sparkContext.parallelize(range(8 * cores), 4 * cores).map(lambda x: x).count()
            start = time.perf_counter() - t
            try:
                wall, res, pats, stats = mine(dsn, store_id, "spark", args, session=spark)
            finally:
                spark.stop()
            runs[f"spark local[{cores}]"] = (wall, res, pats)
            print(f"spark local[{cores}]: {wall:.1f} s (+{start:.1f} s session start and warm-up), {len(pats)} patterns, peak "
                  f"{res['memory_used_mb']:.0f} MB (stats+read {stats['read_and_stats_seconds']} s, mine "
                  f"{stats['mine_seconds']} s, partitions {stats['partitions']}, engine calls "
                  f"{stats['engine_calls']}, redundant sub-patterns {stats['sub_patterns'] - stats['patterns']})",
                  flush=True)
        w1, w2, wl = runs["spark local[1]"][0], runs["spark local[2]"][0], runs["local engine"][0]
        identical = runs["local engine"][2] == runs["spark local[1]"][2] == runs["spark local[2]"][2]
        print(f"speed-up local[2] vs local[1]: {w1 / w2:.2f}x for 1 added core "
              f"(efficiency {w1 / w2 / 2:.0%} of linear)")
        print(f"spark local[2] vs local engine: {wl / w2:.2f}x")
        print(f"identical output (local engine, local[1], local[2]): {identical}")
        return 0 if identical else 1
    finally:
        if not args.keep:
            drop()


if __name__ == "__main__":
    sys.exit(main())
