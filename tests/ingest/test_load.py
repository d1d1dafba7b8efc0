"""Upload -> validate -> load against the real services (PostgreSQL, moto S3)."""
from __future__ import annotations

import io
import json
import multiprocessing
import threading
from decimal import Decimal

import psycopg
import pytest

from include.ingest.formats import read_transactions
from include.ingest.load import ingest_file
from include.ingest.upload import UploadError, discover_files, find_file, pending_files, upload_files
from tests.ingest.conftest import H


def good_csv(n_tx: int, *, prefix: str = "T", items: int = 3) -> str:
    lines = [H]
    for t in range(n_tx):
        for k in range(items):
            lines.append(f"{prefix}{t},2024-05-{1 + t % 28:02d}T{t % 24:02d}:15:00,item {k},"
                         f"{k + 1},{(t % 7) + k}.25\n")
    return "".join(lines)


def ingest(conn, s3, bucket, file_id, validator, **kw):
    return ingest_file(conn, s3, file_id, bucket=bucket, validator=validator, **kw)


def file_row(conn, file_id) -> dict:
    cur = conn.execute("""SELECT processing_status, error_message, s3_key, content_sha256,
                                 duplicate_of, file_size, file_type, filename
                            FROM transaction_files WHERE id = %s""", (file_id,))
    row = dict(zip([d.name for d in cur.description], cur.fetchone()))
    conn.rollback()
    return row


def loaded(conn, file_id) -> list[tuple]:
    rows = conn.execute("""SELECT transaction_date, items, quantities, unit_utilities, total_utility
                             FROM transactions WHERE file_id = %s
                            ORDER BY transaction_date, items""", (file_id,)).fetchall()
    conn.rollback()
    return rows


def keys(s3, bucket, store) -> list[str]:
    out = []
    for area in ("incoming", "processed", "failed", "rejected"):
        resp = s3.list_objects_v2(Bucket=bucket, Prefix=f"{area}/{store}/")
        out += [o["Key"] for o in resp.get("Contents", [])]
    return sorted(out)


def text(s3, bucket, key) -> str:
    return s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")


def observed(conn, file_id) -> tuple[dict, list[str]]:
    metrics = dict(conn.execute(
        "SELECT metric_name, metric_value FROM performance_metrics "
        "WHERE metric_type = 'ingestion' AND metadata->>'file_id' = %s", (str(file_id),)).fetchall())
    actions = [r[0] for r in conn.execute(
        "SELECT action_type FROM activity_logs WHERE resource_id = %s ORDER BY created_at",
        (file_id,)).fetchall()]
    conn.rollback()
    return metrics, actions


# ----------------------------------------------------------------------------------- good files
def test_good_csv_end_to_end(conn, s3, bucket, store, put, validator):
    u = put("day1.csv", H + "T1,2024-05-01T10:00:00,milk,2,1.50\n"
            'T1,2024-05-01T10:00:00,"bread, rye",1,2\nT1,2024-05-01T10:00:00,milk,1,1.5\n'
            "T2,2024-05-01T12:00:00+02:00,tab\\back\"q,0.5,0.333\n")
    assert file_row(conn, u.file_id)["processing_status"] == "pending"
    assert u.s3_key == f"incoming/{store}/{u.file_id}_day1.csv"
    r = ingest(conn, s3, bucket, u.file_id, validator)
    assert (r.status, r.rows_read, r.rows_loaded, r.rows_rejected) == ("completed", 2, 2, 0)
    rows = loaded(conn, u.file_id)
    assert [(x[1], x[2], x[3], x[4]) for x in rows] == [      # same instant: by items
        (["milk", "bread, rye"], [Decimal("3"), Decimal("1")], [Decimal("1.50"), Decimal("2")],
         Decimal("6.50")),
        (["tab\\back\"q"], [Decimal("0.5")], [Decimal("0.333")], Decimal("0.1665")),
    ]
    f = file_row(conn, u.file_id)
    assert f["processing_status"] == "completed" and f["error_message"] is None
    assert f["s3_key"] == f"processed/{store}/{u.file_id}_day1.csv"
    assert f["content_sha256"] == u.content_sha256
    assert keys(s3, bucket, store) == [f["s3_key"]]
    metrics, actions = observed(conn, u.file_id)
    assert metrics["rows_read"] == 2 and metrics["rows_loaded"] == 2
    assert metrics["rows_rejected"] == 0 and metrics["bytes"] == u.file_size
    assert "seconds" in metrics
    assert actions == ["transaction_file_ingested"]


@pytest.mark.parametrize("shape", ["array", "lines"])
def test_good_json_end_to_end(conn, s3, bucket, store, put, validator, shape):
    recs = [{"transaction_id": f"J{i}", "transaction_date": f"2024-05-0{i + 1}T08:00:00Z",
             "items": ["apple", "pear"], "quantities": [1, 2.5],
             "unit_utilities": [0.1, 0.2]} for i in range(3)]
    body = json.dumps(recs) if shape == "array" else "".join(json.dumps(x) + "\n" for x in recs)
    u = put(f"day.{'json' if shape == 'array' else 'jsonl'}", body)
    r = ingest(conn, s3, bucket, u.file_id, validator)
    assert (r.status, r.rows_loaded) == ("completed", 3)
    rows = loaded(conn, u.file_id)
    assert [x[4] for x in rows] == [Decimal("0.60")] * 3
    assert rows[0][2] == [Decimal("1"), Decimal("2.5")]


def test_header_only_completes_with_nothing_loaded(conn, s3, bucket, store, put, validator):
    u = put("empty_day.csv", H)
    r = ingest(conn, s3, bucket, u.file_id, validator)
    assert (r.status, r.rows_read, r.rows_loaded, r.error_message) == ("completed", 0, 0, None)


# ----------------------------------------------------------------------------------- row level
def test_rejected_rows_are_reported_and_the_rest_loaded(conn, s3, bucket, store, put, validator):
    body = good_csv(40) + "X1,2024-05-01,milk,-1,1\nX2,2024-05-01, ,1,1\n"
    u = put("some_bad.csv", body)
    r = ingest(conn, s3, bucket, u.file_id, validator)
    assert (r.status, r.rows_read, r.rows_loaded, r.rows_rejected) == ("completed", 42, 40, 2)
    rk = f"rejected/{store}/{u.file_id}_some_bad.csv.csv"
    assert r.rejects_key == rk
    assert text(s3, bucket, rk) == (
        "line,transaction_id,field,message\r\n"
        "122,X1,quantity,\"quantity must be greater than 0, found -1\"\r\n"
        "123,X2,item,item is empty\r\n")
    assert file_row(conn, u.file_id)["error_message"] == (
        "2 of 42 transactions rejected (4.76%); first: line 122, quantity: quantity must be "
        f"greater than 0, found -1 (all reasons: s3://{bucket}/{rk})")
    assert len(loaded(conn, u.file_id)) == 40


@pytest.mark.parametrize("row,field,message", [
    ("X,2024-05-01,milk,0,1", "quantity", "quantity must be greater than 0, found 0"),
    ("X,2024-05-01,milk,1,-2.5", "unit_utility", "unit_utility must not be negative, found -2.5"),
    ("X,2024-05-01,\t,1,1", "item", "item is empty"),
    ("X,2024-05-01,milk,1,1\nX,2024-05-01,milk,1,2", "unit_utility",
     "item 'milk' is repeated with unit_utility 2, but line 11 has 1"),
    ("X,2024-05-01,milk,1.2.3,1", "quantity", "quantity is not a decimal number: '1.2.3'"),
    ("X,2024-05-32,milk,1,1", "transaction_date",
     "transaction_date is not an ISO 8601 date-time: '2024-05-32'"),
])
def test_each_row_rule_fails_the_file_above_the_share(conn, s3, bucket, store, put, validator,
                                                      row, field, message):
    u = put("bad.csv", good_csv(3) + row + "\n")        # 1 of 4 rejected: 25 % > 5 %
    r = ingest(conn, s3, bucket, u.file_id, validator)
    assert r.status == "failed"
    line = 11 if "repeated" not in message else 12
    expected = (f"1 of 4 transactions rejected (25.00%), more than the allowed 5%: nothing "
                f"loaded; first: line {line}, {field}: {message}")
    f = file_row(conn, u.file_id)
    assert (f["processing_status"], f["error_message"]) == ("failed", expected)
    assert loaded(conn, u.file_id) == []
    assert f["s3_key"] == f"failed/{store}/{u.file_id}_bad.csv"
    assert keys(s3, bucket, store) == sorted([f["s3_key"],
                                              f"rejected/{store}/{u.file_id}_bad.csv.csv"])
    _metrics, actions = observed(conn, u.file_id)
    assert actions == ["transaction_file_failed"]


def test_too_many_items_json(conn, s3, bucket, store, put, validator):
    n = 10_001
    rec = {"transaction_id": "BIG", "transaction_date": "2024-05-01", "items": [f"i{k}" for k in range(n)],
           "quantities": [1] * n, "unit_utilities": [1] * n}
    u = put("big.jsonl", json.dumps(rec) + "\n")
    r = ingest(conn, s3, bucket, u.file_id, validator, max_reject_share=1.0)
    assert (r.status, r.rows_rejected, r.rows_loaded) == ("completed", 1, 0)
    assert file_row(conn, u.file_id)["error_message"].startswith(
        "1 of 1 transactions rejected (100.00%); first: line 1, items: the transaction has 10001 "
        "items, at most 10000 are allowed")


def test_share_is_configurable(conn, s3, bucket, store, put, validator):
    u = put("bad.csv", good_csv(3) + "X,2024-05-01,milk,0,1\n")
    r = ingest(conn, s3, bucket, u.file_id, validator, max_reject_share=0.25)
    assert (r.status, r.rows_loaded, r.rows_rejected) == ("completed", 3, 1)


# ----------------------------------------------------------------------------------- file level
@pytest.mark.parametrize("name,content,message", [
    ("empty.csv", b"", "empty.csv: the file is empty"),
    ("latin1.csv", (H + "T1,2024-05-01,caf\u00e9,1,1\n").encode("latin-1"),
     "latin1.csv, line 2: not valid UTF-8: byte 0xe9 at column 18 (save the file as UTF-8)"),
    ("header.csv", b"id;date;item;qty;price\n",
     "header.csv, line 1, header: expected "
     "'transaction_id,transaction_date,item,quantity,unit_utility', found 'id;date;item;qty;price'"),
    ("truncated.csv", (H + "T1,2024-05-01,milk,1,1\nT2,2024-05-01,br").encode(),
     "truncated.csv, line 3: the last line has 3 of 5 fields and no line end (truncated file?)"),
    ("truncated.json", b'[{"transaction_id": "T1", "transaction_date": "2024-05-01", "items": ["a"], '
                       b'"quantities": [1], "unit_utilities": [1]}, {"transaction_id": "T2", "tr',
     "truncated.json, line 1: invalid JSON at column 145: Unterminated string (truncated file?)"),
    ("csv_as.json", H.encode(),
     "csv_as.json, line 1: the content is not JSON (it looks like CSV), but file_type is 'json'"),
    ("json_as.csv", b'[{"transaction_id": "T1"}]',
     "json_as.csv, line 1, header: the content is JSON, but file_type is 'csv'"),
])
def test_file_level_failures(conn, s3, bucket, store, put, validator, name, content, message):
    u = put(name, content)
    r = ingest(conn, s3, bucket, u.file_id, validator)
    f = file_row(conn, u.file_id)
    assert (r.status, f["processing_status"], f["error_message"]) == ("failed", "failed", message)
    assert loaded(conn, u.file_id) == []
    assert keys(s3, bucket, store) == [f"failed/{store}/{u.file_id}_{name}"]
    metrics, actions = observed(conn, u.file_id)
    assert actions == ["transaction_file_failed"] and metrics["rows_loaded"] == 0


def test_bad_bytes_deep_in_a_large_file_fail_it_after_copy_started(conn, s3, bucket, store, put,
                                                                    validator):
    body = good_csv(30_000).encode() + b"Z1,2024-05-01,caf\xe9,1,1\n"     # past the 64 KiB head
    u = put("late_bad_byte.csv", body)
    r = ingest(conn, s3, bucket, u.file_id, validator, chunk_items=10_000)
    assert r.status == "failed"
    assert r.error_message == ("late_bad_byte.csv, line 90002: not valid UTF-8: byte 0xe9 at "
                               "column 18 (save the file as UTF-8)")
    assert loaded(conn, u.file_id) == []


def test_inactive_store_is_not_known(conn, s3, bucket, store, put, validator):
    u = put("day.csv", good_csv(2))
    conn.execute("UPDATE stores SET is_active = false WHERE id = %s", (store,))
    conn.commit()
    r = ingest(conn, s3, bucket, u.file_id, validator)
    assert (r.status, r.error_message) == (
        "failed", f"day.csv, store_id: store {store} is not a known active store")
    with pytest.raises(UploadError, match=f"store {store} is not a known active store"):
        put("again.csv", good_csv(2))


# ----------------------------------------------------------------------------------- duplicates
def test_duplicate_upload_is_loaded_once(conn, s3, bucket, store, put, validator):
    body = good_csv(5)
    first = put("monday.csv", body)
    second = put("monday_again.csv", body)
    assert second.duplicate_of == first.file_id            # reported at upload
    r1 = ingest(conn, s3, bucket, first.file_id, validator)
    r2 = ingest(conn, s3, bucket, second.file_id, validator)
    assert (r1.status, r1.rows_loaded) == ("completed", 5)
    assert (r2.status, r2.rows_loaded, r2.duplicate_of) == ("duplicate", 0, first.file_id)
    f2 = file_row(conn, second.file_id)
    assert f2["processing_status"] == "completed"
    assert str(f2["duplicate_of"]) == first.file_id
    assert f2["error_message"] == (f"duplicate: the same content (sha256 {first.content_sha256}) "
                                   f"was loaded from file {first.file_id}; nothing loaded")
    n = conn.execute("SELECT count(*) FROM transactions WHERE store_id = %s", (store,)).fetchone()[0]
    assert n == 5
    assert observed(conn, second.file_id)[1] == ["transaction_file_duplicate"]
    # a processed file is not processed again
    r3 = ingest(conn, s3, bucket, first.file_id, validator)
    assert r3.status == "skipped"


def test_dropped_files_are_discovered_and_registered_once(conn, s3, bucket, store, validator):
    key = f"incoming/{store}/dropped.csv"
    s3.put_object(Bucket=bucket, Key=key, Body=good_csv(4).encode())
    s3.put_object(Bucket=bucket, Key=f"incoming/{store}/notes.txt", Body=b"hello")
    new = discover_files(conn, s3, bucket=bucket)
    mine = [f for f in new if file_row(conn, f)["s3_key"] == key]
    assert len(mine) == 1
    assert discover_files(conn, s3, bucket=bucket) == []     # idempotent
    assert mine[0] in pending_files(conn)
    assert find_file(conn, key, bucket=bucket) == mine[0]
    assert find_file(conn, f"s3://{bucket}/{key}") == mine[0]
    r = ingest(conn, s3, bucket, mine[0], validator)
    assert (r.status, r.rows_loaded, r.s3_key) == (
        "completed", 4, f"processed/{store}/{mine[0]}_dropped.csv")
    assert file_row(conn, mine[0])["content_sha256"] == r.content_sha256
    assert f"failed/{store}/notes.txt" in keys(s3, bucket, store)


# ----------------------------------------------------------------------------------- crash + retry
def _crashing_load(dsn, s3_settings, bucket, file_id, workdir):
    import os

    import boto3

    from include.ingest.validate import ContractValidator

    def crash(chunk: int) -> None:
        if chunk == 2:
            os._exit(17)                       # the process dies between two COPY chunks

    s3 = boto3.client("s3", **s3_settings)
    with psycopg.connect(dsn) as conn:
        ingest_file(conn, s3, file_id, bucket=bucket, validator=ContractValidator(),
                    chunk_items=300, after_chunk=crash, workdir=workdir)


def test_crash_between_copy_chunks_then_retry(conn, ingest_dsn, s3_settings, s3, bucket, store,
                                              put, validator, tmp_path):
    body = good_csv(1_000)                                   # 3,000 items: 10 chunks of 300
    u = put("crashy.csv", body)
    p = multiprocessing.get_context("spawn").Process(
        target=_crashing_load, args=(ingest_dsn, s3_settings, bucket, u.file_id, str(tmp_path)))
    p.start()
    p.join(300)
    assert p.exitcode == 17
    assert file_row(conn, u.file_id)["processing_status"] == "processing"
    assert loaded(conn, u.file_id) == []                     # nothing of the two chunks stayed
    r = ingest(conn, s3, bucket, u.file_id, validator, chunk_items=300)   # the retry
    assert (r.status, r.rows_loaded) == ("completed", 1_000)
    expected = sorted((t.transaction_date, list(t.items), list(t.quantities),
                       list(t.unit_utilities), t.total_utility)
                      for t in read_transactions(io.BytesIO(body.encode()), "csv"))
    got = sorted(conn.execute("SELECT transaction_date, items, quantities, unit_utilities, "
                              "total_utility FROM transactions WHERE store_id = %s",
                              (store,)).fetchall())
    conn.rollback()
    assert got == expected                                   # no duplicates, no losses
    assert keys(s3, bucket, store) == [f"processed/{store}/{u.file_id}_crashy.csv"]


# ----------------------------------------------------------------------------------- concurrency
def test_concurrent_ingestion_of_two_stores(conn, ingest_dsn, s3, bucket, put, validator):
    stores = []
    for _ in range(2):
        stores.append(str(conn.execute("INSERT INTO stores (name) VALUES ('c') RETURNING id")
                          .fetchone()[0]))
    conn.commit()
    uploads = [put(f"s{i}.csv", good_csv(2_000, prefix=f"S{i}-"), store_id=s)
               for i, s in enumerate(stores)]
    # the same content uploaded twice for store 0, processed concurrently too
    uploads.append(put("s0_copy.csv", good_csv(2_000, prefix="S0-"), store_id=stores[0]))
    results, errors = {}, []

    def run(u):
        try:
            with psycopg.connect(ingest_dsn) as c:
                results[u.file_id] = ingest_file(c, s3, u.file_id, bucket=bucket,
                                                 validator=validator, chunk_items=1_000)
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(u,)) for u in uploads]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert errors == []
    statuses = sorted(r.status for r in results.values())
    assert statuses == ["completed", "completed", "duplicate"]
    for s in stores:
        n = conn.execute("SELECT count(*) FROM transactions WHERE store_id = %s", (s,)).fetchone()[0]
        assert n == 2_000
    conn.rollback()


def test_upload_refuses_unknown_type_and_store(conn, s3, bucket, tmp_path, store):
    p = tmp_path / "x.txt"
    p.write_text(H)
    with pytest.raises(UploadError, match="cannot tell the file type"):
        upload_files(conn, s3, store, [p], bucket=bucket)
    with pytest.raises(UploadError, match="is not a known active store"):
        upload_files(conn, s3, "00000000-0000-0000-0000-000000000000", [p], bucket=bucket,
                     file_type="csv")


def test_missing_object_fails_the_file(conn, s3, bucket, store, put, validator):
    u = put("gone.csv", good_csv(1))
    s3.delete_object(Bucket=bucket, Key=u.s3_key)
    r = ingest(conn, s3, bucket, u.file_id, validator)
    assert (r.status, r.error_message) == (
        "failed", f"gone.csv: the object s3://{bucket}/{u.s3_key} does not exist")
    assert file_row(conn, u.file_id)["processing_status"] == "failed"


def test_cli_upload_then_ingest(ingest_dsn, conn, s3, bucket, store, tmp_path, monkeypatch, capsys):
    from include.ingest.__main__ import main

    info = psycopg.conninfo.conninfo_to_dict(ingest_dsn)
    monkeypatch.setenv("AIRFLOW_CONN_PLATFORM_POSTGRES", json.dumps({
        "conn_type": "postgres", "host": info["host"], "port": int(info.get("port") or 5432),
        "login": info["user"], "password": info.get("password"), "schema": info["dbname"]}))
    monkeypatch.setenv("AIRFLOW_VAR_PLATFORM_BUCKET", bucket)
    p = tmp_path / "cli.csv"
    p.write_text(good_csv(3))
    assert main(["upload", "--store", store, "--json", str(p)]) == 0
    up = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert up["s3_key"] == f"incoming/{store}/{up['file_id']}_cli.csv"
    assert main(["ingest", up["s3_key"]]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (res["status"], res["rows_loaded"]) == ("completed", 3)
    assert main(["upload", "--store", store, str(p)]) == 0
    assert "DUPLICATE of " + up["file_id"] in capsys.readouterr().out
    for o in s3.list_objects_v2(Bucket=bucket, Prefix=f"incoming/{store}/").get("Contents", []):
        s3.delete_object(Bucket=bucket, Key=o["Key"])
