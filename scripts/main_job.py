"""The main job (`./dev main`): the whole pipeline on a generated sample, through the real DAGs.

1. schema: migrations are applied by `./dev` before this runs (python -m include.db.migrate);
2. sample: N stores of one region (idempotent: same sample name → same stores) with privacy configs,
   and for each a generated transaction file (CSV or JSON Lines, alternating) written under
   .local/sample/, plus one malformed file of the first store (a quarter of its transactions have a
   negative quantity: the file fails, its rejected transactions go to rejected/ with their reasons);
3. upload: each file into s3://platform-data/incoming/<store_id>/ and transaction_files (pending);
   a re-run uploads the same content again, which the platform records as a duplicate;
4. ingest: `airflow dags test ingest_transaction_files` (validate with great-expectations, COPY);
5. mine: `airflow dags test mine_store_patterns` over the sample stores;
6. privatize: `airflow dags test privatize_store_patterns` (each store's local DP release, charged to
   its privacy budget ledger);
7. federate: `airflow dags test federated_round` over the sample stores (`--rounds` times), with one
   store agent process per store;
8. search: `airflow dags test index_search` (activity logs, metrics and global patterns to Elasticsearch);
9. print what it did: files and rows per store, mining jobs, privacy releases, the rounds and the
   last round's top global patterns.

Each DAG step is skipped with a message when its DAG file is not in dags/ (the pipeline is built
issue by issue); a DAG run that fails stops the job with exit code 1. Every DAG step prints its run
id (`run_id=...`).

The platform database is connection `platform_postgres` (`AIRFLOW_CONN_PLATFORM_POSTGRES`), the Redis
namespace and the Elasticsearch index prefix come from `PLATFORM_REDIS_NAMESPACE` /
`PLATFORM_SEARCH_INDEX_PREFIX`, as for the DAGs: the dashboard tests run this job on a temporary
database with a sample name of their own (tests/ui/conftest.py).

    python scripts/main_job.py [--stores 4] [--transactions 3000] [--rounds 1] [--sample sample] [--seed 2026]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402

from include import synthetic  # noqa: E402
from include.connections import postgres_dsn  # noqa: E402

SAMPLE_NAMESPACE = uuid.UUID("6f1c2a56-5c1e-4f53-9a59-0d6a4c0b7e11")
DEFAULT_SAMPLE = "sample"
MALFORMED_TRANSACTIONS = 40     # of which every 4th has a negative quantity (25 % > max_reject_share 5 %)


def say(msg: str) -> None:
    print(f"[main] {msg}", flush=True)


class Sample:
    """A named sample: its region, stores, files and logs. The default name keeps the ids of earlier
    runs; another name (the dashboard tests use a random one) gives stores, a region and S3 keys of
    its own, so that two samples never take part in each other's uploads or rounds."""

    def __init__(self, name: str) -> None:
        if not re.fullmatch(r"[a-z0-9][a-z0-9_-]{0,39}", name):
            raise ValueError(f"--sample must match [a-z0-9][a-z0-9_-]{{0,39}}, got {name!r}")
        self.name = name
        default = name == DEFAULT_SAMPLE
        self.region_id = uuid.uuid5(SAMPLE_NAMESPACE, f"{name}-region")
        self._key = (lambda i: f"store-{i}") if default else (lambda i: f"{name}-store-{i}")
        self._label = "Sample" if default else name
        self.files = ROOT / ".local" / "sample" / ("" if default else name)
        self.logs = ROOT / ".local" / "logs" / ("" if default else f"main-{name}")

    def store(self, i: int) -> tuple[uuid.UUID, str]:
        return uuid.uuid5(SAMPLE_NAMESPACE, self._key(i)), f"{self._label} store {i}"

    def log(self, what: str) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        return self.logs / f"main-{what}.log"


def ensure_stores(conn: psycopg.Connection, sample: Sample, n: int) -> list[tuple[uuid.UUID, str]]:
    from include.db.privacy import get_privacy_config, upsert_privacy_config
    from include.db.stores import create_store, get_store

    stores = []
    for i in range(1, n + 1):
        sid, name = sample.store(i)
        if get_store(conn, sid) is None:
            create_store(conn, name, location=f"Sample city {i}", region_id=sample.region_id, store_id=sid)
            say(f"created store {name} ({sid})")
        if get_privacy_config(conn, sid) is None:
            upsert_privacy_config(conn, sid, epsilon=10, noise_type="gaussian", hash_patterns=False)
        stores.append((sid, name))
    conn.commit()
    return stores


def write_sample_files(sample: Sample, stores, n_tx: int, seed: int) -> list[tuple[uuid.UUID, Path]]:
    out_dir = sample.files
    out_dir.mkdir(parents=True, exist_ok=True)
    files = []
    for i, (sid, _name) in enumerate(stores, start=1):
        tx = synthetic.store_transactions(i, n_tx, seed=seed)
        if i % 2:
            path = out_dir / f"store{i}_transactions.csv"
            path.write_bytes(synthetic.to_csv(tx))
        else:
            path = out_dir / f"store{i}_transactions.jsonl"
            path.write_bytes(synthetic.to_json_lines(tx))
        files.append((sid, path))
    path = out_dir / "store1_corrections.csv"
    path.write_bytes(malformed_csv(seed))
    files.append((stores[0][0], path))
    return files


def malformed_csv(seed: int) -> bytes:
    """A CSV of store 1 in which every 4th transaction has a negative quantity: 25 % of the
    transactions are rejected (more than the ingest DAG's max_reject_share of 5 %), so the file fails,
    nothing of it is loaded, and its rejects (line, field, reason) are written to rejected/."""
    tx = synthetic.store_transactions(1, MALFORMED_TRANSACTIONS, seed=seed + 1, prefix="S001-C")
    bad = [synthetic.SampleTransaction(t.transaction_id, t.transaction_date, t.items,
                                       (-t.quantities[0],) + t.quantities[1:], t.unit_utilities)
           if n % 4 == 3 else t for n, t in enumerate(tx)]
    return synthetic.to_csv(bad)


def upload(conn: psycopg.Connection, files) -> None:
    from include.ingest.upload import s3_client, upload_files

    s3 = s3_client()
    bucket = os.environ.get("AIRFLOW_VAR_PLATFORM_BUCKET", "platform-data")
    for sid, path in files:
        for u in upload_files(conn, s3, sid, [path], bucket=bucket):
            conn.commit()
            say(f"uploaded {path.name} ({u.file_size} bytes) as s3://{u.s3_bucket}/{u.s3_key}"
                + (f" — duplicate of file {u.duplicate_of}, will not be loaded twice" if u.duplicate_of else ""))


RUN_FINISHED = re.compile(r"DagRun Finished: dag_id=(?P<dag>[\w.-]+), .*?run_id=(?P<run>[^,\s]+),")


def dag_test(sample: Sample, dag_id: str, conf: dict | None = None, *, log_name: str | None = None) -> str | None:
    """Run one DAG with `airflow dags test`; returns its run id, None when the DAG does not exist yet."""
    if not (ROOT / "dags" / f"{dag_id}.py").exists():
        say(f"{dag_id}: not in dags/ yet, step skipped")
        return None
    cmd = [str(Path(sys.executable).parent / "airflow"), "dags", "test", dag_id]
    if conf:
        cmd += ["-c", json.dumps(conf)]
    log = sample.log(log_name or dag_id)
    say(f"{dag_id}: airflow dags test (log: {log.relative_to(ROOT)})")
    t0 = time.monotonic()
    with log.open("w") as fh:
        rc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT).returncode
    text = log.read_text(errors="replace")
    ok = rc == 0 and "state=success" in text.replace("DagRunState.SUCCESS", "state=success")
    if not ok:
        tail = "\n".join(text.splitlines()[-25:])
        say(f"{dag_id}: FAILED after {time.monotonic() - t0:.0f}s (exit {rc}); last lines:\n{tail}")
        sys.exit(1)
    runs = [m["run"] for m in RUN_FINISHED.finditer(text) if m["dag"] == dag_id]
    run_id = runs[-1] if runs else "?"
    say(f"{dag_id}: success in {time.monotonic() - t0:.0f}s run_id={run_id}")
    return run_id


def federated_round(sample: Sample, store_ids: list[str], number: int) -> None:
    """The coordinator DAG, with one store agent process per store playing the federated_client
    side (`airflow dags test` starts no triggerer, so the event-driven client DAG cannot start).
    The agents of each round read the invitations from the topic's end before the round starts."""
    if not (ROOT / "dags" / "federated_round.py").exists():
        say("federated_round: not in dags/ yet, step skipped")
        return
    from include.connections import KAFKA, KAFKA_PRODUCER, get_connection
    from include.federate.topics import INVITATIONS, ensure_topics
    from include.federate.transport import KafkaTransport

    cons, prod = get_connection(KAFKA).extra, get_connection(KAFKA_PRODUCER).extra
    ensure_topics(cons)
    offset = KafkaTransport(cons, prod).end_offset(INVITATIONS, 0)
    agents = []
    for sid in store_ids:
        fh = sample.log(f"agent-{sid[:8]}").open("w")
        agents.append(subprocess.Popen(
            [sys.executable, "-m", "include.federate.agent", "--store-id", sid, "--invitations-offset", str(offset),
             "--stop-after", "1800"], stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT))
    say(f"round {number}: started {len(agents)} store agents (logs: {sample.log('agent-*').relative_to(ROOT)})")
    try:
        deadline = time.monotonic() + 180
        with psycopg.connect(postgres_dsn()) as c:
            while c.execute("SELECT count(*) FROM federate_parties WHERE store_id = ANY(%s::uuid[])",
                            (store_ids,)).fetchone()[0] < len(store_ids):
                if time.monotonic() > deadline:
                    say("store agents did not register their keys within 180 s; see their logs")
                    sys.exit(1)
                time.sleep(0.5)
        dag_test(sample, "federated_round", {"store_ids": store_ids, "epsilon": 1.0, "mode": "secure"},
                 log_name=f"federated_round-{number}")
    finally:
        for a in agents:
            try:
                a.wait(timeout=60)
            except subprocess.TimeoutExpired:
                a.kill()


def report(conn: psycopg.Connection, stores) -> None:
    ids = [s for s, _ in stores]
    say("files:")
    for name, status, n, err in conn.execute(
            """SELECT s.name, f.processing_status, count(*), max(left(f.error_message, 120))
                 FROM transaction_files f JOIN stores s ON s.id = f.store_id
                WHERE f.store_id = ANY(%s) GROUP BY s.name, f.processing_status ORDER BY 1, 2""", (ids,)):
        say(f"  {name}: {n} file(s) {status}" + (f" ({err})" if err else ""))
    say("transactions:")
    for name, n, tu in conn.execute(
            """SELECT s.name, count(t.id), coalesce(sum(t.total_utility), 0) FROM stores s
                 LEFT JOIN transactions t ON t.store_id = s.id WHERE s.id = ANY(%s)
                GROUP BY s.name ORDER BY 1""", (ids,)):
        say(f"  {name}: {n} transactions, total utility {tu}")
    rows = conn.execute(
        """SELECT s.name, j.status, j.patterns_found, j.execution_time_seconds, j.memory_used_mb
             FROM mining_jobs j JOIN stores s ON s.id = j.store_id WHERE j.store_id = ANY(%s)
            ORDER BY j.completed_at DESC NULLS LAST LIMIT %s""", (ids, len(ids))).fetchall()
    if rows:
        say("latest mining jobs:")
        for name, status, n, secs, mb in rows:
            say(f"  {name}: {status}, {n} patterns, {secs} s, peak {mb} MB")
    rows = conn.execute(
        """SELECT s.name, array_agg(split_part(l.release_name, '@', 1) || ' ε ' || round(l.epsilon_display::numeric, 4)
                                     ORDER BY l.created_at)
             FROM privacy_budget_ledger l JOIN stores s ON s.id = l.store_id
            WHERE l.store_id = ANY(%s) AND l.status <> 'aborted' GROUP BY s.name ORDER BY 1""", (ids,)).fetchall()
    if rows:
        say("privacy budget ledger (local releases and round charges, each ε at its own δ):")
        for name, charges in rows:
            say(f"  {name}: {', '.join(charges)}")
    rnd = None
    for rid, number, status, clients, n, secs in conn.execute(
            """SELECT id, round_number, status, participating_clients, patterns_aggregated, duration_seconds
                 FROM federated_rounds WHERE params->'store_ids' ?| %s::text[]
                ORDER BY round_number DESC LIMIT 5""", ([str(i) for i in ids],)).fetchall()[::-1]:
        say(f"federated round {number}: {status}, {clients} stores, {n} global patterns, {secs} s")
        rnd = (rid, number)
    if rnd:
        rid, number = rnd
        top = conn.execute(
            """SELECT pattern_items, aggregated_utility, utility_ci_low, utility_ci_high, confident,
                      contributing_stores, client_coverage_percent
                 FROM global_patterns WHERE round_id = %s ORDER BY aggregated_utility DESC LIMIT 10""",
            (rid,)).fetchall()
        if top:
            say("top global patterns (noisy utility, 95% interval; 'confident' when the interval's "
                "lower bound clears the round's threshold):")
            for items, util, lo, hi, conf, n_st, cov in top:
                say(f"  {' + '.join(items):<40} {util:>11.2f}  [{lo:>10.2f}, {hi:>10.2f}]"
                    f"  {'confident' if conf else 'uncertain':<9}  stores {n_st}  coverage {cov:.0f}%")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--stores", type=int, default=4)
    ap.add_argument("--transactions", type=int, default=3000, help="per store")
    ap.add_argument("--rounds", type=int, default=1, help="federated rounds to run one after the other")
    ap.add_argument("--sample", default=DEFAULT_SAMPLE,
                    help="name of the sample: its stores, region and files (another name, other stores)")
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args()
    if a.stores < 2 or a.transactions < 1 or a.rounds < 0:
        ap.error("--stores must be >= 2 (a federated round needs several stores), --transactions >= 1, "
                 "--rounds >= 0")
    try:
        sample = Sample(a.sample)
    except ValueError as e:
        ap.error(str(e))

    with psycopg.connect(postgres_dsn(), application_name="main_job") as conn:
        stores = ensure_stores(conn, sample, a.stores)
        files = write_sample_files(sample, stores, a.transactions, a.seed)
        say(f"generated {a.transactions} transactions for each of {len(stores)} stores and one malformed "
            f"file under {sample.files.relative_to(ROOT)}/")
        upload(conn, files)

    store_ids = [str(s) for s, _ in stores]
    dag_test(sample, "ingest_transaction_files")
    dag_test(sample, "mine_store_patterns", {"store_ids": store_ids})
    dag_test(sample, "privatize_store_patterns", {"store_ids": store_ids})
    for n in range(1, a.rounds + 1):
        federated_round(sample, store_ids, n)
    dag_test(sample, "index_search")

    with psycopg.connect(postgres_dsn(), application_name="main_job") as conn:
        report(conn, stores)
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
