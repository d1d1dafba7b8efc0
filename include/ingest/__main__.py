"""Command line of transaction file ingestion (outside Airflow; settings from ``.local/env.sh``).

    python -m include.ingest upload --store STORE_ID FILE...      # put into incoming/, register
    python -m include.ingest discover                             # register files dropped into incoming/
    python -m include.ingest ingest [--pending | FILE_ID...]      # what the DAG does per file
    python -m include.ingest recover [--stuck-after-minutes M] [--max-attempts N]  # stuck files
    python -m include.ingest check --type csv|json FILE...        # parse + rules locally, no services

Exit codes: 0 success, 1 a file failed (or was rejected at upload), 2 usage or service error.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys


def _connect():
    import psycopg

    from include.connections import postgres_dsn

    return psycopg.connect(postgres_dsn(), application_name="ingest_cli")


def _bucket() -> str:
    return os.environ.get("AIRFLOW_VAR_PLATFORM_BUCKET", "platform-data")


def cmd_upload(a) -> int:
    from include.ingest.upload import UploadError, s3_client, upload_files

    try:
        with _connect() as conn:
            res = upload_files(conn, s3_client(), a.store, a.files, bucket=_bucket(),
                               file_type=a.type)
    except (UploadError, ValueError) as e:
        print(f"upload: {e}", file=sys.stderr)
        return 1
    for u in res:
        print(json.dumps(u.__dict__) if a.json else
              f"{u.file_id}  s3://{u.s3_bucket}/{u.s3_key}  {u.file_size} bytes  {u.file_type}"
              + (f"  DUPLICATE of {u.duplicate_of} (recorded; will not be loaded again)"
                 if u.duplicate_of else "  pending"))
    return 0


def cmd_discover(a) -> int:
    from include.ingest.upload import discover_files, s3_client

    with _connect() as conn:
        for fid in discover_files(conn, s3_client(), bucket=_bucket()):
            print(fid)
    return 0


def cmd_ingest(a) -> int:
    from include.ingest.load import ingest_file
    from include.ingest.upload import discover_files, find_file, pending_files, s3_client
    from include.ingest.validate import ContractValidator

    s3 = s3_client()
    rc = 0
    with _connect() as conn:
        if a.pending:
            discover_files(conn, s3, bucket=_bucket())
            ids = pending_files(conn)
        else:
            ids = []
            for ref in a.files:
                fid = find_file(conn, ref, bucket=_bucket())
                if fid is None:
                    print(f"ingest: no registered file {ref!r}", file=sys.stderr)
                    return 2
                ids.append(fid)
        validator = ContractValidator() if ids else None
        for fid in ids:
            r = ingest_file(conn, s3, fid, bucket=_bucket(), validator=validator,
                            max_reject_share=a.max_reject_share, retry_failed=not a.pending)
            print(json.dumps(r.as_dict()))
            rc = rc or (1 if r.status == "failed" else 0)
    return rc


def cmd_recover(a) -> int:
    from datetime import timedelta

    from include.ingest.recover import recover_stuck_files
    from include.ingest.upload import s3_client

    with _connect() as conn:
        for rec in recover_stuck_files(conn, s3_client(), bucket=_bucket(),
                                       stuck_after=timedelta(minutes=a.stuck_after_minutes),
                                       max_attempts=a.max_attempts):
            print(json.dumps(rec.as_dict()))
    return 0


def cmd_check(a) -> int:
    from include.ingest.formats import FileError, RowError, read_transactions

    rc = 0
    for path in a.files:
        ok = bad = 0
        try:
            for rec in read_transactions(path, a.type):
                if isinstance(rec, RowError):
                    bad += 1
                    print(f"{path}, line {rec.line}, {rec.field}: {rec.message}")
                else:
                    ok += 1
        except FileError as e:
            print(str(e))
            rc = 1
            continue
        print(f"{path}: {ok} valid transactions, {bad} rejected")
        rc = rc or (1 if bad else 0)
    return rc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m include.ingest", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    u = sub.add_parser("upload", help="upload files of a store and register them (pending)")
    u.add_argument("--store", required=True, help="the store's id (UUID)")
    u.add_argument("--type", choices=("csv", "json"), help="default: from the extension")
    u.add_argument("--json", action="store_true", help="one JSON object per file")
    u.add_argument("files", nargs="+")
    sub.add_parser("discover", help="register files dropped into incoming/<store_id>/")
    i = sub.add_parser("ingest", help="process registered files now (as the DAG does)")
    g = i.add_mutually_exclusive_group(required=True)
    g.add_argument("--pending", action="store_true", help="discover, then all pending files")
    g.add_argument("files", nargs="*", default=[], help="file ids, keys or s3:// URIs")
    i.add_argument("--max-reject-share", type=float, default=0.05)
    rc = sub.add_parser("recover", help="files stuck in processing (dead loader): back to "
                                        "pending, or failed after --max-attempts")
    rc.add_argument("--stuck-after-minutes", type=float, default=30)
    rc.add_argument("--max-attempts", type=int, default=5)
    c = sub.add_parser("check", help="parse and check files locally (no services)")
    c.add_argument("--type", choices=("csv", "json"), required=True)
    c.add_argument("files", nargs="+")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return {"upload": cmd_upload, "discover": cmd_discover, "ingest": cmd_ingest,
            "recover": cmd_recover, "check": cmd_check}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
