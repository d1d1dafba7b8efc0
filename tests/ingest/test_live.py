"""Live progress of an ingestion in the real Redis (namespace of these tests, see conftest), and
Redis being down never failing an ingestion."""
from __future__ import annotations

import json
import logging
import os

from include.ingest.load import ingest_file
from include.search.live import PROGRESS_TTL_S, ingest_progress
from tests.ingest.conftest import H
from tests.ingest.test_load import good_csv


def test_progress_phases_and_counts(conn, s3, bucket, store, put, validator, redis_conn, redis_ns):
    u = put("live.csv", good_csv(400) + "BAD,2024-01-01,tea,-1,2\n")   # 1,201 items, 1 reject
    progress = ingest_progress(redis_conn, u.file_id, ns=redis_ns)
    seen = []

    def after_chunk(n):
        seen.append(progress.get())

    r = ingest_file(conn, s3, u.file_id, bucket=bucket, validator=validator, chunk_items=300,
                    after_chunk=after_chunk)
    assert (r.status, r.rows_read, r.rows_loaded, r.rows_rejected) == ("completed", 401, 400, 1)
    # while loading: the phase and growing counts, after each chunk
    assert [s["phase"] for s in seen] == ["loading"] * len(seen) and len(seen) == 5
    assert [int(s["chunks"]) for s in seen] == [1, 2, 3, 4, 5]
    assert [int(s["items_read"]) for s in seen] == [300, 600, 900, 1200, 1201]
    assert int(seen[0]["rows_loaded"]) == 100 and int(seen[-1]["rows_rejected"]) == 1
    assert seen[0]["file_id"] == u.file_id and seen[0]["store_id"] == store
    assert seen[0]["filename"] == "live.csv"
    # at the end: the outcome, as transaction_files and performance_metrics record it
    final = progress.get()
    assert final["phase"] == "completed" and final["file_id"] == u.file_id
    assert {k: int(final[k]) for k in ("rows_read", "rows_loaded", "rows_rejected",
                                       "items_read", "bytes")} == \
        {"rows_read": 401, "rows_loaded": 400, "rows_rejected": 1, "items_read": 1201,
         "bytes": u.file_size}
    assert final["error_message"].startswith("1 of 401 transactions rejected")
    assert final["s3_key"] == f"processed/{store}/{u.file_id}_live.csv"
    assert 0 < redis_conn.ttl(progress.key) <= PROGRESS_TTL_S


def test_failed_file_phase(conn, s3, bucket, put, validator, redis_conn, redis_ns):
    u = put("empty.csv", "")
    r = ingest_file(conn, s3, u.file_id, bucket=bucket, validator=validator)
    final = ingest_progress(redis_conn, u.file_id, ns=redis_ns).get()
    assert r.status == "failed"
    assert (final["phase"], final["error_message"]) == ("failed", "empty.csv: the file is empty")


def test_redis_down_does_not_fail_ingestion(conn, s3, bucket, put, validator, monkeypatch, caplog):
    dead = {**json.loads(os.environ["AIRFLOW_CONN_PLATFORM_REDIS"]), "port": 9}   # closed port
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_REDIS", json.dumps(dead))
    u = put("noredis.csv", good_csv(200))
    with caplog.at_level(logging.WARNING, logger="include.search.live"):
        r = ingest_file(conn, s3, u.file_id, bucket=bucket, validator=validator, chunk_items=100)
    assert (r.status, r.rows_loaded) == ("completed", 200)
    warnings = [m for m in caplog.messages if "Redis is unavailable" in m]
    assert len(warnings) == 1 and f"progress:ingest:{u.file_id}" in warnings[0]
    n = conn.execute("SELECT count(*) FROM transactions WHERE file_id = %s",
                     (u.file_id,)).fetchone()[0]
    assert n == 200


def test_no_progress_for_a_file_with_nothing_to_do(conn, s3, bucket, put, validator, redis_conn,
                                                   redis_ns):
    u = put("again.csv", H + "A1,2024-01-01,tea,1,2\n")
    assert ingest_file(conn, s3, u.file_id, bucket=bucket, validator=validator).status == \
        "completed"
    key = ingest_progress(redis_conn, u.file_id, ns=redis_ns).key
    redis_conn.delete(key)
    r = ingest_file(conn, s3, u.file_id, bucket=bucket, validator=validator)
    assert r.status == "skipped" and not redis_conn.exists(key)
