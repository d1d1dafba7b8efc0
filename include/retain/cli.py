"""``python -m include.retain``: retention runs, archive restores and pgBackRest backups from a shell.

    python -m include.retain plan [--as-of D]                         what a run would archive/remove
    python -m include.retain run [--as-of D] [--dry-run]              apply the retention rules
    python -m include.retain restore-archive --table transactions --store S --from D1 --to D2 [--staging]
    python -m include.retain backup --repo 1 --type full|incr|diff    one pgBackRest backup
    python -m include.retain info [--repo N]                          pgbackrest info (JSON)
    python -m include.retain expire [--repo N]
    python -m include.retain check-freshness [--repo 1] [--max-age-hours 26]
    python -m include.retain restore-point [--label L]                record counts at "now" for a drill
    python -m include.retain restore-drill [--repo N] [--repo-only] [--point ID | --target TS] [--keep]

Settings: connections platform_postgres, platform_s3 (+ variable platform_bucket) and platform_backup
from the environment (``source .local/env.sh``). Output: one JSON document on stdout; logs on stderr.
Exit codes: 0 ok, 1 a check failed (backup too old, drill mismatch), 2 bad arguments or an error.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from datetime import datetime, time, timedelta, timezone

from include.retain.policy import parse_as_of


def s3_store():
    import boto3

    from include.connections import S3, get_connection
    from include.retain.archive import S3Store

    c = get_connection(S3)
    client = boto3.client("s3", endpoint_url=c.extra.get("endpoint_url"), region_name=c.extra.get("region_name"),
                          aws_access_key_id=c.login, aws_secret_access_key=c.password, verify=c.extra.get("verify"))
    return S3Store(client, os.environ.get("AIRFLOW_VAR_PLATFORM_BUCKET", "platform-data"))


def _day(s: str, name: str) -> datetime:
    try:
        if len(s) == 10:
            return datetime.combine(datetime.fromisoformat(s).date(), time(0), tzinfo=timezone.utc)
        d = datetime.fromisoformat(s)
        return d if d.tzinfo else d.replace(tzinfo=timezone.utc)
    except ValueError:
        raise SystemExit(f"{name} must be a date YYYY-MM-DD or an ISO timestamp, got {s!r}") from None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m include.retain", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("plan", "run"):
        sp = sub.add_parser(name)
        sp.add_argument("--as-of", default=None, help="date YYYY-MM-DD (default: today, UTC)")
        if name == "run":
            sp.add_argument("--dry-run", action="store_true")
    sp = sub.add_parser("restore-archive", help="bring archived rows back (exact)")
    sp.add_argument("--table", required=True, choices=["transactions", "activity_logs"])
    sp.add_argument("--store", required=True, help="store_id (UUID), 'none' for rows without a store, '*' for all")
    sp.add_argument("--from", dest="start", required=True, help="first day (inclusive) YYYY-MM-DD or timestamp")
    sp.add_argument("--to", dest="end", required=True, help="last day (inclusive) YYYY-MM-DD, or an exclusive timestamp")
    sp.add_argument("--staging", action="store_true", help="into retain_staging.<table>_... instead of the table")
    sp = sub.add_parser("backup")
    sp.add_argument("--repo", type=int, default=1, choices=[1, 2])
    sp.add_argument("--type", default="incr", choices=["full", "incr", "diff"])
    sp.add_argument("--annotation", action="append", default=[], help="key=value (repeatable)")
    for name in ("info", "expire"):
        sp = sub.add_parser(name)
        sp.add_argument("--repo", type=int, choices=[1, 2])
    sp = sub.add_parser("check-freshness")
    sp.add_argument("--repo", type=int, default=1, choices=[1, 2])
    sp.add_argument("--max-age-hours", type=float, default=26)
    sp = sub.add_parser("restore-point")
    sp.add_argument("--label", default="manual")
    sp = sub.add_parser("restore-drill")
    sp.add_argument("--repo", type=int, default=1, choices=[1, 2])
    sp.add_argument("--repo-only", action="store_true", help="use a configuration that knows only --repo")
    sp.add_argument("--point", help="id of a backup_restore_points row (default: record one now)")
    sp.add_argument("--target", help="use the newest restore point at or before this timestamp")
    sp.add_argument("--keep", action="store_true", help="leave the scratch cluster's directory for inspection")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stderr)

    from include.connections import postgres_dsn
    from include.retain import drill as dr
    from include.retain import pgbackrest as pb

    try:
        if args.cmd in ("plan", "run"):
            from include.retain.run import plan, run

            as_of = parse_as_of(args.as_of)
            rep = plan(postgres_dsn(), as_of) if args.cmd == "plan" or args.dry_run else \
                run(postgres_dsn(), s3_store(), as_of)
            out = rep.as_dict()
        elif args.cmd == "restore-archive":
            from include.retain.archive import restore_archive

            start = _day(args.start, "--from")
            end = _day(args.end, "--to")
            if len(args.end) == 10:
                end += timedelta(days=1)
            store = None if args.store == "none" else args.store
            out = restore_archive(postgres_dsn(), s3_store(), args.table, store, start, end,
                                  staging=args.staging).as_dict()
        elif args.cmd == "restore-point":
            out = dr.record_restore_point(postgres_dsn(), label=args.label).__dict__
        else:
            pgbr = pb.PgBackRest(pb.BackupSettings.from_env())
            if args.cmd == "backup":
                ann = dict(a.split("=", 1) for a in args.annotation)
                out = pb.backup_summary(pgbr.backup(args.repo, args.type, ann))
            elif args.cmd == "info":
                out = pgbr.info(args.repo)
            elif args.cmd == "expire":
                out = {"output": pgbr.expire(args.repo)}
            elif args.cmd == "check-freshness":
                try:
                    out = pb.check_freshness(pgbr.info(args.repo), repo=args.repo,
                                             max_age=timedelta(hours=args.max_age_hours))
                except pb.BackupTooOld as e:
                    print(f"ERROR: {e}", file=sys.stderr)
                    return 1
            else:  # restore-drill
                dsn = postgres_dsn()
                if args.point or args.target:
                    point = dr.get_restore_point(dsn, args.point,
                                                 at_or_before=_day(args.target, "--target") if args.target else None)
                else:
                    point = dr.record_restore_point(dsn, label="restore-drill")
                    pgbr.check()  # the WAL holding the target is in the repositories
                try:
                    out = dr.restore_drill(pgbr, point, repo=args.repo, repo_only=args.repo_only,
                                           keep=args.keep).as_dict()
                except dr.DrillFailed as e:
                    print(f"ERROR: {e}", file=sys.stderr)
                    return 1
        print(json.dumps(out, indent=1, default=str))
        return 0
    except (ValueError, LookupError) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 - a CLI reports, the traceback is in the log above
        logging.getLogger("include.retain").exception("failed")
        print(f"ERROR: {type(e).__name__}: {e}", file=sys.stderr)
        return 2
