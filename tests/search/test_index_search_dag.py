"""The index_search DAG run by Airflow's LocalExecutor (the real task supervisor), with the task log
handler of the Elasticsearch provider writing to Elasticsearch (write_to_es, json_format): afterwards
the documents equal the rows, and each task's log is read back through Airflow's log endpoint of an
api-server started here, from Elasticsearch (the local log file is deleted after the upload)."""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import urllib.parse
import urllib.request
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from include.search.clients import es_url
from tests.search.conftest import add_logs, add_metrics, add_round, es_count, make_store, pg_count
from tests import tlsmode
from tests.apiserver import api_server, free_port

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def task_log_env(prefix: str) -> dict[str, str]:
    """The settings that send task logs to Elasticsearch (docs/search.md lists them for the stack)."""
    return {
        "AIRFLOW__LOGGING__REMOTE_LOGGING": "True",
        "AIRFLOW__LOGGING__DELETE_LOCAL_LOGS": "True",
        "AIRFLOW__ELASTICSEARCH__HOST": es_url(),
        "AIRFLOW__ELASTICSEARCH__WRITE_TO_ES": "True",
        "AIRFLOW__ELASTICSEARCH__JSON_FORMAT": "True",
        "AIRFLOW__ELASTICSEARCH__WRITE_STDOUT": "False",
        "AIRFLOW__ELASTICSEARCH__TARGET_INDEX": f"{prefix}airflow-logs",
        "AIRFLOW__ELASTICSEARCH__INDEX_PATTERNS": f"{prefix}airflow-logs*",
        "AIRFLOW__ELASTICSEARCH__ES_COMPAT_WITH": "8",
    }


def _get(url: str) -> dict:
    req = urllib.request.Request(url, headers={"Accept": "application/json"})
    with urllib.request.urlopen(req, timeout=60, context=tlsmode.urllib_context()) as r:
        return json.loads(r.read())


@pytest.mark.slow
def test_dag_ships_exactly_and_task_logs_are_read_back_from_elasticsearch(es, ns, rns, fresh_dsn, tmp_path):
    with psycopg.connect(fresh_dsn) as conn:
        s1, s2 = make_store(conn), make_store(conn)
        add_logs(conn, [s1, s2], 1500, span=timedelta(days=40))
        add_metrics(conn, [s1, s2], 400)
        add_round(conn, [(["wine", "cheese"], 77.0), (["tea"], 3.0)])
    port = free_port()
    env = {**os.environ, **task_log_env(ns.prefix),
           "AIRFLOW_CONN_PLATFORM_POSTGRES": tlsmode.pg_conn_json(fresh_dsn),  # TLS extras too (docs/tls.md)
           "PLATFORM_SEARCH_INDEX_PREFIX": ns.prefix, "PLATFORM_REDIS_NAMESPACE": rns,
           **tlsmode.api_server_env(port),  # the tasks of `dags test --use-executor` call this api-server
           # this test reads Airflow's API without logging in: the simple auth manager, all admins (the
           # project's default is FAB, docs/access.md)
           "AIRFLOW__CORE__AUTH_MANAGER": "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
           "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
           "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32)}
    with api_server(env, port, tmp_path / "api-server.log") as base:
        run = subprocess.run([AIRFLOW, "dags", "test", "index_search", "--use-executor"], env=env, cwd=ROOT,
                             capture_output=True, text=True, timeout=900)
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

        with psycopg.connect(fresh_dsn) as conn:
            assert es_count(es, ns.activity_logs()) == pg_count(conn, "activity_logs")
            assert es_count(es, ns.metrics()) == pg_count(conn, "performance_metrics")
            assert es_count(es, ns.global_patterns) == 2

        runs = _get(f"{base}/api/v2/dags/index_search/dagRuns?order_by=-start_date&limit=1")["dag_runs"]
        run_id = urllib.parse.quote(runs[0]["dag_run_id"], safe="")
        assert runs[0]["state"] == "success"
        for task_id, expected in (("check_services", "'elasticsearch': 'green'"),
                                  ("ship", "'activity_logs'")):
            content = _get(f"{base}/api/v2/dags/index_search/dagRuns/{run_id}/taskInstances/{task_id}/logs/1"
                           "?full_content=true")["content"]
            events = [c.get("event", "") if isinstance(c, dict) else str(c) for c in content]
            # the reader names its source: the Elasticsearch host, not a local file
            assert events[:3] == ["::group::Log message source details", es_url(), "::endgroup::"], events[:5]
            assert any("Done. Returned value was" in e and expected in e for e in events), events[-5:]
            es.indices.refresh(index=f"{ns.prefix}airflow-logs")
            hits = es.count(index=f"{ns.prefix}airflow-logs", query={"bool": {"filter": [
                {"term": {"task_id": task_id}}, {"term": {"dag_id": "index_search"}}]}})["count"]
            assert hits > 0
            local = (Path(os.environ["AIRFLOW_HOME"]) / "logs" / "dag_id=index_search"
                     / f"run_id={runs[0]['dag_run_id']}" / f"task_id={task_id}")
            assert not (local / "attempt=1.log").exists()     # deleted after the upload: read from ES
