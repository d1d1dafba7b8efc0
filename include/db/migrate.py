"""Versioned SQL migrations: ``include/sql/NNNN_name.sql`` applied in number order.

Each file runs in its own transaction and is recorded in ``schema_migrations`` with the sha256 of its
text; re-running applies nothing. A file that was edited after it was applied, or a recorded migration
whose file is gone, stops the run with :class:`MigrationHistoryError` naming the file, before anything
is applied. A session-level advisory lock serialises concurrent runners on the same database (the
second waits, then finds nothing to do).

Files of the per-area number ranges (docs/CONVENTIONS.md) may land out of order: a file numbered below
the highest applied one is still applied (in number order) and logged as such.

CLI::

    python -m include.db.migrate [--dsn DSN] [--status] [--dry-run] [--target N] [--sql-dir DIR]

Exit codes: 0 success, 1 edited/missing history, 2 a migration failed or the database is unreachable.
From Airflow (``platform_migrate``): call :func:`migrate` with the DSN of ``platform_postgres``.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import re
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

log = logging.getLogger("include.db.migrate")

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"
FILE_RE = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# pg_advisory_lock key: the first 8 bytes of sha256("platform.schema_migrations") as a signed bigint
LOCK_KEY = int.from_bytes(hashlib.sha256(b"platform.schema_migrations").digest()[:8], "big", signed=True)

SCHEMA_MIGRATIONS_DDL = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    checksum CHAR(64) NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    applied_by TEXT NOT NULL DEFAULT current_user,
    execution_ms INTEGER NOT NULL,
    notices TEXT
)
"""


class MigrationError(RuntimeError):
    """A migration file could not be applied (the database is left as before that file)."""


class MigrationHistoryError(MigrationError):
    """The recorded migrations of the database differ from the files (edited or missing history)."""


@dataclass(frozen=True)
class MigrationFile:
    version: int
    name: str
    path: Path
    sql: str
    checksum: str

    @property
    def filename(self) -> str:
        return self.path.name


@dataclass
class MigrationResult:
    applied: list[str] = field(default_factory=list)
    pending: list[str] = field(default_factory=list)
    already_applied: int = 0
    timeseries_backend: str | None = None
    dry_run: bool = False

    def as_dict(self) -> dict:
        """JSON-serialisable (an Airflow task's return value / XCom)."""
        return {"applied": list(self.applied), "pending": list(self.pending), "already_applied": self.already_applied,
                "timeseries_backend": self.timeseries_backend, "dry_run": self.dry_run}


def checksum(text: str) -> str:
    """sha256 of a migration's text, with line endings normalised (a CRLF checkout is not an edit)."""
    return hashlib.sha256(text.replace("\r\n", "\n").encode("utf-8")).hexdigest()


def discover(sql_dir: Path | str = SQL_DIR) -> list[MigrationFile]:
    """The migration files of ``sql_dir`` in number order; duplicate numbers and bad names are errors."""
    sql_dir = Path(sql_dir)
    if not sql_dir.is_dir():
        raise MigrationError(f"migration directory not found: {sql_dir}")
    files: dict[int, MigrationFile] = {}
    for path in sorted(sql_dir.glob("*.sql")):
        m = FILE_RE.match(path.name)
        if not m:
            raise MigrationError(f"{path}: migration files are named NNNN_lowercase_name.sql")
        version = int(m.group(1))
        if version in files:
            raise MigrationError(f"{path}: number {m.group(1)} is also used by {files[version].path.name}")
        text = path.read_text(encoding="utf-8")
        files[version] = MigrationFile(version, path.stem, path, text, checksum(text))
    return [files[v] for v in sorted(files)]


def _describe(dsn: str) -> str:
    """host:port/db of a DSN, never its password (for logs)."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError:
        u = urlsplit(dsn)
        return f"{u.hostname}:{u.port}{u.path}"
    return f"{info.get('user', '')}@{info.get('host', '')}:{info.get('port', '')}/{info.get('dbname', '')}"


def _default_dsn() -> str:
    from include.connections import postgres_dsn

    return postgres_dsn()


def _applied(conn: psycopg.Connection) -> dict[int, tuple[str, str, object]]:
    rows = conn.execute("SELECT version, name, checksum, applied_at FROM schema_migrations ORDER BY version").fetchall()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def _check_history(files: list[MigrationFile], applied: dict[int, tuple[str, str, object]], sql_dir: Path) -> None:
    by_version = {f.version: f for f in files}
    problems = []
    for version, (name, recorded, applied_at) in sorted(applied.items()):
        f = by_version.get(version)
        if f is None:
            problems.append(
                f"{name}.sql was applied to this database at {applied_at} but is not in {sql_dir}: "
                f"this checkout is older than the database, or the file was deleted/renamed")
        elif f.checksum != recorded.strip():
            problems.append(
                f"{f.path} was edited after it was applied to this database at {applied_at} "
                f"(recorded sha256 {recorded.strip()[:12]}..., file now {f.checksum[:12]}...). "
                f"Applied migrations are immutable: revert the edit and put the change in a new migration")
        elif f.name != name:
            problems.append(f"{f.path}: number {version:04d} was applied as {name}.sql; files must not be renamed")
    if problems:
        raise MigrationHistoryError("refusing to migrate, the recorded history differs from the files:\n  - "
                                    + "\n  - ".join(problems))


def _timeseries_backend(conn: psycopg.Connection) -> str | None:
    if conn.execute("SELECT to_regprocedure('timeseries_backend()') IS NOT NULL").fetchone()[0]:
        return conn.execute("SELECT timeseries_backend()").fetchone()[0]
    return None


def migrate(dsn: str | None = None, *, sql_dir: Path | str = SQL_DIR, dry_run: bool = False,
            target: int | None = None, lock_timeout_s: float = 600) -> MigrationResult:
    """Apply the pending migrations of ``sql_dir`` to the database ``dsn`` (default: platform_postgres).

    ``target``: apply only files numbered up to and including it (e.g. 99 = the spec schema of issue 3).

    Raises :class:`MigrationHistoryError` when the database's recorded migrations differ from the files,
    :class:`MigrationError` when a file fails (that file's transaction is rolled back; earlier files stay).
    """
    sql_dir = Path(sql_dir)
    dsn = dsn or _default_dsn()
    files = discover(sql_dir)
    result = MigrationResult(dry_run=dry_run)
    log.info("migrating %s from %s (%d files)", _describe(dsn), sql_dir, len(files))
    notices: list[str] = []
    with psycopg.connect(dsn, autocommit=True, application_name="platform_migrate") as conn:
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        if conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]:
            log.warning("connected as a superuser: objects will be owned by %s, not by the application owner "
                        "role; run migrations as the owner role (platform)", conn.info.user)
        conn.execute(f"SET lock_timeout = {int(lock_timeout_s * 1000)}")
        t0 = time.monotonic()
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
        waited = time.monotonic() - t0
        if waited > 1:
            log.info("waited %.1f s for another migration runner", waited)
        conn.execute("SET lock_timeout = 0")
        try:
            conn.execute(SCHEMA_MIGRATIONS_DDL)
            applied = _applied(conn)
            _check_history(files, applied, sql_dir)
            top = max(applied, default=0)
            pending = [f for f in files if f.version not in applied and (target is None or f.version <= target)]
            result.already_applied = len(applied)
            result.pending = [f.filename for f in pending]
            if dry_run:
                for f in pending:
                    log.info("would apply %s", f.filename)
                result.timeseries_backend = _timeseries_backend(conn)
                return result
            for f in pending:
                if f.version < top:
                    log.warning("%s is numbered below the newest applied migration (%04d); applying it now",
                                f.filename, top)
                notices.clear()
                t1 = time.monotonic()
                try:
                    with conn.transaction():
                        conn.execute(f.sql.encode("utf-8"))
                        ms = int((time.monotonic() - t1) * 1000)
                        conn.execute(
                            "INSERT INTO schema_migrations (version, name, checksum, execution_ms, notices)"
                            " VALUES (%s, %s, %s, %s, %s)",
                            (f.version, f.name, f.checksum, ms, "\n".join(notices) or None))
                except psycopg.Error as e:
                    diag = e.diag
                    where = f" ({diag.context.strip().splitlines()[-1]})" if diag.context else ""
                    raise MigrationError(f"{f.path} failed and was rolled back: "
                                         f"{diag.message_primary or e}{where}") from e
                for n in notices:
                    log.info("%s: %s", f.filename, n)
                log.info("applied %s in %d ms", f.filename, ms)
                result.applied.append(f.filename)
            result.timeseries_backend = _timeseries_backend(conn)
            if result.timeseries_backend:
                log.info("timeseries backend: %s", result.timeseries_backend)
            if not result.applied:
                log.info("database is up to date (%d migrations applied)", len(applied))
            return result
        finally:
            if not conn.closed:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def status(dsn: str | None = None, *, sql_dir: Path | str = SQL_DIR) -> list[dict]:
    """One dict per known migration: version, file, state (applied|pending|edited|missing), applied_at."""
    sql_dir = Path(sql_dir)
    dsn = dsn or _default_dsn()
    files = {f.version: f for f in discover(sql_dir)}
    with psycopg.connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass('schema_migrations') IS NOT NULL").fetchone()[0]
        applied = _applied(conn) if exists else {}
    out = []
    for v in sorted(set(files) | set(applied)):
        f, a = files.get(v), applied.get(v)
        if a is None:
            state = "pending"
        elif f is None:
            state = "missing"
        elif f.checksum != a[1].strip():
            state = "edited"
        else:
            state = "applied"
        out.append({"version": v, "file": f.filename if f else f"{a[0]}.sql", "state": state,
                    "applied_at": a[2] if a else None})
    return out


def assert_up_to_date(dsn: str | None = None, *, sql_dir: Path | str = SQL_DIR) -> None:
    """Raise unless every migration file is applied unchanged (for tasks that depend on the schema)."""
    bad = [s for s in status(dsn, sql_dir=sql_dir) if s["state"] != "applied"]
    if bad:
        raise MigrationError("database schema is not up to date: "
                             + ", ".join(f"{s['file']} {s['state']}" for s in bad)
                             + " (run `python -m include.db.migrate`)")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m include.db.migrate", description=__doc__.split("\n\n")[0])
    p.add_argument("--dsn", help="libpq DSN/URI (default: connection platform_postgres from the environment)")
    p.add_argument("--status", action="store_true", help="list migrations and their state, apply nothing")
    p.add_argument("--dry-run", action="store_true", help="check the history and list what would be applied")
    p.add_argument("--target", type=int, help="apply files numbered up to and including TARGET only")
    p.add_argument("--sql-dir", default=str(SQL_DIR), help=f"migration directory (default {SQL_DIR})")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stderr)
    try:
        if args.status:
            rows = status(args.dsn, sql_dir=args.sql_dir)
            for r in rows:
                print(f"{r['version']:04d}  {r['state']:<8} {r['file']:<45} {r['applied_at'] or ''}")
            return 1 if any(r["state"] in ("edited", "missing") for r in rows) else 0
        res = migrate(args.dsn, sql_dir=args.sql_dir, dry_run=args.dry_run, target=args.target)
        if args.dry_run:
            print("\n".join(res.pending) if res.pending else "nothing to apply")
        else:
            print(f"applied {len(res.applied)} migration(s)" + (": " + ", ".join(res.applied) if res.applied else "")
                  + (f"; timeseries backend: {res.timeseries_backend}" if res.timeseries_backend else ""))
        return 0
    except MigrationHistoryError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    except (MigrationError, psycopg.Error) as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
