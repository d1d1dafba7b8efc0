"""Uploads through the real api-server: a good file lands in S3 under incoming/<store_id>/ with a pending
row and an ingestion run; wrong type, oversized, path-traversal names and another store's upload are
refused with a clear error and nothing is stored (no object, no row)."""
from __future__ import annotations

import contextlib
import urllib.parse

import psycopg
import pytest

CSV = b"transaction_id,item,quantity,unit_utility\nt1,tea,1,2.5\nt2,cake,2,1.0\n"


def _stored(world, s3, bucket, store) -> tuple[int, int]:
    with psycopg.connect(world.dsn) as c:
        rows = c.execute("SELECT count(*) FROM transaction_files WHERE store_id = %s", (store,)).fetchone()[0]
    objects = s3.list_objects_v2(Bucket=bucket, Prefix=f"incoming/{store}/").get("KeyCount", 0)
    return rows, objects


@contextlib.contextmanager
def _max_upload_mb(world, value: str):
    with psycopg.connect(world.dsn) as c:
        old = c.execute("SELECT config_value FROM server_configs WHERE config_key = 'api_max_upload_mb'").fetchone()[0]
        c.execute("UPDATE server_configs SET config_value = %s WHERE config_key = 'api_max_upload_mb'", (value,))
    try:
        yield
    finally:
        with psycopg.connect(world.dsn) as c:
            c.execute("UPDATE server_configs SET config_value = %s WHERE config_key = 'api_max_upload_mb'", (old,))


def _upload(api, world, who, store, filename, body=CSV, content_type="text/csv", **kw):
    q = urllib.parse.urlencode({"filename": filename})
    return api.call("POST", f"/stores/{store}/files?{q}", api.token(world, who), data=body,
                    headers={"Content-Type": content_type}, **kw)


def test_upload_is_stored_registered_and_ingestion_started(api, world, s3, bucket):
    store = world.stores["a"]
    r = _upload(api, world, "sm_a", store, "monday.csv")
    assert r.status_code == 201, r.text
    out = r.json()
    assert out["s3_key"] == f"incoming/{store}/{out['file_id']}_monday.csv" and out["file_size"] == len(CSV)
    assert out["dag_run_id"].startswith("platform_api__"), out
    assert s3.get_object(Bucket=bucket, Key=out["s3_key"])["Body"].read() == CSV
    listed = api.call("GET", f"/stores/{store}/files?status=pending", api.token(world, "sm_a")).json()
    assert out["file_id"] in [f["id"] for f in listed]
    one = api.call("GET", f"/stores/{store}/files/{out['file_id']}", api.token(world, "sm_a")).json()
    assert (one["processing_status"], one["error_message"]) == ("pending", None)
    files = api.call("GET", f"/stores/{store}/files", api.token(world, "sm_a")).json()
    with_rejects = [f for f in files if f["id"] == str(world.files["a"])][0]
    r = api.call("GET", with_rejects["rejects_url"].removeprefix("/platform/v1"), api.token(world, "sm_a"))
    assert r.status_code == 200 and r.text.startswith("line,reason")


BAD = [
    # filename, body, content type, status, words of the message
    ("../escape.csv", CSV, "text/csv", 422, "plain file name"),
    ("sub/dir.csv", CSV, "text/csv", 422, "plain file name"),
    ("..\\win.csv", CSV, "text/csv", 422, "plain file name"),
    ("/etc/passwd.csv", CSV, "text/csv", 422, "plain file name"),
    (".hidden.csv", CSV, "text/csv", 422, "letters, digits"),
    ("nul\x00.csv", CSV, "text/csv", 422, "letters, digits"),
    ("tool.exe", CSV, "text/csv", 415, "'.exe'"),
    ("noext", CSV, "text/csv", 415, "(none)"),
    ("image.csv", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "text/csv", 415, "binary"),
    ("latin.csv", "caf\xe9,1\n".encode("latin-1") + b"x" * 100, "text/csv", 415, "not UTF-8"),
    ("rows.json", b"transaction_id,item\n", "application/json", 415, "must start with"),
    ("good.csv", CSV, "image/png", 415, "content type 'image/png'"),
    ("empty.csv", b"", "text/csv", 422, "empty"),
]


@pytest.mark.parametrize("filename,body,ctype,status,words", BAD, ids=[b[0].encode("unicode_escape").decode()
                                                                       for b in BAD])
def test_bad_uploads_are_refused_and_nothing_is_stored(api, world, s3, bucket, filename, body, ctype, status, words):
    store = world.stores["a"]
    before = _stored(world, s3, bucket, store)
    r = _upload(api, world, "sm_a", store, filename, body, ctype)
    assert r.status_code == status, r.text
    assert words in str(r.json()["detail"]), r.text
    assert _stored(world, s3, bucket, store) == before


def test_oversized_upload_is_refused_early_and_while_streaming(api, world, s3, bucket):
    store = world.stores["a"]
    before = _stored(world, s3, bucket, store)
    big = CSV + b"t3,bread,1,1.0\n" * 2000  # ~30 KB
    with _max_upload_mb(world, "0.01"):       # ~10 KB
        r = _upload(api, world, "sm_a", store, "big.csv", big)  # Content-Length says it
        assert r.status_code == 413 and "limit of 10485 bytes" in r.json()["detail"], r.text
        r = _upload(api, world, "sm_a", store, "big.csv", iter([big[i:i + 4096] for i in range(0, len(big), 4096)]))
        assert r.status_code == 413 and "larger than the limit" in r.json()["detail"], r.text  # chunked: no length
    assert _stored(world, s3, bucket, store) == before


def test_upload_for_another_store_is_refused(api, world, s3, bucket):
    other = world.stores["b"]
    before = _stored(world, s3, bucket, other)
    r = _upload(api, world, "sm_a", other, "theirs.csv")
    assert r.status_code == 403 and f"store {other} is not yours" in r.json()["detail"]
    r = _upload(api, world, "coord_r1", world.stores["a"], "coord.csv")
    assert r.status_code == 403 and "may not create Platform Files" in r.json()["detail"]
    assert _stored(world, s3, bucket, other) == before
