"""DAG integrity: every DAG file imports cleanly, touches nothing at parse time, and follows the
project's rules (owner, tags, doc_md, retries, catchup, JSON-schema Params)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DAGS = ROOT / "dags"
DAG_FILES = sorted(p for p in DAGS.glob("*.py") if not p.name.startswith("_"))
# DAGs allowed to catch up, and why (none today: every scheduled DAG works on "since last success")
CATCHUP_JUSTIFIED: dict[str, str] = {}
PARSE_BUDGET_SECONDS = 30.0  # all files together; Airflow's own per-file import timeout is 30 s

# A bad value for each JSON-schema type: must be rejected by Param validation.
BAD_VALUE = {"string": 12345, "integer": "not-a-number", "number": "not-a-number",
             "boolean": "not-a-boolean", "array": 7, "object": 7}


def load_dagbag():
    """The DAG files parsed as the dag-processor parses a bundle (its folder on sys.path)."""
    from airflow.dag_processing.dagbag import BundleDagBag

    return BundleDagBag(dag_folder=str(DAGS), bundle_path=DAGS)


@pytest.fixture(scope="module")
def dagbag():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bag = load_dagbag()
    bag.caught_warnings = [w for w in caught if str(DAGS) in str(w.filename)]
    return bag


def test_there_are_dag_files():
    assert DAG_FILES, f"no DAG files in {DAGS}"


def test_every_dag_file_imports_without_errors_or_warnings(dagbag):
    assert dagbag.import_errors == {}
    assert [f"{w.filename}:{w.lineno}: {w.message}" for w in dagbag.caught_warnings] == []
    files_with_dags = {Path(d.fileloc).name for d in dagbag.dags.values()}
    assert files_with_dags == {p.name for p in DAG_FILES}


def test_parsing_touches_no_database_network_or_variable(tmp_path):
    """Parse every DAG file in a fresh interpreter where sockets, the metadata DB and Variables
    are booby-trapped; any use at parse time is reported."""
    probe = textwrap.dedent(f"""
        import json, os, socket, sys, time
        touched = []
        def trap(name):
            def f(*a, **k):
                touched.append(name)
                raise RuntimeError("parse-time access to " + name)
            return f
        socket.socket.connect = trap("socket.connect")
        socket.socket.connect_ex = trap("socket.connect_ex")
        socket.create_connection = trap("socket.create_connection")
        import psycopg
        psycopg.connect = trap("psycopg.connect")
        from airflow.sdk import Variable
        Variable.get = staticmethod(trap("Variable.get"))
        from pathlib import Path
        from airflow.dag_processing.dagbag import BundleDagBag
        t0 = time.monotonic()
        bag = BundleDagBag(dag_folder={str(DAGS)!r}, bundle_path=Path({str(DAGS)!r}))
        print(json.dumps({{"touched": touched, "errors": {{k: str(v) for k, v in bag.import_errors.items()}},
                          "dags": sorted(bag.dag_ids), "seconds": time.monotonic() - t0,
                          "db_file_created": os.path.exists({str(tmp_path / 'meta.db')!r})}}))
    """)
    env = {k: v for k, v in __import__("os").environ.items()}
    env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = f"sqlite:///{tmp_path / 'meta.db'}"
    for k in [k for k in env if k.startswith(("AIRFLOW_CONN_", "AIRFLOW_VAR_"))]:
        del env[k]
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["touched"] == []
    assert result["errors"] == {}
    assert result["dags"], "no DAGs parsed"
    assert not result["db_file_created"], "parsing created/used the metadata database"
    assert result["seconds"] < PARSE_BUDGET_SECONDS, f"parsing all DAGs took {result['seconds']:.1f}s"


def test_dag_conventions(dagbag):
    problems = []
    for dag_id, dag in sorted(dagbag.dags.items()):
        owners = {t.owner for t in dag.tasks}
        if not owners or owners & {"airflow", "", None}:
            problems.append(f"{dag_id}: tasks need a real owner, got {owners}")
        if not dag.tags:
            problems.append(f"{dag_id}: no tags")
        if not (dag.doc_md or "").strip():
            problems.append(f"{dag_id}: no doc_md")
        for t in dag.tasks:
            if t.retries < 1 or not t.retry_delay:
                problems.append(f"{dag_id}.{t.task_id}: retries={t.retries} retry_delay={t.retry_delay}")
        if dag.catchup and dag_id not in CATCHUP_JUSTIFIED:
            problems.append(f"{dag_id}: catchup=True without a justification in CATCHUP_JUSTIFIED")
        try:
            dag.check_cycle()
        except Exception as e:  # noqa: BLE001 - report every DAG, not just the first
            problems.append(f"{dag_id}: cycle: {e}")
    assert problems == []


def _params():
    bag = load_dagbag()
    found = [pytest.param(dag_id, name, dag.params.get_param(name), id=f"{dag_id}.{name}")
             for dag_id, dag in sorted(bag.dags.items()) for name in dag.params]
    # an empty list would be skipped silently: make it a failure instead
    return found or [pytest.param(None, None, None, id="no-params-found")]


@pytest.mark.parametrize(("dag_id", "name", "param"), _params())
def test_param_has_json_schema_type_and_rejects_bad_values(dag_id, name, param):
    from airflow.sdk.exceptions import ParamValidationError

    assert param is not None, "no DAG declares a Param, or the DAG files failed to import"
    schema = param.schema
    types = schema.get("type")
    assert types, f"{dag_id}.{name}: Param without a JSON-schema type"
    assert param.description, f"{dag_id}.{name}: Param without a description (shown in the trigger form)"
    types = [types] if isinstance(types, str) else list(types)
    if param.value is not None:
        param.resolve(value=param.value)  # the default itself is valid
    bad = next(BAD_VALUE[t] for t in types if t in BAD_VALUE and not any(
        _accepts(t2, BAD_VALUE[t]) for t2 in types))
    with pytest.raises(ParamValidationError):
        param.resolve(value=bad)


def _accepts(json_type: str, value) -> bool:
    return {"string": isinstance(value, str), "integer": isinstance(value, int) and not isinstance(value, bool),
            "number": isinstance(value, (int, float)) and not isinstance(value, bool),
            "boolean": isinstance(value, bool), "array": isinstance(value, list),
            "object": isinstance(value, dict), "null": value is None}[json_type]


def test_airflow_cli_lists_every_dag_without_import_errors(dagbag):
    """What a data engineer sees: `airflow dags list` after the dag-processor serialized the files."""
    env = __import__("os").environ
    airflow = str(Path(sys.executable).parent / "airflow")
    subprocess.run([airflow, "dags", "reserialize"], check=True, capture_output=True, env=env, timeout=300,
                   cwd=ROOT)
    listed = subprocess.run([airflow, "dags", "list", "-o", "json"], check=True, capture_output=True,
                            text=True, env=env, timeout=300, cwd=ROOT).stdout
    ids = {d["dag_id"] for d in _json_tail(listed)}
    assert set(dagbag.dag_ids) <= ids
    errors = subprocess.run([airflow, "dags", "list-import-errors", "-o", "json"], capture_output=True,
                            text=True, env=env, timeout=300, cwd=ROOT).stdout
    assert "No data found" in errors or _json_tail(errors) == [], errors


def _json_tail(output: str):
    """The JSON document the Airflow CLI printed after its log lines."""
    start = output.find("\n[{")
    start = start + 1 if start >= 0 else output.rfind("[]")
    return json.loads(output[start:])
