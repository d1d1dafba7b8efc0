"""The migration runner: order, idempotence, edited history, failure rollback, concurrency, CLI."""
from __future__ import annotations

import shutil
import subprocess
import sys
import threading
from pathlib import Path

import psycopg
import pytest

from include.db.migrate import SQL_DIR, MigrationError, MigrationHistoryError, discover, migrate, status

ROOT = Path(__file__).resolve().parents[2]

SNAPSHOT = """
SELECT 'rel ' || c.relname || ' ' || c.relkind::text || ' ' || c.relrowsecurity || c.relforcerowsecurity
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
UNION ALL
SELECT 'col ' || a.attrelid::regclass || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
       || ' ' || a.attnotnull || ' ' || COALESCE(pg_get_expr(d.adbin, d.adrelid), '')
  FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE n.nspname = 'public' AND a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'con ' || conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
UNION ALL
SELECT 'idx ' || indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'pol ' || tablename || ' ' || policyname || ' ' || cmd || ' ' || roles::text || ' ' || COALESCE(qual, '')
       || ' ' || COALESCE(with_check, '') FROM pg_policies WHERE schemaname = 'public'
UNION ALL
SELECT 'trg ' || tgrelid::regclass || ' ' || tgname FROM pg_trigger WHERE NOT tgisinternal
UNION ALL
SELECT 'fn ' || p.oid::regprocedure || ' ' || md5(p.prosrc) FROM pg_proc p WHERE p.pronamespace = 'public'::regnamespace
UNION ALL
SELECT 'acl ' || c.relname || ' ' || COALESCE(c.relacl::text, '') FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
UNION ALL
SELECT 'cfg ' || config_key || '=' || config_value || ' ' || data_type || ' ' || updated_at FROM server_configs
UNION ALL
SELECT 'mig ' || version || ' ' || checksum || ' ' || applied_at FROM schema_migrations
UNION ALL
SELECT 'log ' || count(*) FROM activity_logs
ORDER BY 1
"""


def _snapshot(dsn: str) -> list[str]:
    with psycopg.connect(dsn) as c:
        return [r[0] for r in c.execute(SNAPSHOT)]


def _copy_sql(tmp_path: Path, upto: int = 99) -> Path:
    d = tmp_path / "sql"
    d.mkdir()
    for f in discover(SQL_DIR):
        if f.version <= upto:
            shutil.copy(f.path, d / f.filename)
    return d


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "include.db.migrate", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_files_are_numbered_and_this_area_stays_in_its_range():
    files = discover()
    assert [f.version for f in files] == sorted(f.version for f in files)
    mine = [f.filename for f in files if f.version <= 99]
    assert mine[:8] == ["0001_spec_core_tables.sql", "0002_spec_timeseries_tables.sql", "0003_supporting_indexes.sql",
                        "0004_app_roles_and_rls.sql", "0005_audit_triggers.sql", "0006_column_encryption.sql",
                        "0007_platform_settings.sql", "0008_rls_bulk_tables_no_force.sql"]


def test_all_migrations_apply_and_a_second_run_changes_nothing(fresh_dsn):
    first = migrate(fresh_dsn)
    assert first.applied == [f.filename for f in discover()]
    assert first.timeseries_backend == "native"
    before = _snapshot(fresh_dsn)
    second = migrate(fresh_dsn)
    assert second.applied == [] and second.pending == []
    assert _snapshot(fresh_dsn) == before
    assert all(s["state"] == "applied" for s in status(fresh_dsn))


def test_edited_migration_is_refused_naming_the_file(fresh_dsn, tmp_path):
    d = _copy_sql(tmp_path)
    migrate(fresh_dsn, sql_dir=d)
    edited = d / "0003_supporting_indexes.sql"
    edited.write_text(edited.read_text() + "\nCREATE INDEX idx_sneaky ON users (role);\n")
    (d / "0099_new.sql").write_text("CREATE TABLE must_not_appear (id int);\n")
    with pytest.raises(MigrationHistoryError, match=r"0003_supporting_indexes\.sql was edited after it was applied"):
        migrate(fresh_dsn, sql_dir=d)
    with psycopg.connect(fresh_dsn) as c:
        assert c.execute("SELECT to_regclass('must_not_appear')").fetchone()[0] is None
        assert c.execute("SELECT to_regclass('idx_sneaky')").fetchone()[0] is None
    states = {s["file"]: s["state"] for s in status(fresh_dsn, sql_dir=d)}
    assert states["0003_supporting_indexes.sql"] == "edited" and states["0099_new.sql"] == "pending"
    # the CLI says the same and exits 1
    out = _cli("--dsn", fresh_dsn, "--sql-dir", str(d))
    assert out.returncode == 1
    assert "0003_supporting_indexes.sql was edited" in out.stderr and "new migration" in out.stderr
    out = _cli("--dsn", fresh_dsn, "--sql-dir", str(d), "--status")
    assert out.returncode == 1 and "edited" in out.stdout


def test_missing_applied_file_is_refused(fresh_dsn, tmp_path):
    d = _copy_sql(tmp_path)
    migrate(fresh_dsn, sql_dir=d)
    (d / "0007_platform_settings.sql").unlink()
    with pytest.raises(MigrationHistoryError, match="0007_platform_settings.sql was applied .* not in"):
        migrate(fresh_dsn, sql_dir=d)


def test_failing_migration_rolls_back_and_names_the_file(fresh_dsn, tmp_path):
    d = _copy_sql(tmp_path, upto=1)
    (d / "0002_broken.sql").write_text("CREATE TABLE half_done (id int);\nSELECT no_such_function();\n")
    with pytest.raises(MigrationError, match=r"0002_broken\.sql failed and was rolled back: function no_such_function"):
        migrate(fresh_dsn, sql_dir=d)
    with psycopg.connect(fresh_dsn) as c:
        assert c.execute("SELECT to_regclass('half_done')").fetchone()[0] is None
        assert [r[0] for r in c.execute("SELECT version FROM schema_migrations")] == [1]
    out = _cli("--dsn", fresh_dsn, "--sql-dir", str(d))
    assert out.returncode == 2 and "0002_broken.sql failed" in out.stderr


def test_concurrent_runners_apply_each_file_once(fresh_dsn):
    results, errors = [], []

    def run():
        try:
            results.append(migrate(fresh_dsn, target=99))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors, errors
    applied = [f for r in results for f in r.applied]
    assert sorted(applied) == [f.filename for f in discover() if f.version <= 99]
    with psycopg.connect(fresh_dsn) as c:
        assert c.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == len(applied)


def test_late_file_of_a_lower_number_is_applied(fresh_dsn, tmp_path):
    d = _copy_sql(tmp_path)
    late = d / "0007_platform_settings.sql"
    text = late.read_text()
    late.unlink()
    (d / "0150_other_area.sql").write_text("CREATE TABLE other_area (id int);\n")
    migrate(fresh_dsn, sql_dir=d)
    late.write_text(text)
    assert migrate(fresh_dsn, sql_dir=d).applied == ["0007_platform_settings.sql"]


def test_dry_run_and_status_cli(fresh_dsn):
    out = _cli("--dsn", fresh_dsn, "--dry-run")
    assert out.returncode == 0 and "0001_spec_core_tables.sql" in out.stdout
    with psycopg.connect(fresh_dsn) as c:
        assert c.execute("SELECT count(*) FROM schema_migrations").fetchone()[0] == 0
    out = _cli("--dsn", fresh_dsn, "--target", "99")
    assert out.returncode == 0 and "timeseries backend: native" in out.stdout
    assert "timeseries backend: native monthly range partitioning" in out.stderr
    password = psycopg.conninfo.conninfo_to_dict(fresh_dsn).get("password")
    assert password and f":{password}@" not in out.stderr  # the DSN's password is never logged
    out = _cli("--dsn", fresh_dsn, "--status")
    assert out.returncode == 0 and "0001  applied" in out.stdout


def test_bad_file_names_are_rejected(tmp_path):
    (tmp_path / "1_bad.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match="NNNN_lowercase_name.sql"):
        discover(tmp_path)
