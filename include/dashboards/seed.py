"""Synthetic dashboard data for the browser tests (tests/ui) and the benchmark (bench/dashboards.py):
rounds with levels, participations, global patterns and ledger charges; files with loader metrics;
mining jobs. Rows have the shapes the pipelines write (include/federate/records.py,
include/ingest/load.py, include/mine). For a test or benchmark database only.

Contract: :func:`seed` takes an owner connection (no scope) and the stores per region (they must exist
with their region), writes everything in one transaction (the caller commits) and returns a
:class:`Seeded` summary. Deterministic for a given ``seed`` value.
"""
from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import psycopg

CATALOGUE = ["wine", "cheese", "bread", "butter", "milk", "eggs", "apples", "coffee", "tea", "pasta", "tomatoes",
             "olive oil", "rice", "chicken", "salmon", "yogurt"]
ROUND_EPSILON = 0.5          # ε per store per round (pure accounting, discrete Laplace)
WINDOW = timedelta(days=3)   # each round reads the 3 days before it: windows of neighbouring rounds overlap


@dataclass
class Seeded:
    rounds: list[uuid.UUID] = field(default_factory=list)
    files: int = 0
    jobs: int = 0
    ledger_rows: int = 0


def seed(conn: psycopg.Connection, stores_by_region: dict[uuid.UUID, list[uuid.UUID]], *, rounds: int = 6,
         files_per_store: int = 4, jobs_per_store: int = 3, patterns_per_round: int = 8,
         lifetime_epsilon: dict[uuid.UUID, float] | None = None, start: datetime | None = None,
         seed: int = 13) -> Seeded:
    """Write ``rounds`` rounds (regions round-robin; every 5th round failed, one dropout every 3rd round),
    ``files_per_store`` files and ``jobs_per_store`` mining jobs per store, privacy configs (``lifetime_epsilon``
    per store, default 10) and the ledger charges of the participants."""
    rnd = random.Random(seed)
    now = datetime.now(timezone.utc).replace(microsecond=0)
    start = start or now - timedelta(days=rounds + 1)
    out = Seeded()
    all_stores = [s for ss in stores_by_region.values() for s in ss]
    lifetime_epsilon = lifetime_epsilon or {}
    conn.cursor().executemany(
        "INSERT INTO privacy_configs (store_id, epsilon, noise_type) VALUES (%s, %s, 'laplace')",
        [(s, lifetime_epsilon.get(s, 10.0)) for s in all_stores])
    first = (conn.execute("SELECT COALESCE(max(round_number), 0) FROM federated_rounds").fetchone()[0]) + 1
    regions = list(stores_by_region)
    parts, ledger, patterns = [], [], []
    for i in range(rounds):
        rid, region = uuid.uuid4(), regions[i % len(regions)]
        invited = stores_by_region[region]
        failed = i % 5 == 4
        dropped = [invited[-1]] if (i % 3 == 2 and len(invited) > 2 and not failed) else []
        included = [] if failed else [s for s in invited if s not in dropped]
        started = start + timedelta(days=i, minutes=rnd.randint(0, 50))
        duration = round(rnd.uniform(20, 300), 3)
        levels = [{"level": k, "candidates": c, "vector_length": 3 * c, "clients": len(invited) - (k > 1) * len(dropped),
                   "survivors": len(invited) - len(dropped), "dropped": [f"store:{s}" for s in dropped] if k == 1 else [],
                   "seconds": round(duration / 4 * rnd.uniform(0.5, 1.2), 3)}
                  for k, c in ((1, len(CATALOGUE)), (2, 40), (3, 25))]
        params = {"store_ids": [str(s) for s in invited], "epsilon": ROUND_EPSILON, "delta": 1e-6,
                  "noise_type": "laplace", "max_pattern_length": 3, "top_k": 100, "min_utility": 50.0,
                  "window_start": (started - WINDOW).isoformat(), "window_end": started.isoformat(),
                  "min_clients_required": 2, "declined": {}, "not_answered": []}
        status = "failed" if failed else "completed"
        n_pat = 0 if failed else patterns_per_round
        conn.execute(
            """INSERT INTO federated_rounds (id, round_number, status, min_clients_required, participating_clients,
                   started_at, completed_at, duration_seconds, patterns_aggregated, global_privacy_budget, params,
                   error_message, mode, region_id, current_phase, privacy_cost, levels, dag_run_id)
               VALUES (%s, %s, %s, 2, %s, %s, %s, %s, %s, %s, %s, %s, 'local', %s, %s, %s, %s, %s)""",
            (rid, first + i, status, len(included), started, started + timedelta(seconds=duration), duration, n_pat,
             ROUND_EPSILON, json.dumps(params), "level-1: too few clients" if failed else None, region, status,
             None if failed else json.dumps({"accounting": "pure", "rho": ROUND_EPSILON ** 2 / 2,
                                             "epsilon": ROUND_EPSILON, "delta": 0.0}),
             json.dumps(levels[:1] if failed else levels), f"seed__{rid}"))
        out.rounds.append(rid)
        for s in included:
            parts.append((rid, s, 3 * 81, ROUND_EPSILON, started + timedelta(seconds=duration)))
        for s in ([] if failed else invited):   # a dropped store charged its level-1 input too
            ledger.append((s, rid, started - WINDOW, started, ROUND_EPSILON, started + timedelta(seconds=5)))
        used: set[tuple[str, ...]] = set()
        for rank in range(1, n_pat + 1):
            items = ["cheese", "wine"]   # the best pattern of every round: its trend spans all of them
            while tuple(items) in used:  # an itemset is released at most once per round
                items = sorted(rnd.sample(CATALOGUE[:8], 1 + (rank % 3)))
            used.add(tuple(items))
            util = round(2000.0 / rank + rnd.uniform(0, 100), 2)
            sd = round(rnd.uniform(20, 200), 2)
            patterns.append((rid, items, util, round(rnd.uniform(10, 400)), len(included),
                             round(100.0 * len(included) / len(invited), 2), sd, round(util - 1.96 * sd, 2),
                             round(util + 1.96 * sd, 2), util - 1.96 * sd > 50, rank, len(items)))
    with conn.cursor() as cur:
        cur.executemany("""INSERT INTO round_participations (round_id, store_id, patterns_contributed, privacy_epsilon,
                                                             contribution_timestamp) VALUES (%s, %s, %s, %s, %s)""", parts)
        cur.executemany(
            """INSERT INTO privacy_budget_ledger (store_id, round_id, release_name, window_start, window_end, mode,
                   mechanism, accounting, rho, epsilon, delta, epsilon_display, delta_display, status, created_at,
                   charged_at)
               VALUES (%s, %s, 'federated_round', %s, %s, 'local', 'discrete_laplace', 'pure', %s * %s / 2, %s, 0, %s,
                       0, 'charged', %s, %s)""",
            [(s, r, ws, we, e, e, e, e, at, at) for s, r, ws, we, e, at in ledger])
        out.ledger_rows = len(ledger)
        cur.executemany(
            """INSERT INTO global_patterns (round_id, pattern_items, aggregated_utility, global_support,
                   contributing_stores, client_coverage_percent, utility_stddev, utility_ci_low, utility_ci_high,
                   confident, pattern_rank, pattern_length)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""", patterns)
        files, metrics, jobs = [], [], []
        for n, s in enumerate(all_stores):
            for j in range(files_per_store):
                fid = uuid.uuid4()
                at = now - timedelta(days=j, hours=n % 24)
                kind = (n + j) % 4   # 0,1 completed clean, 2 completed with rejects, 3 failed
                loaded = 0 if kind == 3 else 1000 + 37 * j + n
                rejected = 7 + j if kind == 2 else (120 if kind == 3 else 0)
                status = "failed" if kind == 3 else "completed"
                err = (f"{rejected} of {loaded + rejected} transactions rejected ({100 * rejected / (loaded + rejected):.2f}%),"
                       f" first at line 3, field quantity" if kind == 2 else
                       "120 of 120 transactions rejected (100.00%), more than the allowed 5.00%" if kind == 3 else None)
                files.append((fid, s, f"day{j + 1}.csv", 4096 + j, status, err, at,
                              f"{'failed' if kind == 3 else 'processed'}/{s}/{fid}_day{j + 1}.csv"))
                meta = json.dumps({"file_id": str(fid), "filename": f"day{j + 1}.csv", "status": status})
                for name, v in (("rows_read", loaded + rejected), ("rows_loaded", loaded), ("rows_rejected", rejected)):
                    metrics.append((name, v, s, at + timedelta(minutes=1), meta))
            for j in range(jobs_per_store):
                spark = (n + j) % 5 == 4
                t0 = now - timedelta(days=j, hours=2, minutes=n % 60)
                secs = round(rnd.uniform(40, 400) if spark else rnd.uniform(0.5, 30), 3)
                jobs.append((s, "failed" if j == 2 and n % 2 else "completed", 100.0, 0.01, t0, t0 + timedelta(seconds=secs),
                             secs, round(rnd.uniform(800, 4000) if spark else rnd.uniform(40, 600), 1),
                             0 if j == 2 and n % 2 else rnd.randint(50, 3000), "spark" if spark else "local",
                             5000 + 100 * j + n, "out of memory budget" if j == 2 and n % 2 else None))
        cur.executemany(
            """INSERT INTO transaction_files (id, store_id, filename, file_size, file_type, processing_status,
                   error_message, upload_timestamp, s3_bucket, s3_key)
               VALUES (%s, %s, %s, %s, 'csv', %s, %s, %s, 'platform-data', %s)""", files)
        cur.executemany(
            """INSERT INTO performance_metrics (metric_type, metric_name, metric_value, store_id, recorded_at, metadata)
               VALUES ('ingestion', %s, %s, %s, %s, %s::jsonb)""", metrics)
        cur.executemany(
            """INSERT INTO mining_jobs (store_id, status, min_utility, min_support, started_at, completed_at,
                   execution_time_seconds, memory_used_mb, patterns_found, engine_path, n_transactions, error_message)
               VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)""", jobs)
        out.files, out.jobs = len(files), len(jobs)
    return out
