"""The PySpark path on local[2] gives exactly the local engine's patterns: on two benchmark datasets (bench/data/huim), on
random data (decimals, repeated items, min_support, length caps), and end to end through PostgreSQL
(JDBC partitioned read, job lifecycle, COPY). One SparkSession for the whole module (conftest)."""
from __future__ import annotations

import gzip
import random
import uuid
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest

from include.db.mining import read_local_patterns
from include.mine.jobs import plan_runs, run_job
from include.mine.params import RunRequest
from include.mine.spark import mine_rdd, parse_row, read_transactions
from include.mine.store import get_job
from include.mining import Miner
from tests.mine.conftest import make_store, synthetic_rows

DATASETS = Path(__file__).resolve().parents[2] / "bench" / "data" / "huim"


def spmf_rows(name: str):
    rows = []
    with gzip.open(DATASETS / f"{name}.txt.gz", "rt") as f:
        for line in f:
            line = line.strip()
            if line:
                items, _tu, utils = line.split(":")
                names = items.split()
                rows.append((names, ["1"] * len(names), utils.split()))
    return rows


def local(rows, min_utility, min_support=0, maxlen=None, pruning=True):
    m = Miner()
    m.add_rows(rows)
    pats = m.mine(min_utility, min_support, maxlen, pruning).patterns
    return {p.items: (p.utility, p.support_count, p.support, p.confidence) for p in pats}


def distributed(spark, rows, min_utility, min_support=0, maxlen=None, pruning=True, slices=4, partitions=None):
    res = mine_rdd(spark.sparkContext.parallelize(rows, slices), min_utility, min_support, maxlen, pruning,
                   n_partitions=partitions)
    got = {p.items: (p.utility, p.support_count, p.support, p.confidence) for p in res.patterns}
    assert len(got) == len(res.patterns), "a pattern came out of two partitions"
    return got, res.stats


@pytest.mark.parametrize("name, ratio, maxlen", [("chess", Decimal("0.27"), None),
                                                 ("foodmart", Decimal("0.0005"), None)])
def test_benchmark_datasets_identical_to_local(spark, name, ratio, maxlen):
    rows = spmf_rows(name)
    total = sum(int(u) for r in rows for u in r[2])
    mu = int(total * ratio)
    expected = local(rows, mu, 0, maxlen)
    got, stats = distributed(spark, rows, mu, 0, maxlen)
    assert len(expected) > 1000
    assert got == expected
    assert stats["n_transactions"] == len(rows) and stats["patterns"] == len(expected)
    assert stats["engine_calls"] == stats["n_promising_items"]


NAMES = ["a", "b", "c", "d", "e", "f", "g", "h", "Zebra", "ä", "日本", "x y", "10", "9"]


def random_rows(rng: random.Random, n: int, decimals: bool):
    rows = []
    for _ in range(n):
        k = rng.randint(0, 7)
        items = [rng.choice(NAMES) for _ in range(k)]  # repeats allowed: one item, utilities added
        if decimals:
            qs = [str(Decimal(rng.randint(0, 400)).scaleb(-rng.randint(0, 2))) for _ in items]
            us = [str(Decimal(rng.randint(1, 999)).scaleb(-rng.randint(0, 3))) for _ in items]
        else:
            qs = [str(rng.randint(1, 5)) for _ in items]
            us = [str(rng.randint(1, 30)) for _ in items]
        rows.append((items, qs, us))
    return rows


@pytest.mark.parametrize("seed", range(6))
def test_random_data_identical_to_local(spark, seed):
    rng = random.Random(seed)
    rows = random_rows(rng, rng.randint(50, 400), decimals=seed % 2 == 1)
    total = sum((sum(parse_row(r)[1], Decimal(0)) for r in rows), Decimal(0))
    mu = (total * Decimal(rng.choice(["0.001", "0.01", "0.05"]))).quantize(Decimal("0.001"))
    min_support = rng.choice([0, Decimal("0.01"), Decimal("0.05")])
    maxlen = rng.choice([None, 2, 3])
    pruning = rng.random() < 0.8
    expected = local(rows, mu, min_support, maxlen, pruning)
    got, _ = distributed(spark, rows, mu, min_support, maxlen, pruning, slices=3, partitions=rng.choice([1, 3, 8]))
    assert got == expected
    # utilities keep the engine's exact decimal form (same scale), not just the same value
    assert {k: str(v[0]) for k, v in got.items()} == {k: str(v[0]) for k, v in expected.items()}


def test_store_through_postgres_identical_to_local(spark, mine_dsn):
    rows = synthetic_rows(3, 600)
    store_id = make_store(mine_dsn, rows)
    df = read_transactions(spark, mine_dsn, store_id, n_partitions=3)
    assert df.rdd.getNumPartitions() == 3 and df.count() == len(rows)

    req = RunRequest.from_params({"store_ids": [str(store_id)], "min_utility_ratio": 0.005,
                                  "max_pattern_length": 4, "engine": "spark"})
    with psycopg.connect(mine_dsn) as c:
        p = plan_runs(c, req, run_key=f"spark/{uuid.uuid4()}")
        c.commit()
    job_id = p.jobs[0].job_id
    assert p.jobs[0].engine_path == "spark"
    result = run_job(mine_dsn, job_id, spark_session=spark)
    with psycopg.connect(mine_dsn) as c:
        job = get_job(c, uuid.UUID(job_id))
        stored = read_local_patterns(c, store_id)
    assert job.status == "completed" and job.engine_path == "spark"
    assert job.memory_used_mb > 100  # driver + JVM + Python workers, measured
    expected = local(rows, job.min_utility, job.min_support, job.max_pattern_length)
    assert result["patterns_found"] == job.patterns_found == len(stored) == len(expected) > 10
    assert {tuple(s.items): (Decimal(s.utility), float(s.support), float(s.confidence)) for s in stored} == \
        {k: (Decimal(v[0]), v[2], v[3]) for k, v in expected.items()}


def test_scaled_jdbc_read_keeps_the_engines_exact_scale(spark, mine_dsn):
    """Utilities computed by PostgreSQL (numeric) as integers at the window's scale: trailing zeros do not
    raise the scale, repeated items are merged, and the mined utilities equal the local engine's exactly."""
    from include.mine.spark import mine_scaled, read_scaled_transactions, window_scale

    rows = [(["a", "b", "a"], ["1.50", "2", "0.5"], ["2.000", "0.125", "2.000"]),
            (["a", "c"], ["3", "1"], ["1.000", "0.375"]),
            (["b", "c", "d"], ["4", "2", "1"], ["0.125", "0.375", "10"])] * 40
    store_id = make_store(mine_dsn, rows)
    with psycopg.connect(mine_dsn) as c:
        assert window_scale(c, store_id) == 3                 # 0.125 x 2 = 0.250 -> 0.25; 1 x 0.375 -> 3 decimals
    df = read_scaled_transactions(spark, mine_dsn, store_id, scale=3, n_partitions=2)
    first = sorted((tuple(r["items"]), tuple(r["utilities"])) for r in df.collect())[0]
    assert first == (("a", "b"), (4000, 250))               # a: 1.50 x 2 + 0.5 x 2 merged; b: 0.25
    got = mine_scaled(df, 3, Decimal("10"), 0, 3, True, n_partitions=3)
    expected = local(rows, Decimal("10"), 0, 3)
    assert {p.items: str(p.utility) for p in got.patterns} == {k: str(v[0]) for k, v in expected.items()}
