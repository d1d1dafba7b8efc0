"""Templates and exactly-once shipping against the real Elasticsearch and PostgreSQL."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import psycopg

from include.search.indices import TEMPLATE_FILES, apply_templates, delete_expired_indices, expired_indices
from include.search.ship import (ACTIVITY_LOGS, PERFORMANCE_METRICS, get_state, reconcile_stream, ship_all,
                                 ship_global_patterns, ship_stream)
from tests.search.conftest import add_logs, add_metrics, add_round, es_count, make_store, pg_count


def test_templates_are_applied_with_explicit_mappings_and_no_replicas(es, ns):
    names = apply_templates(es, ns.prefix)     # the fixture applied them once: applying again is a no-op PUT
    assert len(names) == len(TEMPLATE_FILES)
    for name in names:
        t = es.indices.get_index_template(name=name)["index_templates"][0]["index_template"]
        assert t["template"]["settings"]["index"]["number_of_replicas"] == "0"
        assert all(p.startswith(ns.prefix) for p in t["index_patterns"])
    gp = es.indices.get_index_template(name=ns.template_name("global-patterns"))["index_templates"][0]
    props = gp["index_template"]["template"]["mappings"]["properties"]
    assert props["pattern_items"]["type"] == "keyword" and props["items_text"]["type"] == "text"
    for f in ("aggregated_utility", "global_support", "client_coverage_percent", "round_number",
              "utility_ci_low", "utility_ci_high", "utility_std", "confident"):
        assert f in props
    al = es.indices.get_index_template(name=ns.template_name("activity-logs"))["index_templates"][0]
    assert al["index_template"]["template"]["mappings"]["dynamic"] == "strict"


def test_pipeline_run_ships_every_row_once_and_a_second_run_adds_nothing(es, ns, conn, redis_conn, rns):
    s1, s2 = make_store(conn), make_store(conn)
    add_logs(conn, [s1, s2, None], 2500, span=timedelta(days=45))   # two or three monthly indices
    add_metrics(conn, [s1, s2], 1200, span=timedelta(days=45))
    add_round(conn, [(["wine", "cheese"], 50.0), (["bread", "butter"], 20.0)])
    add_round(conn, [(["beer"], 5.0)], status="running")              # not completed: not indexed

    out = ship_all(conn, es, ns=ns, redis=redis_conn, redis_ns=rns, batch_size=1000)
    n_logs, n_metrics = pg_count(conn, "activity_logs"), pg_count(conn, "performance_metrics")
    assert es_count(es, ns.activity_logs()) == n_logs
    assert es_count(es, ns.metrics()) == n_metrics
    assert es_count(es, ns.global_patterns) == 2
    assert out["activity_logs"]["created"] == n_logs and out["activity_logs"]["batches"] >= 3
    months = sorted(es.indices.get(index=ns.activity_logs()).keys())
    assert len(months) >= 2 and all(m.startswith(f"{ns.prefix}activity-logs-20") for m in months)
    doc = es.get(index=months[-1], id=es.search(index=months[-1], size=1)["hits"]["hits"][0]["_id"])
    row = conn.execute("SELECT store_id::text, action_type FROM activity_logs WHERE id = %s",
                       (doc["_id"],)).fetchone()
    assert (doc["_source"]["store_id"], doc["_source"]["action_type"]) == row

    again = ship_all(conn, es, ns=ns, redis=redis_conn, redis_ns=rns, batch_size=1000, reconcile="always")
    assert again["activity_logs"]["created"] == 0 and again["performance_metrics"]["created"] == 0
    assert again["global_patterns"] == []
    assert again["activity_logs_reconcile"]["repaired"] == 0
    assert es_count(es, ns.activity_logs()) == n_logs and es_count(es, ns.metrics()) == n_metrics
    assert es_count(es, ns.global_patterns) == 2
    state = get_state(conn, "activity_logs", ns)
    assert state["docs_created"] == n_logs and state["last_error"] is None
    progress = redis_conn.hgetall(f"{rns}:progress:index_search:{ns.target}")
    assert progress["phase"] == "done" and 0 < redis_conn.ttl(f"{rns}:progress:index_search:{ns.target}") <= 86400


def test_late_commit_inside_the_overlap_and_backfill_found_by_reconcile(es, ns, conn):
    s = make_store(conn)
    add_logs(conn, [s], 200, span=timedelta(hours=2))
    ship_stream(conn, es, ACTIVITY_LOGS, ns=ns)
    hwm = get_state(conn, "activity_logs", ns)["hwm_time"]
    # a transaction that started before the last run and committed after it: created_at < high-water mark
    late = add_logs(conn, [s], 5, start=hwm - timedelta(minutes=3), span=timedelta(minutes=2), seed=7)
    res = ship_stream(conn, es, ACTIVITY_LOGS, ns=ns)
    assert res.created == late
    assert es_count(es, ns.activity_logs()) == pg_count(conn, "activity_logs")
    # a backfill far below the mark is not seen by the incremental pass, but by the reconciliation
    add_logs(conn, [s], 7, start=datetime.now(timezone.utc) - timedelta(days=40), span=timedelta(hours=1), seed=8)
    assert ship_stream(conn, es, ACTIVITY_LOGS, ns=ns).created == 0
    rec = reconcile_stream(conn, es, ACTIVITY_LOGS, ns=ns)
    assert rec.repaired == 7 and rec.months_repaired
    assert es_count(es, ns.activity_logs()) == pg_count(conn, "activity_logs")
    assert reconcile_stream(conn, es, ACTIVITY_LOGS, ns=ns).repaired == 0


def test_rows_beyond_retention_are_not_shipped_and_old_indices_are_deleted(es, ns, conn):
    s = make_store(conn)
    add_logs(conn, [s], 10, start=datetime.now(timezone.utc) - timedelta(days=400), span=timedelta(days=1), seed=3)
    add_logs(conn, [s], 10, span=timedelta(days=1), seed=4)
    ship_stream(conn, es, ACTIVITY_LOGS, ns=ns)
    ship_stream(conn, es, PERFORMANCE_METRICS, ns=ns)
    assert es_count(es, ns.activity_logs()) == pg_count(conn, "activity_logs") - 10
    # an index of a month older than the retention (created directly: shipping never creates one)
    old = ns.activity_logs("2020.01")
    es.indices.create(index=old)
    assert old in expired_indices(es, prefix=ns.prefix)
    assert delete_expired_indices(es, prefix=ns.prefix) == [old]
    assert not es.indices.exists(index=old)
    assert es_count(es, ns.activity_logs()) > 0     # the current month is kept


def test_global_patterns_shipped_when_round_completes_with_confidence_fields(es, ns, conn):
    rid, number = add_round(conn, [(["cheddar", "crackers"], 12.0)], status="running")
    assert ship_global_patterns(conn, es, ns=ns) == []
    from include.db.rounds import set_round_status

    set_round_status(conn, rid, "completed")
    conn.commit()
    shipped = ship_global_patterns(conn, es, ns=ns)
    assert [(s["round_number"], s["created"]) for s in shipped] == [(number, 1)]
    assert ship_global_patterns(conn, es, ns=ns) == []
    es.indices.refresh(index=ns.global_patterns)
    src = es.search(index=ns.global_patterns)["hits"]["hits"][0]["_source"]
    assert src["pattern_items"] == ["cheddar", "crackers"] and src["round_number"] == number
    assert src["items_text"] == "cheddar crackers" and src["pattern_length"] == 2


def test_confidence_columns_are_indexed_when_the_table_has_them(es, ns, fresh_dsn):
    # migration 0400 of the federated issue adds them (added here if that migration is absent)
    with psycopg.connect(fresh_dsn) as c:
        c.execute("ALTER TABLE global_patterns ADD COLUMN IF NOT EXISTS utility_stddev DECIMAL,"
                  " ADD COLUMN IF NOT EXISTS utility_ci_low DECIMAL, ADD COLUMN IF NOT EXISTS utility_ci_high DECIMAL,"
                  " ADD COLUMN IF NOT EXISTS confident BOOLEAN")
        c.commit()
        rid, _ = add_round(c, [(["tea", "biscuits"], 30.0)])
        c.execute("UPDATE global_patterns SET utility_stddev = 2.5, utility_ci_low = 25.1, utility_ci_high = 34.9,"
                  " confident = true WHERE round_id = %s", (rid,))
        c.commit()
        ship_global_patterns(c, es, ns=ns)
    es.indices.refresh(index=ns.global_patterns)
    src = es.search(index=ns.global_patterns)["hits"]["hits"][0]["_source"]
    assert (src["utility_std"], src["utility_ci_low"], src["utility_ci_high"], src["confident"]) == \
        (2.5, 25.1, 34.9, True)


def test_concurrent_shippers_of_one_stream_are_serialised(es, ns, conn, fresh_dsn):
    """Two shippers of one stream: the second is refused while the first holds the stream's lock."""
    from include.search.ship import ShipBusy, _AdvisoryLock, _stream_key

    make_store(conn)
    with psycopg.connect(fresh_dsn) as other, _AdvisoryLock(other, _stream_key("activity_logs", ns)):
        try:
            ship_stream(conn, es, ACTIVITY_LOGS, ns=ns)
            raise AssertionError("expected ShipBusy")
        except ShipBusy as e:
            assert "activity_logs" in str(e)
    assert ship_stream(conn, es, ACTIVITY_LOGS, ns=ns).created == pg_count(conn, "activity_logs")
    assert isinstance(get_state(conn, "activity_logs", ns)["hwm_id"], uuid.UUID)
