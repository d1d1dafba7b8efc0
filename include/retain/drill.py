"""Restore drill: prove that a backup restores, to the exact instant asked for.

1. :func:`record_restore_point`: in one transaction, take SHARE locks on the counted tables (writers
   wait; a writer that was already running commits first), count their rows, read ``clock_timestamp()``
   as the target, store both in ``backup_restore_points``. No commit to those tables can have a time
   at or before the target without being counted, nor a later one while the locks are held, so a
   point-in-time restore to the target must show exactly these counts.
2. :func:`restore_drill`: ``pgbackrest restore --type=time --target=<target>`` into a scratch data
   directory (optionally with a configuration that knows only one repository, e.g. the DR one),
   start it on a spare port with archiving off, wait for promotion, count the same tables there,
   compare, stop it and delete the directory. The server log line "recovery stopping before commit
   ..." is reported: it shows that WAL after the target was replayed up to it and no further.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

import psycopg
from psycopg import sql

from include.retain.pgbackrest import BackupError, PgBackRest, _as_user, chown_to

log = logging.getLogger("include.retain.drill")

# the spec's tables whose counts a drill compares by default
DEFAULT_TABLES = ("stores", "transaction_files", "transactions", "mining_jobs", "local_patterns",
                  "federated_rounds", "global_patterns", "activity_logs", "performance_metrics")


@dataclass(frozen=True)
class RestorePoint:
    id: str
    label: str
    target_time: datetime
    database_name: str
    table_counts: dict[str, int]


@dataclass
class DrillResult:
    ok: bool
    repo: int
    repo_only: bool
    target_time: str
    database_name: str
    port: int
    expected: dict[str, int]
    restored: dict[str, int]
    mismatches: dict[str, list[int]] = field(default_factory=dict)
    restore_seconds: float = 0.0
    start_seconds: float = 0.0
    restored_bytes: int = 0
    recovery_log: list[str] = field(default_factory=list)
    inspection: Any = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class DrillFailed(BackupError):
    """The restored copy differs from what was recorded at the target time."""


def record_restore_point(dsn: str, *, tables: tuple[str, ...] = DEFAULT_TABLES, label: str = "drill",
                         lock_timeout_s: int = 60) -> RestorePoint:
    with psycopg.connect(dsn, application_name="retain_restore_point") as conn:
        conn.execute(f"SET LOCAL lock_timeout = '{int(lock_timeout_s)}s'")
        conn.execute(sql.SQL("LOCK TABLE {} IN SHARE MODE").format(
            sql.SQL(", ").join(sql.Identifier(t) for t in tables)))
        counts = {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
                  for t in tables}
        target = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        pid, db = conn.execute(
            """INSERT INTO backup_restore_points (label, target_time, table_counts) VALUES (%s, %s, %s)
               RETURNING id, database_name""", (label, target, json.dumps(counts))).fetchone()
        conn.commit()
    log.info("restore point %s (%s) at %s in %s: %s", pid, label, target.isoformat(), db, counts)
    return RestorePoint(str(pid), label, target, db, counts)


def get_restore_point(dsn: str, point_id: str | None = None, *, at_or_before: datetime | None = None) -> RestorePoint:
    with psycopg.connect(dsn) as conn:
        if point_id:
            row = conn.execute("SELECT id, label, target_time, database_name, table_counts FROM backup_restore_points"
                               " WHERE id = %s", (point_id,)).fetchone()
        else:
            row = conn.execute("SELECT id, label, target_time, database_name, table_counts FROM backup_restore_points"
                               " WHERE target_time <= COALESCE(%s, now()) ORDER BY target_time DESC LIMIT 1",
                               (at_or_before,)).fetchone()
    if row is None:
        raise LookupError(f"no restore point {point_id or ''} found (record one with `python -m include.retain "
                          "restore-point`)")
    return RestorePoint(str(row[0]), row[1], row[2], row[3], {k: int(v) for k, v in row[4].items()})


def spare_port(start: int = 55500, end: int = 55600) -> int:
    """A loopback TCP port nothing listens on (the scratch server binds it)."""
    for port in range(start, end):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise BackupError(f"no free port in {start}..{end} for the restore drill")


def _pg_bin() -> Path:
    cands = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name))
    if not cands:
        raise BackupError("PostgreSQL binaries not found under /usr/lib/postgresql")
    return cands[-1]


def _du(path: Path) -> int:
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def restore_drill(pgbr: PgBackRest, point: RestorePoint, *, repo: int = 1, repo_only: bool = False,
                  scratch_root: str | None = None, port: int | None = None, keep: bool = False,
                  tables: tuple[str, ...] | None = None, start_timeout_s: int = 600,
                  inspect: Callable[[psycopg.Connection], Any] | None = None) -> DrillResult:
    """Restore ``repo`` to ``point.target_time`` in a scratch directory, start it on a spare port and
    compare the counts. ``repo_only``: use a configuration that contains only that repository (the
    disaster-recovery case: the main repository is gone). ``inspect(conn)`` may look further into the
    restored database (its result is ``DrillResult.inspection``). Raises :class:`DrillFailed` on a mismatch."""
    user = pgbr.s.os_user
    root = Path(scratch_root or pgbr.s.scratch_root or Path(pgbr.s.pg1_path or "/tmp").parent / "restore-drill")
    root.mkdir(parents=True, exist_ok=True)
    chown_to(root, user)
    os.chmod(root, 0o700)
    run_id = uuid.uuid4().hex[:12]
    work = root / run_id
    work.mkdir(mode=0o700)
    chown_to(work, user)
    pgdata, sock = work / "data", work / "sock"
    sock.mkdir(mode=0o700)
    chown_to(sock, user)
    spool = work / "spool"
    spool.mkdir(mode=0o700)
    chown_to(spool, user)
    config = pgbr.config_copy(str(work / "pgbackrest.conf"), only_repo=repo if repo_only else None,
                              spool_path=str(spool))
    port = port or spare_port()
    tables = tables or tuple(point.table_counts)
    res = DrillResult(False, repo, repo_only, point.target_time.isoformat(), point.database_name, port,
                      dict(point.table_counts), {})
    bin_ = _pg_bin()
    logfile = work / "postgres.log"
    started = False
    try:
        res.restore_seconds = round(pgbr.restore(str(pgdata), repo=repo, target_time=point.target_time,
                                                 config=config), 3)
        res.restored_bytes = _du(pgdata)
        # timescaledb.max_background_workers=0: a restored TimescaleDB cluster (compose) must not run its
        # retention/compression jobs before the counts are taken (a placeholder setting without the extension)
        opts = (f"-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={sock} "
                "-c archive_mode=off -c shared_buffers=64MB "
                "-c log_min_duration_statement=-1 -c timescaledb.max_background_workers=0")
        t0 = time.monotonic()
        p = subprocess.run([*_as_user(user), str(bin_ / "pg_ctl"), "-D", str(pgdata), "-l", str(logfile), "-o", opts,
                            "-w", "-t", str(start_timeout_s), "start"], capture_output=True, text=True, cwd="/")
        started = True
        if p.returncode != 0:
            raise DrillFailed(f"restored cluster did not start on port {port}: {p.stderr.strip()} "
                              f"{_tail(logfile)}")
        dsn = f"host={sock} port={port} user=postgres dbname={point.database_name}"
        deadline = time.monotonic() + start_timeout_s
        while True:
            try:
                with psycopg.connect(dsn, autocommit=True, connect_timeout=5) as c:
                    if not c.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                        break
            except psycopg.OperationalError:
                pass
            if time.monotonic() > deadline:
                raise DrillFailed(f"restored cluster still in recovery after {start_timeout_s}s: {_tail(logfile)}")
            time.sleep(0.5)
        res.start_seconds = round(time.monotonic() - t0, 3)
        with psycopg.connect(dsn, autocommit=True) as c:
            for t in tables:
                res.restored[t] = c.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(t))).fetchone()[0]
            if inspect is not None:
                res.inspection = inspect(c)
        res.recovery_log = [ln.split("LOG:", 1)[-1].strip() for ln in _read(logfile).splitlines()
                            if "recovery stopping" in ln or "recovery target" in ln
                            or "selected new timeline" in ln or "archive recovery complete" in ln]
        res.mismatches = {t: [res.expected.get(t), res.restored.get(t)] for t in tables
                          if res.expected.get(t) != res.restored.get(t)}
        res.ok = not res.mismatches
        log.info("restore drill repo%d%s to %s: %s (restore %.1fs, start+recovery %.1fs, %d bytes); %s",
                 repo, " alone" if repo_only else "", res.target_time, "OK" if res.ok else "MISMATCH",
                 res.restore_seconds, res.start_seconds, res.restored_bytes, res.recovery_log)
        if not res.ok:
            raise DrillFailed(f"restore of repo{repo} to {res.target_time}: counts differ (expected, restored): "
                              f"{res.mismatches}")
        return res
    finally:
        if started:
            subprocess.run([*_as_user(user), str(bin_ / "pg_ctl"), "-D", str(pgdata), "-m", "immediate", "-w",
                            "stop"], capture_output=True, text=True, cwd="/")
        if not keep:
            shutil.rmtree(work, ignore_errors=True)


def _read(p: Path) -> str:
    try:
        return p.read_text(errors="replace")
    except OSError:
        return ""


def _tail(p: Path, n: int = 8) -> str:
    return " | ".join(_read(p).strip().splitlines()[-n:])
