"""No key in the logs of a full pipeline run (issue 12 item 4): main_job's output and every log it wrote
(each DAG's `airflow dags test` output with its task logs, the store agents' logs), the api-server's log
after the dashboard tests, the run's activity_logs rows and its Redis keys hold no key of the stack
(tests/secretscan.py) and no user's password, in plain, hex or base64 form."""
from __future__ import annotations

from include.search.clients import redis_client
from tests.secretscan import leaks, stack_secrets
from tests.ui.conftest import PASSWORD


def test_no_secret_in_the_logs_of_a_full_run(pipeline_world, server, api_login_role, db):
    w = pipeline_world
    server.get("/platform/v1/me", server.token(w, "admin"))   # at least one login and one API call in its log
    haystacks = {str(p.name): p.read_text(errors="replace") for p in w.logs}
    haystacks["api-server log"] = server.log.read_text(errors="replace")
    haystacks["activity_logs"] = "\n".join(
        f"{d} {a} {u}" for d, a, u in db.execute(
            "SELECT action_description, additional_data::text, user_agent FROM activity_logs"))
    r = redis_client()
    haystacks["redis"] = "\n".join(f"{k} {r.dump(k)!r}" for k in r.scan_iter(f"{w.redis_ns}:*"))
    # the haystacks are the run's: every DAG step and agent logged, the server answered, rows were audited
    names = " ".join(haystacks)
    for dag in ("ingest_transaction_files", "mine_store_patterns", "privatize_store_patterns", "federated_round",
                "index_search"):
        assert f"main-{dag}" in names, f"no log of {dag} among {sorted(haystacks)}"
    assert "main-agent-" in names
    assert sum(len(t) for t in haystacks.values()) > 100_000
    assert "/platform/v1/auth/token" in haystacks["api-server log"] and "api_login" in haystacks["activity_logs"]
    found = leaks(stack_secrets(**{"test login password": api_login_role[1], "user password": PASSWORD}), haystacks)
    assert not found, f"secrets found in the run's logs: {found}"
