"""Files stuck in `processing` (their loader died) are recovered by `recover_stuck_files`, against
the real PostgreSQL and moto S3: a real crash, a live loader left alone, a claim too young, the
attempt limit, idempotence and the activity log."""
from __future__ import annotations

import multiprocessing
from datetime import timedelta

import psycopg
import pytest

from include.ingest.load import file_lock_key, ingest_file
from include.ingest.recover import recover_stuck_files
from tests.ingest.conftest import H
from tests.ingest.test_load import file_row, good_csv, keys, loaded

HOUR = timedelta(hours=1)


def _dying_loader(dsn, s3_settings, bucket, file_id, workdir):
    import os

    import boto3

    from include.ingest.validate import ContractValidator

    def die(n):
        if n == 1:
            os._exit(17)                        # the worker dies in the middle of the COPY

    with psycopg.connect(dsn) as conn:
        ingest_file(conn, boto3.client("s3", **s3_settings), file_id, bucket=bucket,
                    validator=ContractValidator(), chunk_items=300, after_chunk=die,
                    workdir=workdir, owner="dying worker")


def claim_state(conn, file_id) -> dict:
    cur = conn.execute("""SELECT processing_status, processing_attempts, processing_owner,
                                 processing_started_at, error_message, s3_key
                            FROM transaction_files WHERE id = %s""", (file_id,))
    row = dict(zip([d.name for d in cur.description], cur.fetchone()))
    conn.rollback()
    return row


def stuck(conn, file_id, *, attempts: int = 1, age: timedelta = 2 * HOUR) -> None:
    """The state a dead loader leaves: processing, claimed ``age`` ago, no lock held."""
    conn.execute("""UPDATE transaction_files SET processing_status = 'processing',
                           processing_started_at = now() - %s, processing_attempts = %s,
                           processing_owner = 'a worker that died'
                     WHERE id = %s""", (age, attempts, file_id))
    conn.commit()


def activity(conn, file_id) -> list[tuple]:
    rows = conn.execute("""SELECT action_type, action_description, additional_data
                             FROM activity_logs WHERE resource_id = %s ORDER BY created_at""",
                        (file_id,)).fetchall()
    conn.rollback()
    return rows


def mine(results, *file_ids) -> list:
    return [r for r in results if r.file_id in {str(f) for f in file_ids}]


def test_a_real_crash_is_reset_to_pending_then_loaded_once(conn, ingest_dsn, s3_settings, s3,
                                                           bucket, store, put, validator,
                                                           tmp_path, redis_conn, redis_ns):
    from include.search.live import ingest_progress

    u = put("dies.csv", good_csv(500))                    # 1,500 items: 5 chunks of 300
    p = multiprocessing.get_context("spawn").Process(
        target=_dying_loader, args=(ingest_dsn, s3_settings, bucket, u.file_id, str(tmp_path)))
    p.start()
    p.join(300)
    assert p.exitcode == 17
    st = claim_state(conn, u.file_id)
    assert (st["processing_status"], st["processing_attempts"], st["processing_owner"]) == \
        ("processing", 1, "dying worker")
    assert loaded(conn, u.file_id) == []
    progress = ingest_progress(redis_conn, u.file_id, ns=redis_ns)
    assert progress.get()["phase"] == "loading"               # what the dead loader left

    # a young claim is left alone, whatever its lock
    assert mine(recover_stuck_files(conn, s3, bucket=bucket, stuck_after=HOUR), u.file_id) == []
    conn.execute("UPDATE transaction_files SET processing_started_at = now() - interval '2 hours' "
                 "WHERE id = %s", (u.file_id,))
    conn.commit()
    (rec,) = mine(recover_stuck_files(conn, s3, bucket=bucket, stuck_after=HOUR,
                                      max_attempts=3), u.file_id)
    assert (rec.action, rec.attempts, rec.owner) == ("pending", 1, "dying worker")
    st = claim_state(conn, u.file_id)
    assert st["processing_status"] == "pending"
    assert st["error_message"].startswith(
        "dies.csv: processing was interrupted (attempt 1 of 3, claimed at ")
    assert st["error_message"].endswith(" by dying worker, the loader is gone); reset to pending "
                                        "and processed again by the next run")
    assert progress.get()["phase"] == "pending"
    (act,) = activity(conn, u.file_id)
    assert act[0] == "transaction_file_recovered" and act[1] == st["error_message"]
    assert act[2]["action"] == "pending" and act[2]["max_attempts"] == 3

    # idempotent: nothing more to do
    assert mine(recover_stuck_files(conn, s3, bucket=bucket, stuck_after=HOUR), u.file_id) == []
    assert len(activity(conn, u.file_id)) == 1

    r = ingest_file(conn, s3, u.file_id, bucket=bucket, validator=validator, owner="next run")
    assert (r.status, r.rows_loaded) == ("completed", 500)
    st = claim_state(conn, u.file_id)
    assert (st["processing_status"], st["processing_attempts"], st["error_message"]) == \
        ("completed", 2, None)
    assert len(loaded(conn, u.file_id)) == 500                # loaded once
    assert keys(s3, bucket, store) == [f"processed/{store}/{u.file_id}_dies.csv"]


def test_a_live_loader_is_left_alone(conn, ingest_dsn, s3, bucket, put):
    u = put("busy.csv", H + "B1,2024-01-01,tea,1,2\n")
    stuck(conn, u.file_id)
    with psycopg.connect(ingest_dsn) as loader:               # holds the claim lock: alive
        loader.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))",
                       (file_lock_key(u.file_id),))
        loader.commit()
        (rec,) = mine(recover_stuck_files(conn, s3, bucket=bucket, stuck_after=HOUR), u.file_id)
        assert rec.action == "alive"
        assert claim_state(conn, u.file_id)["processing_status"] == "processing"
    # the loader's connection is gone (its lock with it): now it is stuck
    (rec,) = mine(recover_stuck_files(conn, s3, bucket=bucket, stuck_after=HOUR), u.file_id)
    assert rec.action == "pending"


def test_too_many_attempts_fail_the_file_with_a_clear_message(conn, s3, bucket, store, put,
                                                               validator):
    u = put("oom.csv", H + "O1,2024-01-01,tea,1,2\n")
    stuck(conn, u.file_id, attempts=5)
    (rec,) = mine(recover_stuck_files(conn, s3, bucket=bucket, stuck_after=HOUR, max_attempts=5),
                  u.file_id)
    assert rec.action == "failed"
    st = claim_state(conn, u.file_id)
    assert st["processing_status"] == "failed"
    msg = st["error_message"]
    assert msg.startswith("oom.csv: processing was interrupted 5 times (last claimed at ")
    assert msg.endswith(f" by a worker that died, the loader is gone) - not retried automatically "
                        f"after 5 attempts; nothing was loaded. Check the task logs (memory, "
                        f"worker restarts), then trigger ingest_transaction_files with param "
                        f"file={u.file_id} to try again")
    assert st["s3_key"] == f"failed/{store}/{u.file_id}_oom.csv"
    assert keys(s3, bucket, store) == [st["s3_key"]]
    (act,) = activity(conn, u.file_id)
    assert (act[0], act[1], act[2]["action"], act[2]["attempts"]) == \
        ("transaction_file_failed", msg, "failed", 5)
    assert mine(recover_stuck_files(conn, s3, bucket=bucket, stuck_after=HOUR), u.file_id) == []

    # a retry by hand (the DAG's param file) starts counting again and loads it
    r = ingest_file(conn, s3, u.file_id, bucket=bucket, validator=validator, retry_failed=True)
    assert (r.status, r.rows_loaded) == ("completed", 1)
    assert claim_state(conn, u.file_id)["processing_attempts"] == 1


def test_a_file_that_finished_meanwhile_is_not_touched(conn, s3, bucket, put, validator):
    u = put("done.csv", H + "D1,2024-01-01,tea,1,2\n")
    assert ingest_file(conn, s3, u.file_id, bucket=bucket, validator=validator).status == \
        "completed"
    assert mine(recover_stuck_files(conn, s3, bucket=bucket, stuck_after=timedelta(0)),
                u.file_id) == []
    assert claim_state(conn, u.file_id)["processing_status"] == "completed"


def test_a_second_loader_of_the_same_file_waits_for_the_first(conn, ingest_dsn, s3, bucket, put,
                                                              validator):
    u = put("twice.csv", H + "W1,2024-01-01,tea,1,2\n")
    with psycopg.connect(ingest_dsn) as other:                 # another live loader
        other.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))",
                      (file_lock_key(u.file_id),))
        other.commit()
        r = ingest_file(conn, s3, u.file_id, bucket=bucket, validator=validator, claim_wait_s=1)
        assert r.status == "skipped"
        assert r.error_message == (f"file {u.file_id} is being processed by another loader (its "
                                   "claim lock was held for 1 s): nothing to do")
    assert file_row(conn, u.file_id)["processing_status"] == "pending"


def test_max_attempts_must_be_positive(conn, s3, bucket):
    with pytest.raises(ValueError, match="max_attempts must be at least 1, not 0"):
        recover_stuck_files(conn, s3, bucket=bucket, max_attempts=0)
