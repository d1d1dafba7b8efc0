"""Degraded mode: Elasticsearch or Redis down -> the shipping run fails naming the service; a real
Elasticsearch server stopped in the middle of a run -> after its restart the catch-up is exact."""
from __future__ import annotations

from datetime import timedelta

import pytest

from include.search.clients import ServiceUnavailable, es_client
from include.search.indices import apply_templates
from include.search.ship import get_state, ship_all
from tests.search.conftest import add_logs, add_metrics, add_round, es_count, make_store, pg_count
from tests.apiserver import free_port
from tests.search.spare_es import SpareElasticsearch


def test_closed_ports_fail_naming_the_service(es, ns, conn, redis_conn, rns):
    import redis

    s = make_store(conn)
    add_logs(conn, [s], 50)
    dead_es = es_client(url=f"http://127.0.0.1:{free_port()}", max_retries=0, request_timeout=3)
    with pytest.raises(ServiceUnavailable, match=r"^Elasticsearch is unavailable at http://127\.0\.0\.1:\d+"):
        ship_all(conn, dead_es, ns=ns, redis=redis_conn, redis_ns=rns)
    dead_redis = redis.Redis(port=free_port(), socket_connect_timeout=2, decode_responses=True)
    with pytest.raises(ServiceUnavailable, match=r"^Redis is unavailable at redis://"):
        ship_all(conn, es, ns=ns, redis=dead_redis, redis_ns=rns)
    assert get_state(conn, "activity_logs", ns) is None          # nothing was shipped, no mark moved
    out = ship_all(conn, es, ns=ns, redis=redis_conn, redis_ns=rns)
    assert out["activity_logs"]["created"] == pg_count(conn, "activity_logs")


@pytest.mark.slow
def test_elasticsearch_stopped_mid_way_then_exact_catch_up(conn, redis_conn, rns):
    s1, s2 = make_store(conn), make_store(conn)
    add_logs(conn, [s1, s2], 6000, span=timedelta(days=3))
    add_metrics(conn, [s1], 300)
    add_round(conn, [(["wine", "cheese"], 9.0)])
    n_logs = pg_count(conn, "activity_logs")

    spare = SpareElasticsearch()
    try:
        spare.start()
        es2 = es_client(url=spare.url, max_retries=0, request_timeout=120)
        from include.search.indices import Namespace

        ns = Namespace("outage-")
        apply_templates(es2, ns.prefix)
        batches = []

        def stop_after_third_batch(d: dict) -> None:
            if d.get("phase") == "shipping" and d["stream"] == "activity_logs":
                batches.append(d["created"])
                if len(batches) == 3:
                    spare.stop()          # a real server going away between two bulk requests

        with pytest.raises(ServiceUnavailable, match="^Elasticsearch is unavailable"):
            ship_all(conn, es2, ns=ns, redis=redis_conn, redis_ns=rns, batch_size=500,
                     on_progress=stop_after_third_batch)
        assert batches == [500, 1000, 1500]
        state = get_state(conn, "activity_logs", ns)
        assert state["docs_created"] == 1500 and "Elasticsearch is unavailable" in state["last_error"]
        assert redis_conn.hget(f"{rns}:progress:index_search:{ns.target}", "phase") == "failed"

        # the next run while it is still down fails the same way and moves nothing
        with pytest.raises(ServiceUnavailable, match="^Elasticsearch"):
            ship_all(conn, es2, ns=ns, redis=redis_conn, redis_ns=rns, batch_size=500)
        assert get_state(conn, "activity_logs", ns)["docs_created"] == 1500

        spare.start()                     # same data directory: the 1500 documents are still there
        out = ship_all(conn, es2, ns=ns, redis=redis_conn, redis_ns=rns, batch_size=500, reconcile="always")
        assert out["activity_logs"]["created"] == n_logs - 1500
        assert out["activity_logs_reconcile"]["repaired"] == 0 and not out["activity_logs_reconcile"]["extra_in_es"]
        assert es_count(es2, ns.activity_logs()) == n_logs
        assert es_count(es2, ns.metrics()) == pg_count(conn, "performance_metrics")
        assert es_count(es2, ns.global_patterns) == 1
        assert get_state(conn, "activity_logs", ns)["docs_created"] == n_logs
        assert get_state(conn, "activity_logs", ns)["last_error"] is None
    finally:
        spare.remove()
