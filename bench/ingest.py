"""Benchmark of transaction file ingestion (issue 5): the whole path next to a bare COPY.

    python bench/ingest.py [--transactions 200000] [--items 5] [--repeat 2] [--full]

In one run, on one generated CSV file and into the same table of a fresh, migrated temporary
database (dropped at the end):

* **bare COPY**: the same rows, already in COPY text format in a local file, written with
  ``COPY transactions ... FROM STDIN`` in 1 MiB chunks in one transaction;
* **pipeline**: ``include.ingest.load.copy_file`` = streaming parse + great-expectations row
  suite per chunk + merge + COPY, in one transaction (what ``ingest_file`` does between download
  and commit);
* with ``--full``, also ``ingest_file`` end to end (S3 download, file suite, status, metrics,
  moves), once.

Both timed runs are rolled back, so each starts from the same empty table. Prints the load
average (the machine is shared: compare runs made under similar load), rows (= transactions) per
second, the ratio pipeline / bare COPY (target >= 0.5; best of ``--repeat`` runs each), the CPU
time of the pipeline's process (less sensitive to the load than its wall time) and the peak
memory of the pipeline (max RSS growth of this process while it ran, and the Python heap peak of
a separate traced run). Chunks: the loader's default size (``--chunk-items``). Needs the services
(`scripts/services.sh up`) and `.local/env.sh` sourced.
"""
from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
import tracemalloc
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from psycopg import sql  # noqa: E402

from include.connections import postgres_dsn  # noqa: E402
from include.ingest.formats import Transaction, read_transactions  # noqa: E402
from include.ingest.load import (COPY_SQL, DEFAULT_CHUNK_ITEMS, _RowFormatter,  # noqa: E402
                                 copy_file)

H = "transaction_id,transaction_date,item,quantity,unit_utility\n"


def make_csv(path: Path, n_tx: int, n_items: int, seed: int = 7) -> int:
    rnd = random.Random(seed)
    catalogue = [f"product {i:05d}" for i in range(5000)]
    prices = [f"{rnd.randint(10, 5000) / 100:.2f}" for _ in catalogue]
    lines = 0
    with open(path, "w", newline="") as f:
        f.write(H)
        for t in range(n_tx):
            day = f"2024-{1 + t % 12:02d}-{1 + t % 28:02d}T{t % 24:02d}:{t % 60:02d}:00"
            for k in rnd.sample(range(len(catalogue)), n_items):
                f.write(f"T{t:09d},{day},{catalogue[k]},{rnd.randint(1, 6)},{prices[k]}\n")
                lines += 1
    return lines


def maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transactions", type=int, default=200_000)
    ap.add_argument("--items", type=int, default=5, help="items per transaction")
    ap.add_argument("--repeat", type=int, default=2, help="timed runs of each (best is kept)")
    ap.add_argument("--chunk-items", type=int, default=DEFAULT_CHUNK_ITEMS,
                    help="items per chunk (default: the loader's)")
    ap.add_argument("--full", action="store_true", help="also time ingest_file end to end (S3)")
    ap.add_argument("--no-trace", action="store_true",
                    help="skip the traced run that measures the Python heap peak (slow)")
    a = ap.parse_args()

    print("load average at start: %.2f %.2f %.2f (%d CPUs)" % (*os.getloadavg(), os.cpu_count()))
    base = postgres_dsn()
    dbname = f"bench_ingest_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(base, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    dsn = psycopg.conninfo.make_conninfo(base, dbname=dbname)
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    try:
        import shutil

        from include.db.migrate import SQL_DIR, migrate

        sql_dir = work / "sql"                  # the schema's and ingestion's migrations only
        sql_dir.mkdir()
        for f in sorted(Path(SQL_DIR).glob("0[01][0-9][0-9]_*.sql")):
            shutil.copy(f, sql_dir / f.name)
        migrate(dsn, sql_dir=sql_dir)
        csv_path = work / "transactions.csv"
        t = time.perf_counter()
        lines = make_csv(csv_path, a.transactions, a.items)
        size = csv_path.stat().st_size
        print(f"input: {a.transactions:,} transactions, {lines:,} CSV lines, "
              f"{size / 1e6:.1f} MB (generated in {time.perf_counter() - t:.1f} s)")

        from include.ingest.validate import ContractValidator
        validator = ContractValidator()

        with psycopg.connect(dsn) as conn:
            store = conn.execute("INSERT INTO stores (name) VALUES ('bench') RETURNING id").fetchone()[0]
            file_id = conn.execute(
                """INSERT INTO transaction_files (store_id, filename, file_size, file_type)
                   VALUES (%s, 'transactions.csv', %s, 'csv') RETURNING id""",
                (store, size)).fetchone()[0]
            conn.commit()

            pipe_cpu: list[float] = []

            def pipeline() -> tuple[float, int]:
                c0 = time.process_time()
                t0 = time.perf_counter()
                r = copy_file(conn, str(csv_path), "csv", store_id=store, file_id=file_id,
                              validator=validator, chunk_items=a.chunk_items)
                dt = time.perf_counter() - t0
                pipe_cpu.append(time.process_time() - c0)
                conn.rollback()
                assert r.rows_rejected == 0 and r.rows_loaded == a.transactions, r
                return dt, r.rows_loaded

            # memory of the pipeline first (before the bare COPY input is prepared)
            rss0 = maxrss_mb()
            pipe_times = [pipeline()[0]]
            rss_growth = maxrss_mb() - rss0

            # the bare COPY input: the same rows in COPY text, in a file
            copy_path = work / "rows.copy"
            fmt = _RowFormatter(store, file_id)
            with open(copy_path, "w", encoding="utf-8") as out:
                for rec in read_transactions(csv_path, "csv"):
                    assert isinstance(rec, Transaction)
                    out.write(fmt.line(rec))

            def bare() -> float:
                t0 = time.perf_counter()
                with conn.cursor() as cur, cur.copy(COPY_SQL) as cp, open(copy_path, "rb") as f:
                    while data := f.read(1 << 20):
                        cp.write(data)
                dt = time.perf_counter() - t0
                conn.rollback()
                return dt

            bare_times = []
            for _ in range(a.repeat):
                bare_times.append(bare())
                if len(pipe_times) < a.repeat:
                    pipe_times.append(pipeline()[0])

            # Python heap peak of the pipeline (traced run: slower, not timed)
            heap_peak = float("nan")
            if not a.no_trace:
                tracemalloc.start()
                copy_file(conn, str(csv_path), "csv", store_id=store, file_id=file_id,
                          validator=validator, chunk_items=a.chunk_items)
                conn.rollback()
                heap_peak = tracemalloc.get_traced_memory()[1] / 1e6
                tracemalloc.stop()

        n = a.transactions
        bare_rate, pipe_rate = n / min(bare_times), n / min(pipe_times)
        print(f"bare COPY : {min(bare_times):7.2f} s  {bare_rate:10,.0f} transactions/s  "
              f"({lines / min(bare_times):,.0f} items/s)   runs: "
              + ", ".join(f"{x:.2f}" for x in bare_times))
        print(f"pipeline  : {min(pipe_times):7.2f} s  {pipe_rate:10,.0f} transactions/s  "
              f"({lines / min(pipe_times):,.0f} items/s)   runs: "
              + ", ".join(f"{x:.2f}" for x in pipe_times))
        print(f"pipeline CPU of this process (parse, suite, format, COPY sender thread): "
              + ", ".join(f"{x:.2f}" for x in pipe_cpu) + " s (the server's share is not in it)")
        print(f"ratio pipeline / bare COPY = {pipe_rate / bare_rate:.2f}  (target >= 0.5)")
        print(f"peak memory of the pipeline: max RSS +{rss_growth:.0f} MB over the process "
              f"({maxrss_mb():.0f} MB incl. great-expectations), Python heap peak "
              f"{heap_peak:.1f} MB, for a {size / 1e6:.0f} MB file")
        print("load average at end: %.2f %.2f %.2f" % os.getloadavg())

        if a.full:
            from include.ingest.load import ingest_file
            from include.ingest.upload import s3_client, upload_files
            bucket = os.environ.get("AIRFLOW_VAR_PLATFORM_BUCKET", "platform-data")
            s3 = s3_client()
            with psycopg.connect(dsn) as conn:
                (u,) = upload_files(conn, s3, store, [csv_path], bucket=bucket)
                t0 = time.perf_counter()
                r = ingest_file(conn, s3, u.file_id, bucket=bucket, validator=validator,
                                chunk_items=a.chunk_items)
                dt = time.perf_counter() - t0
                print(f"ingest_file end to end (S3 download, file suite, COPY, commit, move): "
                      f"{dt:.2f} s, {r.rows_loaded / dt:,.0f} transactions/s ({r.status})")
                s3.delete_object(Bucket=bucket, Key=r.s3_key)
        return 0
    finally:
        import shutil

        shutil.rmtree(work, ignore_errors=True)
        for attempt in range(5):       # another role may hold a connection a moment (backups)
            try:
                with psycopg.connect(base, autocommit=True) as c:
                    c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
                              .format(sql.Identifier(dbname)))
                break
            except psycopg.errors.InsufficientPrivilege as e:
                if attempt == 4:
                    print(f"temporary database {dbname} left behind: {e}", file=sys.stderr)
                time.sleep(2)


if __name__ == "__main__":
    sys.exit(main())
