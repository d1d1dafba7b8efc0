"""Integration tests of the federated rounds with the real Kafka broker, PostgreSQL and Redis.

The coordinator runs as the real ``federated_round`` DAG under ``airflow dags test``. The stores run as
store agents (``python -m include.federate.agent``), one process per store, with the same client state
machine, database side and Kafka topics as the ``federated_client`` DAG: running the event-driven
client DAG itself needs a scheduler and a triggerer, which ``dags test`` does not start. Each test uses
its own migrated database and its own region (so its own Redis lock and coordinator identity).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from include.connections import postgres_dsn

ROOT = Path(__file__).resolve().parents[2]
AIRFLOW = str(Path(sys.executable).parent / "airflow")
N_TX = 600
WINDOW = {"window_start": "2026-01-01T00:00:00+00:00", "window_end": "2027-01-01T00:00:00+00:00"}
pytestmark = pytest.mark.timeout(900)


@pytest.fixture(scope="module")
def round_dsn(pg_dsn):
    from include.db.migrate import migrate

    name = f"t_federate_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    dsn = psycopg.conninfo.make_conninfo(postgres_dsn(), dbname=name)
    try:
        migrate(dsn)
        with psycopg.connect(dsn) as c:   # small bounds for small test stores (ℓ, C)
            c.execute("UPDATE server_configs SET config_value = '10' WHERE config_key = 'privacy_max_items_per_transaction'")
            c.execute("UPDATE server_configs SET config_value = '600' WHERE config_key = 'privacy_max_transaction_utility'")
        yield dsn, name
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


def _env(dbname: str) -> dict:
    env = dict(os.environ)
    conn = json.loads(env["AIRFLOW_CONN_PLATFORM_POSTGRES"])
    conn["schema"] = dbname
    env["AIRFLOW_CONN_PLATFORM_POSTGRES"] = json.dumps(conn)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _make_stores(dsn: str, n: int, *, epsilon=50.0, region=None, first_index=0, hash_patterns=False) -> list[str]:
    from include.synthetic import store_transactions

    region = region or str(uuid.uuid4())
    ids = []
    with psycopg.connect(dsn) as c:
        for k in range(n):
            sid = str(uuid.uuid4())
            c.execute("INSERT INTO stores (id, name, region_id) VALUES (%s, %s, %s)", (sid, f"t-{sid[:8]}", region))
            c.execute("INSERT INTO privacy_configs (store_id, epsilon, noise_type, hash_patterns) "
                      "VALUES (%s, %s, 'gaussian', %s)", (sid, Decimal(str(epsilon)), hash_patterns))
            rows = [(sid, list(t.items), list(t.quantities), list(t.unit_utilities),
                     sum(q * u for q, u in zip(t.quantities, t.unit_utilities)), t.transaction_date)
                    for t in store_transactions(first_index + k, N_TX, n_items=60)]
            with c.cursor() as cur:
                cur.executemany("INSERT INTO transactions (store_id, items, quantities, unit_utilities, total_utility, "
                                "transaction_date) VALUES (%s, %s, %s, %s, %s, %s)", rows)
            ids.append(sid)
    return ids


def _invitations_offset() -> int:
    from include.connections import KAFKA, KAFKA_PRODUCER, get_connection
    from include.federate.topics import INVITATIONS, ensure_topics
    from include.federate.transport import KafkaTransport

    ensure_topics(get_connection(KAFKA).extra)
    return KafkaTransport(get_connection(KAFKA).extra, get_connection(KAFKA_PRODUCER).extra).end_offset(INVITATIONS, 0)


def _start_agents(dbname: str, dsn: str, store_ids: list[str], offset: int, crash: dict | None = None):
    procs = {}
    for s in store_ids:
        cmd = [sys.executable, "-m", "include.federate.agent", "--store-id", s, "--dsn", dsn, "--rounds", "1",
               "--invitations-offset", str(offset), "--stop-after", "400"]
        if crash and s in crash:
            cmd += ["--crash-at", crash[s]]
        procs[s] = subprocess.Popen(cmd, cwd=ROOT, env=_env(dbname), stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, text=True)
    # the agents register their keys before the coordinator reads the registry
    deadline = time.monotonic() + 120
    with psycopg.connect(dsn) as c:
        while time.monotonic() < deadline:
            n = c.execute("SELECT count(*) FROM federate_parties WHERE store_id = ANY(%s::uuid[])",
                          (store_ids,)).fetchone()[0]
            if n == len(store_ids):
                break
            time.sleep(0.5)
    return procs


def _run_round(dbname: str, conf: dict) -> subprocess.CompletedProcess:
    return subprocess.run([AIRFLOW, "dags", "test", "federated_round", "-c", json.dumps(conf)], cwd=ROOT,
                          env=_env(dbname), capture_output=True, text=True, timeout=600)


def _stop(procs) -> dict:
    out = {}
    for s, p in procs.items():
        try:
            out[s] = p.communicate(timeout=60)[0]
        except subprocess.TimeoutExpired:
            p.kill()
            out[s] = p.communicate()[0]
    return out


def start_coordinator(dsn: str, params: dict):
    """The federated_round DAG's steps (open, run, finalize) in a thread of the test:
    (opened round, thread, out) with ``out["result"]`` or ``out["error"]`` once the thread ends."""
    import threading

    from include.connections import KAFKA, KAFKA_PRODUCER, REDIS, get_connection, redis_ssl_kwargs
    from include.federate import service

    cons, prod = get_connection(KAFKA).extra, get_connection(KAFKA_PRODUCER).extra
    rc = get_connection(REDIS)
    redis = {"host": rc.host, "port": rc.port, "db": rc.extra.get("db", 0), **redis_ssl_kwargs(rc.extra)}
    opened = service.open_round(dsn, params, kafka=(cons, prod), redis=redis, dag_run_id=None)
    out: dict = {}

    def coordinator():
        try:
            out["result"] = service.run_round(dsn, opened, kafka=(cons, prod), redis=redis)
        except Exception as exc:  # noqa: BLE001 - reported by the caller's assertion
            out["error"] = exc
        finally:
            service.finalize(dsn, opened, redis=redis, dag_run_id=None)

    th = threading.Thread(target=coordinator, daemon=True)
    th.start()
    return opened, th, out


def _round(dsn: str, store_ids: list[str]) -> dict:
    with psycopg.connect(dsn) as c:
        rid = c.execute("""SELECT DISTINCT fr.id FROM federated_rounds fr WHERE fr.params -> 'store_ids' ?| %s::text[]
                           ORDER BY 1""", (store_ids,)).fetchall()
        assert len(rid) == 1, rid
        cur = c.execute("SELECT * FROM federated_rounds WHERE id = %s", (rid[0][0],))
        return dict(zip([d.name for d in cur.description], cur.fetchone()))


def test_secure_round_completes_and_fills_every_table(round_dsn):
    dsn, dbname = round_dsn
    stores = _make_stores(dsn, 4)
    procs = _start_agents(dbname, dsn, stores, _invitations_offset())
    t0 = time.monotonic()
    run = _run_round(dbname, {"store_ids": stores, "epsilon": 2.0, "phase_timeout_minutes": 1, **WINDOW,
                              "top_k": 25})
    elapsed = time.monotonic() - t0
    logs = _stop(procs)
    assert run.returncode == 0 and "state=success" in run.stdout + run.stderr, \
        run.stdout[-6000:] + run.stderr[-3000:] + "\n".join(logs.values())[-3000:]
    r = _round(dsn, stores)
    assert r["status"] == "completed", r["error_message"]
    n = r["patterns_aggregated"]   # at most top_k; candidates below the noise floor are not released
    assert r["participating_clients"] == 4 and 1 <= n <= 25
    assert r["duration_seconds"] > 0 and r["mode"] == "secure" and r["error_message"] is None
    assert r["params"]["epsilon"] == 2.0 and r["privacy_cost"]["rho"] > 0
    assert [lv["survivors"] for lv in r["levels"]] == [4, 4, 4]
    with psycopg.connect(dsn) as c:
        parts = c.execute("SELECT store_id, patterns_contributed, privacy_epsilon FROM round_participations "
                          "WHERE round_id = %s", (r["id"],)).fetchall()
        assert sorted(str(p[0]) for p in parts) == sorted(stores)
        assert all(p[1] > 0 and p[2] > 0 for p in parts)
        gp = c.execute("""SELECT pattern_items, aggregated_utility, global_support, contributing_stores,
                                 client_coverage_percent, utility_stddev, utility_ci_low, utility_ci_high,
                                 confident, pattern_rank FROM global_patterns WHERE round_id = %s
                          ORDER BY pattern_rank""", (r["id"],)).fetchall()
        assert len(gp) == n
        assert all(row[1] >= 0 and row[5] > 0 and row[6] <= row[1] <= row[7] and 0 <= row[3] <= 4 for row in gp)
        assert [row[9] for row in gp] == list(range(1, n + 1))
        assert gp[0][1] >= gp[-1][1]
        latest = c.execute("SELECT count(*) FROM global_patterns_latest WHERE round_id = %s", (r["id"],)).fetchone()[0]
        assert latest == n
        ledger = c.execute("SELECT status, mode FROM privacy_budget_ledger WHERE round_id = %s", (r["id"],)).fetchall()
        assert sorted(ledger) == [("charged", "distributed")] * 4
        trace = dict(c.execute("""SELECT action_type, count(*) FROM activity_logs WHERE resource_id = %s
                                  GROUP BY action_type""", (r["id"],)).fetchall())
        # coordinator and stores both log what they send and receive; nothing was rejected
        assert trace.get("federate_message_sent", 0) >= 4 * 3 * 5 and trace.get("federate_message_received", 0) >= 4 * 3 * 5
        assert "federate_message_rejected" not in trace
        states = c.execute("SELECT count(*) FROM federate_client_states").fetchone()[0]
        assert states == 0
    from include.connections import REDIS, get_connection
    from include.federate.live import RoundLive, redis_client

    rc = get_connection(REDIS)
    live = RoundLive(redis_client({"host": rc.host, "port": rc.port, **rc.extra}), str(r["id"])).read()
    assert live["phase"] == "completed"
    print(f"secure round with 4 stores: {elapsed:.1f}s under airflow dags test, "
          f"{float(r['duration_seconds']):.1f}s in the round")


def test_round_survives_a_store_killed_mid_round(round_dsn):
    dsn, dbname = round_dsn
    stores = _make_stores(dsn, 5, first_index=10)
    victim = sorted(stores)[1]
    procs = _start_agents(dbname, dsn, stores, _invitations_offset(), crash={victim: "1:shares_forward"})
    run = _run_round(dbname, {"store_ids": stores, "epsilon": 2.0, "phase_timeout_minutes": 0.25, **WINDOW,
                              "top_k": 20})
    logs = _stop(procs)
    assert procs[victim].returncode == -9, logs[victim][-2000:]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:]
    r = _round(dsn, stores)
    assert r["status"] == "completed", r["error_message"]
    assert r["participating_clients"] == 4
    lv1 = r["levels"][0]
    assert lv1["clients"] == 5 and lv1["survivors"] == 4 and lv1["dropped"] == [f"store:{victim}"]
    with psycopg.connect(dsn) as c:
        parts = {str(p[0]) for p in c.execute("SELECT store_id FROM round_participations WHERE round_id = %s",
                                              (r["id"],)).fetchall()}
        assert parts == set(stores) - {victim}
        assert c.execute("SELECT count(*) FROM global_patterns WHERE round_id = %s",
                         (r["id"],)).fetchone()[0] == r["patterns_aggregated"] >= 1
        ledger = dict((str(s), st) for s, st in c.execute(
            "SELECT store_id, status FROM privacy_budget_ledger WHERE round_id = %s", (r["id"],)).fetchall())
        assert all(ledger[s] == "charged" for s in parts)
        # the killed store never heard the end: its reservation stays (conservative) until it resumes
        assert ledger[victim] == "reserved"


def test_too_few_clients_fails_cleanly_with_the_reason(round_dsn):
    dsn, dbname = round_dsn
    rich = _make_stores(dsn, 2, first_index=20)
    poor = _make_stores(dsn, 1, epsilon=0.01, first_index=22)     # cannot afford ε=2: declines
    stores = rich + poor
    procs = _start_agents(dbname, dsn, stores, _invitations_offset())
    run = _run_round(dbname, {"store_ids": stores, "epsilon": 2.0, "min_clients_required": 3,
                              "phase_timeout_minutes": 0.5, **WINDOW})
    _stop(procs)
    assert "state=failed" in run.stdout + run.stderr, (run.stdout + run.stderr)[-4000:]
    r = _round(dsn, stores)
    assert r["status"] == "failed" and r["completed_at"] is not None
    assert "too few clients: 2 joined" in r["error_message"] and "BudgetExceeded" in r["error_message"]
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT count(*) FROM global_patterns WHERE round_id = %s", (r["id"],)).fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM round_participations WHERE round_id = %s", (r["id"],)).fetchone()[0] == 0
        ledger = c.execute("SELECT status FROM privacy_budget_ledger WHERE round_id = %s", (r["id"],)).fetchall()
        assert sorted(x[0] for x in ledger) == ["aborted", "aborted"]      # no budget charged; the poor store reserved nothing
        assert c.execute("SELECT count(*) FROM federate_client_states").fetchone()[0] == 0


def test_round_over_keyed_item_ids(round_dsn):
    """Stores with hash_patterns: the round runs on keyed ids end to end. Without a hashed catalogue the
    round is refused with the reason; with it, global_patterns hold only ids, which key holders decode."""
    import re

    from include.connections import get_connection
    from include.privacy.hashing import HashKey

    dsn, dbname = round_dsn
    stores = _make_stores(dsn, 3, first_index=40, hash_patterns=True)
    conf = {"store_ids": stores, "epsilon": 4.0, "phase_timeout_minutes": 1, "max_pattern_length": 2,
            "top_k": 15, **WINDOW}
    with psycopg.connect(dsn) as c:
        c.execute("DELETE FROM privacy_hash_dictionary")
    run = _run_round(dbname, conf)
    assert "state=failed" in run.stdout + run.stderr and "hash-dictionary" in run.stdout + run.stderr, \
        (run.stdout + run.stderr)[-4000:]
    r = _round(dsn, stores)
    assert r["status"] == "failed" and "hash-dictionary" in r["error_message"], r["error_message"]
    with psycopg.connect(dsn) as c:
        c.execute("DELETE FROM federated_rounds WHERE id = %s", (r["id"],))

    # a key holder hashes the catalogue; the agents hold the same chain key (connection platform_privacy_hmac)
    subprocess.run([sys.executable, "-m", "include.privacy", "--dsn", dsn, "hash-dictionary"], cwd=ROOT,
                   env=_env(dbname), check=True, capture_output=True, text=True, timeout=120)
    key = HashKey(get_connection("platform_privacy_hmac").password)
    procs = _start_agents(dbname, dsn, stores, _invitations_offset())
    run = _run_round(dbname, conf)
    logs = _stop(procs)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-3000:] + "\n".join(logs.values())[-3000:]
    r = _round(dsn, stores)
    assert r["status"] == "completed", r["error_message"]
    with psycopg.connect(dsn) as c:
        names = {x[0] for x in c.execute("SELECT DISTINCT unnest(items) FROM transactions WHERE store_id = ANY(%s::uuid[])",
                                         (stores,)).fetchall()}
        rows = c.execute("""SELECT g.pattern_items, d.pattern_items FROM global_patterns g
                              JOIN global_patterns_decoded d ON d.id = g.id WHERE g.round_id = %s""",
                         (r["id"],)).fetchall()
        trace = " ".join(x[0] or "" for x in c.execute(
            "SELECT additional_data::text FROM activity_logs WHERE resource_id = %s", (r["id"],)).fetchall())
    assert rows and len(rows) == r["patterns_aggregated"]
    for hashed, decoded in rows:
        assert all(re.fullmatch(r"[0-9a-f]{16}", h) for h in hashed)
        assert set(decoded) <= names and [key.item_id(i) for i in decoded] == list(hashed)
    # no item name travelled: neither the stored patterns nor the message trace hold one
    assert trace and not [n for n in names if json.dumps(n) in trace]


@pytest.mark.timeout(1800)
def test_client_dag_takes_part_with_deferrable_waits(round_dsn):
    """The federated_client DAG itself (join + the deferrable take_part, its Kafka trigger run inline by
    `dags test`) serves one store of a round; an agent serves the other; the coordinator runs the same
    steps as the federated_round DAG, in a thread of the test."""
    from include.connections import KAFKA, KAFKA_PRODUCER, get_connection
    from include.federate.topics import INVITATIONS
    from include.federate.transport import KafkaTransport, peek

    dsn, dbname = round_dsn
    a, b = _make_stores(dsn, 2, first_index=30)
    offset = _invitations_offset()
    procs = _start_agents(dbname, dsn, [b], offset)
    cons, prod = get_connection(KAFKA).extra, get_connection(KAFKA_PRODUCER).extra
    opened, th, out = start_coordinator(dsn, {"store_ids": [a, b], "epsilon": 2.0, "phase_timeout_minutes": 10,
                                              "max_pattern_length": 2, "top_k": 10, **WINDOW})
    invitation = None
    with KafkaTransport(cons, prod).reader(INVITATIONS, 0, offset) as reader:
        deadline = time.monotonic() + 60
        while invitation is None and time.monotonic() < deadline:
            for rec in reader.poll(1.0):
                env = peek(rec.value)
                if env and env["recipient"] == f"store:{a}" and env["round_id"] == opened["round_id"]:
                    invitation = rec.value.decode()
    assert invitation is not None
    env = {**_env(dbname), "FEDERATE_CLIENT_DRAIN_SECONDS": "0"}     # defer whenever nothing is waiting
    run = subprocess.run([AIRFLOW, "dags", "test", "federated_client", "-c", json.dumps({"invitations": [invitation]})],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)
    th.join(900)
    _stop(procs)
    assert "state=success" in run.stdout + run.stderr, (run.stdout + run.stderr)[-6000:]
    assert "error" not in out, out.get("error")
    assert out["result"]["participants"] == 2
    deferrals = (run.stdout + run.stderr).count("running trigger in line")
    assert deferrals >= 3, "take_part never deferred"     # it waited for the coordinator on the Kafka trigger
    print(f"take_part deferred {deferrals} times")
    with psycopg.connect(dsn) as c:
        assert c.execute("SELECT status FROM privacy_budget_ledger WHERE round_id = %s AND store_id = %s",
                         (opened["round_id"], a)).fetchone()[0] == "charged"
        assert c.execute("SELECT count(*) FROM federate_client_states").fetchone()[0] == 0
