"""The steps of the backup and drill DAGs, without Airflow: each takes settings, does one thing, records
what it measured in ``performance_metrics`` (metric_type ``backup``) and returns a JSON-able dict."""
from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import psycopg

from include.retain import drill as dr
from include.retain import pgbackrest as pb

log = logging.getLogger("include.retain.jobs")


def _record(dsn: str, metrics: dict[str, Any], metadata: dict[str, Any]) -> None:
    from include.db.metrics import record_metric

    with psycopg.connect(dsn, application_name="retain_backup_metrics") as conn:
        for name, value in metrics.items():
            if value is not None:
                record_metric(conn, "backup", name, Decimal(str(value)), metadata=metadata)
        conn.commit()


def backup(pgbr: pb.PgBackRest, dsn: str, *, repo: int, type: str, annotations: dict[str, str] | None = None) -> dict:
    """One backup; size and duration (from ``pgbackrest info --output=json``) into performance_metrics."""
    b = pgbr.backup(repo, type, annotations)
    s = pb.backup_summary(b)
    s["wall_seconds"] = b["wall_seconds"]
    _record(dsn, {"backup.size_bytes": s["size_bytes"], "backup.repo_size_bytes": s["repo_size_bytes"],
                  "backup.repo_delta_bytes": s["repo_delta_bytes"], "backup.duration_seconds": s["duration_seconds"],
                  "backup.wall_seconds": s["wall_seconds"]},
            {"label": s["label"], "type": s["type"], "repo": repo, "stanza": pgbr.s.stanza,
             "annotation": s.get("annotation")})
    return s


def expire(pgbr: pb.PgBackRest, repo: int | None = None) -> dict:
    pgbr.expire(repo)
    info = pgbr.info(repo)
    return {"repo": repo, "backups": [b["label"] for b in pb.backups(info, repo)]}


def freshness(pgbr: pb.PgBackRest, dsn: str, *, repo: int = 1, now: datetime | None = None,
              max_age: timedelta = pb.MAX_AGE) -> dict:
    """Fails loudly (:class:`BackupTooOld`) when the newest good backup of ``repo`` is older than ``max_age``;
    the age is recorded either way."""
    info = pgbr.info(repo)
    now = now or datetime.now(timezone.utc)
    newest = pb.newest_backup(info, repo)
    age_h = None if newest is None else round((now - datetime.fromtimestamp(newest["timestamp"]["stop"], timezone.utc))
                                              .total_seconds() / 3600, 3)
    _record(dsn, {"backup.newest_age_hours": age_h}, {"repo": repo, "stanza": pgbr.s.stanza,
                                                      "label": newest and newest["label"]})
    return pb.check_freshness(info, repo=repo, now=now, max_age=max_age)


def drill(pgbr: pb.PgBackRest, dsn: str, *, repo: int = 1, repo_only: bool = False,
          point: dr.RestorePoint | None = None, tables: tuple[str, ...] = dr.DEFAULT_TABLES) -> dict:
    """Record a restore point now (unless given), push its WAL to the repositories, restore ``repo`` to it
    on a spare port and compare. The result (ok 1/0, seconds, bytes) goes to performance_metrics; a
    mismatch raises :class:`drill.DrillFailed` after recording."""
    if point is None:
        point = dr.record_restore_point(dsn, tables=tables, label=f"restore-drill repo{repo}")
        pgbr.check()
    meta = {"repo": repo, "repo_only": repo_only, "target_time": point.target_time.isoformat(),
            "restore_point": point.id, "stanza": pgbr.s.stanza}
    try:
        res = dr.restore_drill(pgbr, point, repo=repo, repo_only=repo_only)
    except Exception as e:
        _record(dsn, {"restore_drill.ok": 0}, {**meta, "error": str(e)[:500]})
        raise
    _record(dsn, {"restore_drill.ok": 1, "restore_drill.restore_seconds": res.restore_seconds,
                  "restore_drill.start_seconds": res.start_seconds, "restore_drill.restored_bytes": res.restored_bytes},
            {**meta, "counts": res.restored, "recovery_log": res.recovery_log})
    return res.as_dict()
