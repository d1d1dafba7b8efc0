"""The store side started the way production starts it: a real scheduler, dag-processor, triggerer and
api-server (the execution API of the LocalExecutor's tasks) run here; the `federated_client` DAG is
unpaused; the coordinator publishes its invitations on Kafka; the AssetWatcher in the triggerer turns
them into asset events, the scheduler starts `federated_client` runs, their `take_part` tasks defer on
the real triggerer between protocol messages, and the round completes with both stores.

The Airflow metadata database is shared with the other tests: every other DAG that is unpaused is
paused for the duration of the test and unpaused again afterwards; `federated_client` is paused again.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import psycopg
import pytest

from tests import tlsmode
from tests.apiserver import free_port
from tests.foundation.test_dag_integrity import _json_tail
from tests.federate.test_round_kafka import (AIRFLOW, ROOT, WINDOW, _env, _make_stores, round_dsn,  # noqa: F401
                                             start_coordinator)

pytestmark = pytest.mark.timeout(1200)


def _airflow_json(env: dict, *args: str):
    out = subprocess.run([AIRFLOW, *args, "-o", "json"], env=env, cwd=ROOT, capture_output=True, text=True,
                         timeout=180)
    return _json_tail(out.stdout) if out.returncode == 0 else None


def _start_group_at_end(settings: dict, group: str) -> None:
    """Commit the end offsets of the invitations topic for ``group`` (the topic holds every earlier
    test's invitations; the watcher sleeps its poll_interval after each one that is not ours)."""
    from confluent_kafka import Consumer, TopicPartition

    from include.federate.topics import INVITATIONS

    c = Consumer({**tlsmode.kafka_base(settings), "group.id": group,  # TLS mode: security settings too
                  "enable.auto.commit": False})
    try:
        parts = c.list_topics(INVITATIONS, timeout=10).topics[INVITATIONS].partitions
        offsets = [TopicPartition(INVITATIONS, p, c.get_watermark_offsets(TopicPartition(INVITATIONS, p), timeout=10)[1])
                   for p in parts]
        c.commit(offsets=offsets, asynchronous=False)
    finally:
        c.close()


def _deferrals(runs: list[dict]) -> int:
    """How many RoundMessageTrigger runs of take_part the triggerer logged for these DAG runs."""
    from include.search.clients import es_client

    es = es_client()
    should = [{"match_phrase": {"event": f"trigger federated_client/{r['run_id']}/take_part"}} for r in runs]
    n, deadline = 0, time.monotonic() + 60
    while time.monotonic() < deadline:
        es.indices.refresh(index="airflow-logs*")
        n = es.count(index="airflow-logs*", query={"bool": {"should": should, "minimum_should_match": 1,
                                                            "filter": [{"match_phrase": {"event": "starting"}}]}})["count"]
        if n >= 2:
            break
        time.sleep(3)
    return n


def _wait_for_watcher(env: dict, *, deadline: float) -> None:
    """Until the triggerer runs the invitations watcher (its trigger row has a triggerer assigned)."""
    url = env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].replace("+psycopg", "")
    while True:
        with psycopg.connect(url) as c:
            row = c.execute("""SELECT t.triggerer_id FROM trigger t
                                 JOIN asset_watcher w ON w.trigger_id = t.id
                                 JOIN asset a ON a.id = w.asset_id
                                WHERE a.name = 'federate_invitations'""").fetchone()
        if row and row[0] is not None:
            return
        assert time.monotonic() < deadline, f"the invitations watcher did not start (trigger row: {row})"
        time.sleep(2)


def _set_paused(env: dict, dag_ids, paused: bool) -> None:
    for d in dag_ids:
        subprocess.run([AIRFLOW, "dags", "pause" if paused else "unpause", d], env=env, cwd=ROOT,
                       capture_output=True, timeout=180)


def test_invitation_on_kafka_starts_the_client_dag_through_its_asset_watcher(round_dsn, tmp_path):
    from include.connections import KAFKA, get_connection
    from include.federate.topics import ensure_topics

    dsn, dbname = round_dsn
    stores = _make_stores(dsn, 2, first_index=50)
    ensure_topics(get_connection(KAFKA).extra)                        # topics exist before the watcher subscribes

    api_port = free_port()
    env = _env(dbname)
    kafka = json.loads(env["AIRFLOW_CONN_PLATFORM_KAFKA"])
    kafka["extra"]["group.id"] = group = f"t-watch-{uuid.uuid4().hex[:8]}"
    _start_group_at_end(kafka["extra"], group)   # like a deployment that starts listening now
    env.update({
        "AIRFLOW_CONN_PLATFORM_KAFKA": json.dumps(kafka),
        "FEDERATE_LOCAL_STORES": ",".join(stores),   # the other tests' invitations in the topic are not ours
        "FEDERATE_CLIENT_DRAIN_SECONDS": "0",             # defer whenever nothing is waiting
        **tlsmode.api_server_env(api_port),  # https in TLS mode (docs/tls.md)
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
        "AIRFLOW__CORE__PARALLELISM": "4",
    })
    listed = _airflow_json(env, "dags", "list") or []
    others = [d["dag_id"] for d in listed
              if d["dag_id"] != "federated_client" and str(d.get("is_paused")).lower() == "false"]
    _set_paused(env, others, True)

    procs, logs = {}, {}
    try:
        for name in ("api-server", "dag-processor", "scheduler", "triggerer"):
            logs[name] = open(tmp_path / f"{name}.log", "w")
            argv = [AIRFLOW, name] + (["--host", "127.0.0.1", "--port", str(api_port)] if name == "api-server" else [])
            procs[name] = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=logs[name], stderr=subprocess.STDOUT,
                                           start_new_session=True)
        deadline = time.monotonic() + 240
        while True:     # the dag-processor has stored the DAG (and its watcher) once unpause succeeds
            ok = subprocess.run([AIRFLOW, "dags", "unpause", "federated_client"], env=env, cwd=ROOT,
                                capture_output=True, text=True, timeout=180).returncode == 0
            if ok:
                break
            for n, p in procs.items():
                assert p.poll() is None, f"airflow {n} exited: {(tmp_path / f'{n}.log').read_text()[-3000:]}"
            assert time.monotonic() < deadline, "federated_client was not parsed within 240 s"
            time.sleep(3)
        # Airflow registers an AssetWatcher's trigger when it parses a DAG that is already unpaused
        subprocess.run([AIRFLOW, "dags", "reserialize"], env=env, cwd=ROOT, capture_output=True, timeout=300,
                       check=True)
        _wait_for_watcher(env, deadline=time.monotonic() + 180)

        t0 = time.monotonic()
        opened, th, out = start_coordinator(dsn, {"store_ids": stores, "epsilon": 2.0, "phase_timeout_minutes": 4,
                                                  "max_pattern_length": 2, "top_k": 10, **WINDOW})
        th.join(900)
        elapsed = time.monotonic() - t0
        for n, p in procs.items():
            assert p.poll() is None, f"airflow {n} exited: {(tmp_path / f'{n}.log').read_text()[-3000:]}"
        assert "error" not in out, f"{out.get('error')}\n" + (tmp_path / "triggerer.log").read_text()[-3000:]
        assert out["result"]["participants"] == 2, out

        runs = []
        deadline = time.monotonic() + 120        # the client runs finish after the round's end message
        while time.monotonic() < deadline:
            runs = _airflow_json(env, "dags", "list-runs", "federated_client") or []
            if runs and all(r["state"] in ("success", "failed") for r in runs):
                break
            time.sleep(3)
        ours = [r for r in runs if r["state"] == "success" and str(r["run_id"]).startswith("asset_triggered__")]
        assert ours, f"no asset-triggered federated_client run succeeded: {runs}"
        with psycopg.connect(dsn) as c:
            ledger = c.execute("SELECT store_id::text, status FROM privacy_budget_ledger WHERE round_id = %s",
                               (opened["round_id"],)).fetchall()
            assert sorted(ledger) == sorted((s, "charged") for s in stores)
            assert c.execute("SELECT count(*) FROM federate_client_states").fetchone()[0] == 0
        # take_part deferred on the real triggerer: its trigger's log lines (shipped to Elasticsearch with
        # the task's log) name the asset-triggered run
        assert _deferrals(ours) >= 2, "take_part never deferred on the triggerer"
        print(f"event-driven round with 2 stores: {elapsed:.1f}s; federated_client runs: "
              f"{[(r['run_id'], r['state']) for r in runs]}")
    finally:
        _set_paused(env, ["federated_client"], True)
        _set_paused(env, others, False)
        import signal

        for p in procs.values():
            with __import__("contextlib").suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in procs.values():
            try:
                p.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
        for f in logs.values():
            f.close()
