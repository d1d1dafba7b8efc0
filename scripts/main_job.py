"""The main job (`./dev main`): the whole pipeline on a generated sample, through the real DAGs.

1. schema: migrations are applied by `./dev` before this runs (python -m include.db.migrate);
2. sample: N stores (idempotent: same names → same stores) with privacy configs, and for each a
   generated transaction file (CSV or JSON Lines, alternating) written under .local/sample/;
3. upload: each file into s3://platform-data/incoming/<store_id>/ and transaction_files (pending);
   a re-run uploads the same content again, which the platform records as a duplicate;
4. ingest: `airflow dags test ingest_transaction_files` (validate with great-expectations, COPY);
5. mine: `airflow dags test mine_store_patterns` over the sample stores;
6. federate: `airflow dags test federated_round` over the sample stores;
7. print what it did: files and rows per store, mining jobs, the round and its top global patterns.

Each DAG step is skipped with a message when its DAG file is not in dags/ (the pipeline is built
issue by issue); a DAG run that fails stops the job with exit code 1.

    python scripts/main_job.py [--stores 4] [--transactions 3000] [--seed 2026]
"""
from __future__ import annotations

import argparse
import json
import os
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
REGION_ID = uuid.uuid5(SAMPLE_NAMESPACE, "sample-region")


def say(msg: str) -> None:
    print(f"[main] {msg}", flush=True)


def ensure_stores(conn: psycopg.Connection, n: int) -> list[tuple[uuid.UUID, str]]:
    from include.db.privacy import get_privacy_config, upsert_privacy_config
    from include.db.stores import create_store, get_store

    stores = []
    for i in range(1, n + 1):
        sid = uuid.uuid5(SAMPLE_NAMESPACE, f"store-{i}")
        name = f"Sample store {i}"
        if get_store(conn, sid) is None:
            create_store(conn, name, location=f"Sample city {i}", region_id=REGION_ID, store_id=sid)
            say(f"created store {name} ({sid})")
        if get_privacy_config(conn, sid) is None:
            upsert_privacy_config(conn, sid, epsilon=10, noise_type="gaussian", hash_patterns=False)
        stores.append((sid, name))
    conn.commit()
    return stores


def write_sample_files(stores, n_tx: int, seed: int) -> list[tuple[uuid.UUID, Path]]:
    out_dir = ROOT / ".local" / "sample"
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
    return files


def upload(conn: psycopg.Connection, files) -> None:
    from include.ingest.upload import s3_client, upload_files

    s3 = s3_client()
    bucket = os.environ.get("AIRFLOW_VAR_PLATFORM_BUCKET", "platform-data")
    for sid, path in files:
        for u in upload_files(conn, s3, sid, [path], bucket=bucket):
            conn.commit()
            say(f"uploaded {path.name} ({u.file_size} bytes) as s3://{u.s3_bucket}/{u.s3_key}"
                + (f" — duplicate of file {u.duplicate_of}, will not be loaded twice" if u.duplicate_of else ""))


def dag_test(dag_id: str, conf: dict | None = None) -> bool:
    """Run one DAG with `airflow dags test`; False when the DAG does not exist yet."""
    if not (ROOT / "dags" / f"{dag_id}.py").exists():
        say(f"{dag_id}: not in dags/ yet, step skipped")
        return False
    cmd = [str(Path(sys.executable).parent / "airflow"), "dags", "test", dag_id]
    if conf:
        cmd += ["-c", json.dumps(conf)]
    log = ROOT / ".local" / "logs" / f"main-{dag_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
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
    say(f"{dag_id}: success in {time.monotonic() - t0:.0f}s")
    return True


def federated_round(store_ids: list[str]) -> None:
    """The coordinator DAG, with one store agent process per store playing the federated_client
    side (`airflow dags test` starts no triggerer, so the event-driven client DAG cannot start)."""
    if not (ROOT / "dags" / "federated_round.py").exists():
        say("federated_round: not in dags/ yet, step skipped")
        return
    from include.connections import KAFKA, KAFKA_PRODUCER, get_connection
    from include.federate.topics import INVITATIONS, ensure_topics
    from include.federate.transport import KafkaTransport

    cons, prod = get_connection(KAFKA).extra, get_connection(KAFKA_PRODUCER).extra
    ensure_topics(cons)
    offset = KafkaTransport(cons, prod).end_offset(INVITATIONS, 0)
    logs = ROOT / ".local" / "logs"
    agents = []
    for sid in store_ids:
        fh = (logs / f"main-agent-{sid[:8]}.log").open("w")
        agents.append(subprocess.Popen(
            [sys.executable, "-m", "include.federate.agent", "--store-id", sid, "--invitations-offset", str(offset),
             "--stop-after", "1800"], stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT))
    say(f"started {len(agents)} store agents (logs: .local/logs/main-agent-*.log)")
    try:
        deadline = time.monotonic() + 180
        with psycopg.connect(postgres_dsn()) as c:
            while c.execute("SELECT count(*) FROM federate_parties WHERE store_id = ANY(%s::uuid[])",
                            (store_ids,)).fetchone()[0] < len(store_ids):
                if time.monotonic() > deadline:
                    say("store agents did not register their keys within 180 s; see their logs")
                    sys.exit(1)
                time.sleep(0.5)
        dag_test("federated_round", {"store_ids": store_ids, "epsilon": 1.0, "mode": "secure"})
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
    rnd = conn.execute(
        """SELECT id, round_number, status, participating_clients, patterns_aggregated, duration_seconds
             FROM federated_rounds ORDER BY round_number DESC LIMIT 1""").fetchone()
    if rnd:
        rid, number, status, clients, n, secs = rnd
        say(f"federated round {number}: {status}, {clients} stores, {n} global patterns, {secs} s")
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
    ap.add_argument("--seed", type=int, default=2026)
    a = ap.parse_args()
    if a.stores < 2 or a.transactions < 1:
        ap.error("--stores must be >= 2 (a federated round needs several stores) and --transactions >= 1")

    with psycopg.connect(postgres_dsn(), application_name="main_job") as conn:
        stores = ensure_stores(conn, a.stores)
        files = write_sample_files(stores, a.transactions, a.seed)
        say(f"generated {a.transactions} transactions for each of {len(stores)} stores under .local/sample/")
        upload(conn, files)

    store_ids = [str(s) for s, _ in stores]
    dag_test("ingest_transaction_files")
    dag_test("mine_store_patterns", {"store_ids": store_ids})
    federated_round(store_ids)

    with psycopg.connect(postgres_dsn(), application_name="main_job") as conn:
        report(conn, stores)
    say("done")
    return 0


if __name__ == "__main__":
    sys.exit(main())
