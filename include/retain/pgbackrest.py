"""pgBackRest (Debian's 2.45) for the platform's cluster: backup, info, expire, check, restore.

Settings come from connection ``platform_backup`` (extra: ``config`` = the pgbackrest.conf that
scripts/services.sh writes from the same connection, ``stanza``, ``os_user``, ``pg1_*``). Every command
runs as the cluster's OS user (``runuser -u postgres`` when we are root): a pgBackRest command run as
root would leave root-owned lock files that break the server's own ``archive-push``.

Repositories: repo1 = main (daily incremental, weekly full), repo2 = disaster recovery (another bucket
and region; its own monthly full). WAL goes to both. Retention (``repoN-retention-full``, count of full
backups; incrementals and WAL expire with their full): repo1 2 fulls (PITR window 7 to 14 days), repo2 3
fulls (about 3 months).

docker-compose (docs/retain.md): the workers are pgBackRest *repository hosts*: their configuration names the
database through the pgBackRest TLS server (``pg1-host=pgbackrest-server``, ``pg1-host-type=tls``), so
backup/check run there against the database's files; a restore always runs locally (``config_copy`` drops the
``pg1-host*`` options), into ``scratch_root``. The compose images build pgBackRest 2.59.3 (the same
release on both sides of the TLS protocol); the commands used here behave the same in 2.45 and 2.59.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger("include.retain.pgbackrest")

BACKUP_CONN = "platform_backup"
BACKUP_TYPES = ("full", "incr", "diff")
MAX_AGE = timedelta(hours=26)


class BackupError(RuntimeError):
    """A pgBackRest command failed; the message carries its output."""


class BackupTooOld(BackupError):
    """The newest good backup of a repository is older than allowed."""


@dataclass(frozen=True)
class BackupSettings:
    config: str
    stanza: str = "platform"
    os_user: str | None = "postgres"
    pg1_path: str | None = None
    pg1_port: int | None = None
    pg1_socket_path: str | None = None
    scratch_root: str | None = None  # where the restore drill puts its scratch clusters (default: next to pg1_path)

    @classmethod
    def from_extra(cls, extra: dict[str, Any]) -> "BackupSettings":
        if not extra.get("config"):
            raise BackupError(f"connection {BACKUP_CONN} has no extra 'config' (path of pgbackrest.conf): "
                              "run scripts/services.sh up backup-s3, or set it in the secrets backend")
        return cls(config=extra["config"], stanza=extra.get("stanza", "platform"),
                   os_user=extra.get("os_user") or None, pg1_path=extra.get("pg1_path"),
                   pg1_port=int(extra["pg1_port"]) if extra.get("pg1_port") else None,
                   pg1_socket_path=extra.get("pg1_socket_path"), scratch_root=extra.get("scratch_root") or None)

    @classmethod
    def from_env(cls) -> "BackupSettings":
        from include.connections import get_connection

        return cls.from_extra(get_connection(BACKUP_CONN).extra)


def _as_user(user: str | None) -> list[str]:
    if user and os.geteuid() == 0:
        return ["runuser", "-u", user, "--"]
    return []


class PgBackRest:
    def __init__(self, settings: BackupSettings):
        self.s = settings
        if not shutil.which("pgbackrest"):
            raise BackupError("pgbackrest is not installed (Debian package pgbackrest; scripts/install.sh)")

    def command(self, cmd: str, *opts: str, config: str | None = None) -> list[str]:
        return [*_as_user(self.s.os_user), "pgbackrest", f"--config={config or self.s.config}",
                f"--stanza={self.s.stanza}", *opts, cmd]

    def run(self, cmd: str, *opts: str, config: str | None = None, timeout: float = 3600) -> str:
        argv = self.command(cmd, *opts, config=config)
        t0 = time.monotonic()
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, cwd="/")
        if p.returncode != 0:
            out = (p.stdout + p.stderr).strip()
            raise BackupError(f"pgbackrest {cmd} {' '.join(opts)} failed with exit code {p.returncode} after "
                              f"{time.monotonic() - t0:.1f}s: {out[-2000:]}")
        return p.stdout

    # ------------------------------------------------------------------ commands
    def backup(self, repo: int, type: str, annotations: dict[str, str] | None = None) -> dict[str, Any]:
        """Take a backup into ``repo``; returns the backup's entry of ``info`` plus the wall time."""
        if type not in BACKUP_TYPES:
            raise ValueError(f"backup type must be one of {BACKUP_TYPES}, got {type!r}")
        opts = [f"--repo={repo}", f"--type={type}"]
        for k, v in (annotations or {}).items():
            opts.append(f"--annotation={k}={v}")
        t0 = time.monotonic()
        self.run("backup", *opts)
        seconds = time.monotonic() - t0
        newest = newest_backup(self.info(repo), repo)
        if newest is None:
            raise BackupError(f"backup to repo{repo} reported success but info lists no backup")
        log.info("backup %s (%s) to repo%d in %.1fs: %s bytes, %s in the repository", newest["label"], type, repo,
                 seconds, newest["info"]["size"], newest["info"]["repository"]["delta"])
        return {**newest, "wall_seconds": round(seconds, 3)}

    def info(self, repo: int | None = None, config: str | None = None) -> list[dict[str, Any]]:
        opts = ["--output=json"] + ([f"--repo={repo}"] if repo else [])
        return json.loads(self.run("info", *opts, config=config))

    def expire(self, repo: int | None = None) -> str:
        return self.run("expire", *([f"--repo={repo}"] if repo else []))

    def check(self) -> str:
        """Forces a WAL switch and waits until that segment is in every repository."""
        return self.run("check")

    def restore(self, pg_path: str, *, repo: int, target_time: datetime | None = None,
                config: str | None = None, set_label: str | None = None) -> float:
        opts = [f"--repo={repo}", f"--pg1-path={pg_path}", "--archive-mode=off"]
        if target_time is not None:
            opts += ["--type=time", f"--target={target_time.astimezone(timezone.utc).isoformat(sep=' ')}",
                     "--target-action=promote"]
        if set_label:
            opts.append(f"--set={set_label}")
        t0 = time.monotonic()
        self.run("restore", *opts, config=config)
        return time.monotonic() - t0

    def config_copy(self, path: str, *, only_repo: int | None = None, spool_path: str | None = None) -> str:
        """A copy of the configuration for a restore: with ``only_repo`` it knows that repository alone
        (a restore from it cannot touch any other: the disaster-recovery case); ``spool_path`` keeps the
        restored server's async archive-get queue apart from the live server's. A restore and the restored
        server's archive-get run on this host, so ``pg1-host*`` options (a remote database, as the compose
        workers have) are left out: pgBackRest refuses to restore onto a remote host. Owned by the OS user, 600."""
        keep = []
        for line in Path(self.s.config).read_text().splitlines():
            m = re.match(r"^repo(\d+)-", line)
            if only_repo is not None and m and int(m.group(1)) != only_repo:
                continue
            if re.match(r"^pg\d+-host", line):
                continue
            if spool_path and line.startswith("spool-path="):
                line = f"spool-path={spool_path}"
            keep.append(line)
        p = Path(path)
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write("\n".join(keep) + "\n")
        chown_to(p, self.s.os_user)
        return str(p)


def chown_to(path: Path | str, user: str | None) -> None:
    if user and os.geteuid() == 0:
        shutil.chown(path, user, user)


# ---------------------------------------------------------------------- info JSON
def _stanza(info: list[dict[str, Any]]) -> dict[str, Any]:
    if not info:
        raise BackupError("pgbackrest info returned no stanza")
    return info[0]


def backups(info: list[dict[str, Any]], repo: int | None = None) -> list[dict[str, Any]]:
    out = [b for b in _stanza(info).get("backup", []) if repo is None or b.get("database", {}).get("repo-key") == repo]
    return sorted(out, key=lambda b: b["timestamp"]["stop"])


def newest_backup(info: list[dict[str, Any]], repo: int | None = None, *, good_only: bool = True) -> dict | None:
    bs = [b for b in backups(info, repo) if not (good_only and b.get("error"))]
    return bs[-1] if bs else None


def check_freshness(info: list[dict[str, Any]], *, repo: int = 1, now: datetime | None = None,
                    max_age: timedelta = MAX_AGE) -> dict[str, Any]:
    """The newest good backup of ``repo``; raises :class:`BackupTooOld` when it is older than ``max_age``
    (or when there is none)."""
    now = now or datetime.now(timezone.utc)
    b = newest_backup(info, repo)
    if b is None:
        raise BackupTooOld(f"repo{repo} of stanza {_stanza(info).get('name')} has no good backup at all "
                           f"(status: {_stanza(info).get('status', {}).get('message')})")
    stop = datetime.fromtimestamp(b["timestamp"]["stop"], timezone.utc)
    age = now - stop
    if age > max_age:
        raise BackupTooOld(f"newest good backup of repo{repo} is {b['label']} ({b['type']}), finished "
                           f"{stop.isoformat()}: {age.total_seconds() / 3600:.1f} h old, the limit is "
                           f"{max_age.total_seconds() / 3600:.0f} h")
    return {"label": b["label"], "type": b["type"], "stop": stop.isoformat(),
            "age_hours": round(age.total_seconds() / 3600, 2)}


def backup_summary(b: dict[str, Any]) -> dict[str, Any]:
    """Size and duration of one backup entry of ``info`` (what goes into performance_metrics)."""
    return {"label": b["label"], "type": b["type"], "repo": b.get("database", {}).get("repo-key"),
            "size_bytes": b["info"]["size"], "delta_bytes": b["info"]["delta"],
            "repo_size_bytes": b["info"]["repository"]["size"], "repo_delta_bytes": b["info"]["repository"]["delta"],
            "duration_seconds": b["timestamp"]["stop"] - b["timestamp"]["start"],
            "start": datetime.fromtimestamp(b["timestamp"]["start"], timezone.utc).isoformat(),
            "stop": datetime.fromtimestamp(b["timestamp"]["stop"], timezone.utc).isoformat(),
            "wal_start": b.get("archive", {}).get("start"), "wal_stop": b.get("archive", {}).get("stop"),
            "annotation": b.get("annotation")}


def scheduled_type(day: datetime) -> str:
    """Weekly full on Sunday, incremental on the other days (spec 4.2)."""
    return "full" if day.weekday() == 6 else "incr"


def dr_due(day: datetime) -> bool:
    """The disaster-recovery repository gets its full backup on the first day of each month."""
    return day.day == 1
