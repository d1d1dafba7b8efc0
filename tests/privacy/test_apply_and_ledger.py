"""apply_privacy and the budget ledger against the real PostgreSQL (a temporary migrated database)."""
from __future__ import annotations

import itertools
import json
import math
from datetime import timedelta
from decimal import Decimal

import psycopg
import pytest

from include.privacy import ledger as L
from include.privacy import mechanisms as M
from include.privacy.apply import Contribution, apply_privacy, release_plan_for_round, sum_costs
from include.privacy.bounding import Bounds, Transaction, bound_transaction
from include.privacy.budget import Budget, BudgetExceeded
from include.privacy.hashing import HashKey
from tests.privacy.conftest import T0

DAY = timedelta(days=1)
W1 = (T0, T0 + DAY)
W2 = (T0 + DAY, T0 + 2 * DAY)
W12 = (T0 + DAY / 2, T0 + DAY * 3 / 2)
KEY = bytes(range(100, 132))

ITEMS = list("abcdefgh")


def baskets(n=60, offset=0):
    out = []
    for k in range(n):
        size = 1 + (k + offset) % 5
        b = [(ITEMS[(k * 3 + j + offset) % len(ITEMS)], 1 + j % 2, f"{2 + (k + j) % 9}.25") for j in range(size)]
        out.append(b)
    return out


def candidates_all(max_len=2):
    return [list(c) for j in range(1, max_len + 1) for c in itertools.combinations(ITEMS, j)]


def app_rows(conn, store_id, ledger_id=None):
    q = ("SELECT released_items, pattern_id, original_utility, noisy_utility, noise_added, epsilon_used, "
         "original_support, noisy_support, noisy_presence, ledger_id FROM privacy_applications WHERE store_id = %s")
    args = [store_id]
    if ledger_id:
        q += " AND ledger_id = %s"
        args.append(ledger_id)
    with conn.transaction():
        return conn.execute(q, args).fetchall()


def ledger_rows(conn, store_id):
    with conn.transaction():
        return conn.execute("SELECT status, rho, epsilon, delta, epsilon_display, mechanism, round_id "
                            "FROM privacy_budget_ledger WHERE store_id = %s ORDER BY created_at", (store_id,)).fetchall()


def expected_clipped(bask, bounds, cands):
    txs = [bound_transaction(Transaction.of([x[0] for x in b], [x[1] for x in b], [x[2] for x in b]), bounds)
           for b in bask]
    out = {}
    for c in cands:
        u = [t.utility_of(c) for t in txs]
        out[tuple(sorted(c))] = (sum(x for x in u if x is not None), sum(1 for x in u if x is not None))
    return out


def test_apply_public_candidates_writes_consistent_rows(conn, stores):
    sid = stores.create(epsilon=1.0, noise_type="gaussian")
    b = baskets()
    stores.add_transactions(sid, b)
    job, pids = stores.add_mining_job(sid, [["a", "d"], ["b"], ["zz"]])
    rnd = stores.add_round()
    cands = candidates_all(2)
    draws = M.noise_draws()
    c = apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1], mining_job_id=job,
                      round_id=rnd, release_name="level-2", candidates=cands)
    assert M.noise_draws() == draws + 3                       # utility, support, presence
    assert c.source == "public_candidates" and len(c.patterns) == len(cands)
    assert c.epsilon <= 1.0 and c.epsilon > 0.999 and c.delta == pytest.approx(1e-6)
    rows = app_rows(conn, sid)
    assert len(rows) == len(cands)
    bounds = Bounds(12, 20_000, 100)                          # 0302 defaults
    truth = expected_clipped(b, bounds, cands)
    released = {tuple(p.items): p for p in c.patterns}
    for items, pid, orig, noisy, noise, eps, osup, nsup, npres, lid in rows:
        key = tuple(items)
        assert orig == Decimal(truth[key][0]) / 100 and osup == truth[key][1]
        assert noise == noisy - orig
        assert noisy == Decimal(released[key].utility) / 100
        assert nsup == released[key].support and npres == released[key].presence
        assert float(eps) == pytest.approx(c.epsilon)
        assert str(lid) == c.ledger_id
        assert (pid is not None) == (key in pids) and (pid is None or str(pid) == pids[key])
    (status, rho, eps_pure, delta, eps_disp, mech, round_id), = ledger_rows(conn, sid)
    assert (status, mech, str(round_id), eps_pure) == ("charged", "discrete_gaussian", rnd, None)
    assert rho == pytest.approx(M.epsilon_to_rho(1.0, 1e-6), rel=1e-9)
    assert eps_disp == pytest.approx(c.epsilon)
    # the ledger's ρ is what OpenDP says for the planned scales
    plan = json.loads(json.dumps(c.to_message()))
    assert Contribution.from_message(plan) == c
    # a retried task returns the same released values and draws nothing
    again = apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1], mining_job_id=job,
                          round_id=rnd, release_name="level-2", candidates=cands)
    assert again == c and M.noise_draws() == draws + 3 and len(app_rows(conn, sid)) == len(cands)


def test_exact_budget_then_refused_without_noise(conn, stores):
    sid = stores.create(epsilon=1.0, noise_type="laplace")
    stores.add_transactions(sid, baskets())
    cands = candidates_all(1)
    for _ in range(2):
        c = apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1], candidates=cands, epsilon=0.5)
        assert c.epsilon <= 0.5
    n_rows, draws = len(app_rows(conn, sid)), M.noise_draws()
    with pytest.raises(BudgetExceeded, match="refused before drawing any noise") as e:
        apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1], candidates=cands, epsilon=0.01)
    assert "lifetime budget" in str(e.value) and sid in str(e.value)
    assert M.noise_draws() == draws                           # no noise drawn
    assert len(app_rows(conn, sid)) == n_rows                 # nothing written
    assert [r[0] for r in ledger_rows(conn, sid)] == ["charged", "charged"]
    budget = Budget(1.0, "laplace")
    assert L.spent(conn, sid, *W1, budget).epsilon == pytest.approx(1.0, rel=1e-9)
    assert L.headroom(conn, sid, *W1, budget) == pytest.approx(0.0, abs=1e-9)


def test_disjoint_windows_compose_in_parallel(conn, stores):
    sid = stores.create(epsilon=1.0, noise_type="gaussian")
    stores.add_transactions(sid, baskets(40))
    stores.add_transactions(sid, baskets(40, offset=3), start=W2[0])
    cands = candidates_all(2)
    a = apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1], candidates=cands)
    b = apply_privacy(conn, store_id=sid, window_start=W2[0], window_end=W2[1], candidates=cands)
    assert a.epsilon == pytest.approx(b.epsilon) and a.epsilon > 0.99     # each window its full budget
    draws = M.noise_draws()
    with pytest.raises(BudgetExceeded):
        apply_privacy(conn, store_id=sid, window_start=W12[0], window_end=W12[1], candidates=cands, epsilon=0.05)
    assert M.noise_draws() == draws
    budget = Budget(1.0, "gaussian")
    assert L.spent(conn, sid, *W12, budget).epsilon == pytest.approx(a.epsilon, rel=1e-9)   # not doubled


def test_failed_round_charges_nothing(conn, stores):
    sid = stores.create(epsilon=1.0, noise_type="laplace")
    stores.add_transactions(sid, baskets())
    rnd = stores.add_round()
    budget = Budget(1.0, "laplace")
    # distributed mode (issue 8): the store reserves the round's cost before sending its masked share
    e = L.reserve(conn, store_id=sid, window_start=W1[0], window_end=W1[1], cost=M.Cost("pure", 0.5, 1.0),
                  mechanism="discrete_laplace", budget=budget, round_id=rnd, release_name="level-1",
                  mode="distributed")
    assert e.status == "reserved"
    with pytest.raises(BudgetExceeded):
        apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1], candidates=candidates_all(1),
                      epsilon=0.1)
    assert L.abort_round(conn, rnd, "fewer than t stores reached Unmask") == 1
    assert L.headroom(conn, sid, *W1, budget) == pytest.approx(1.0)
    c = apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1], candidates=candidates_all(1),
                      round_id=rnd, release_name="level-1")
    assert c.epsilon == pytest.approx(1.0, rel=1e-9)
    assert [r[0] for r in ledger_rows(conn, sid)] == ["aborted", "charged"]
    # a charged row cannot be aborted, and costs are immutable
    assert not L.abort_charge(conn, c.ledger_id)
    with pytest.raises(psycopg.errors.CheckViolation, match="immutable"):
        with conn.transaction():
            conn.execute("UPDATE privacy_budget_ledger SET rho = 0 WHERE id = %s", (c.ledger_id,))


def test_global_cap_and_pure_store_refusing_zcdp(conn, stores, privacy_dsn):
    sid = stores.create(epsilon=5.0, noise_type="laplace")
    stores.add_transactions(sid, baskets(20))
    with psycopg.connect(privacy_dsn) as c:
        c.execute("UPDATE server_configs SET config_value = '1.5' WHERE config_key = 'privacy_budget'")
    try:
        apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1], candidates=candidates_all(1),
                      epsilon=1.0)
        with pytest.raises(BudgetExceeded, match="server_configs.privacy_budget"):
            apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1],
                          candidates=candidates_all(1), epsilon=1.0)
    finally:
        with psycopg.connect(privacy_dsn) as c:
            c.execute("UPDATE server_configs SET config_value = '0' WHERE config_key = 'privacy_budget'")
    with pytest.raises(BudgetExceeded, match="pure"):
        L.reserve(conn, store_id=sid, window_start=W2[0], window_end=W2[1], cost=M.Cost("zcdp", 0.01),
                  mechanism="discrete_gaussian", budget=Budget(5.0, "laplace"))


def test_threshold_release_of_store_proposed_patterns(conn, stores):
    sid = stores.create(epsilon=2.0, noise_type="gaussian")
    # a heavy pair (x, y) in every basket, plus noise items
    bask = [[("x", 1, "30"), ("y", 1, "40"), (ITEMS[k % 8], 1, "1")] for k in range(1500)]
    stores.add_transactions(sid, bask, step=timedelta(seconds=30))
    job, pids = stores.add_mining_job(sid, [["x", "y"], ["x"]], max_pattern_length=2)
    draws = M.noise_draws()
    c = apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1], mining_job_id=job)
    assert M.noise_draws() == draws + 2                      # threshold + support
    assert c.source == "threshold" and c.sizes == (1, 2) and c.threshold > 0
    released = {p.items for p in c.patterns}
    assert {("x",), ("y",), ("x", "y")} <= released          # 1500 × 70.00 clears the threshold
    assert all(len(p) <= 2 for p in released)
    rows = app_rows(conn, sid)
    assert len(rows) == len(c.patterns)
    by = {tuple(r[0]): r for r in rows}
    assert by[("x", "y")][2] == Decimal(1500 * 7000) / 100
    assert str(by[("x", "y")][1]) == pids[("x", "y")] and str(by[("x",)][1]) == pids[("x",)]
    (status, rho, _, delta, eps_disp, mech, _), = ledger_rows(conn, sid)
    assert mech == "gaussian_threshold" and status == "charged"
    assert 0 < delta <= 1e-7 and eps_disp <= 2.0 * (1 + 1e-9)


def test_hashed_ids(conn, stores):
    sid = stores.create(epsilon=1.0, noise_type="laplace", hash_patterns=True)
    stores.add_transactions(sid, baskets(30))
    job, pids = stores.add_mining_job(sid, [["a", "b"]])
    k = HashKey(KEY)
    cands = [[k.item_id(i) for i in c] for c in candidates_all(2)]
    with pytest.raises(ValueError, match="no hash key"):
        apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1], candidates=cands)
    c = apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1], candidates=cands,
                      mining_job_id=job, hash_key=KEY)
    assert c.hashed
    msg = json.dumps(c.to_message())
    assert '"a"' not in msg and KEY.hex() not in msg
    ab = tuple(sorted([k.item_id("a"), k.item_id("b")]))
    assert ab in {p.items for p in c.patterns}
    rows = {tuple(r[0]): r for r in app_rows(conn, sid)}
    assert str(rows[ab][1]) == pids[("a", "b")]                 # linked back through the key


def test_rls_only_the_store_sees_its_originals(conn, stores, login_roles):
    region = None
    sid = stores.create(epsilon=1.0)
    other = stores.create(epsilon=1.0)
    stores.add_transactions(sid, baskets(10))
    apply_privacy(conn, store_id=sid, window_start=W1[0], window_end=W1[1], candidates=candidates_all(1))
    with psycopg.connect(login_roles["store_manager"]) as c:
        c.execute("SELECT set_config('app.current_store_id', %s, false)", (sid,))
        assert c.execute("SELECT count(*) FROM privacy_applications").fetchone()[0] == len(ITEMS)
        assert c.execute("SELECT count(*) FROM privacy_budget_ledger").fetchone()[0] == 1
        c.execute("SELECT set_config('app.current_store_id', %s, false)", (other,))
        assert c.execute("SELECT count(*) FROM privacy_applications").fetchone()[0] == 0
        assert c.execute("SELECT count(*) FROM privacy_budget_ledger").fetchone()[0] == 0
    with psycopg.connect(login_roles["regional_coordinator"]) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT count(*) FROM privacy_applications")


def test_decode_view_for_key_holders(conn, stores, login_roles, privacy_dsn):
    from include.privacy.__main__ import main
    sid = stores.create()
    stores.add_transactions(sid, [[("milk", 1, "1"), ("bread", 1, "2")]])
    k = HashKey(KEY)
    rnd = stores.add_round()
    import os
    os.environ["AIRFLOW_CONN_T_PRIVACY_HMAC"] = json.dumps({"conn_type": "generic", "password": KEY.hex()})
    try:
        assert main(["--dsn", privacy_dsn, "hash-dictionary", "--store-id", sid, "--key-conn", "t_privacy_hmac"]) == 0
    finally:
        del os.environ["AIRFLOW_CONN_T_PRIVACY_HMAC"]
    with psycopg.connect(privacy_dsn) as c:
        c.execute("INSERT INTO global_patterns (round_id, pattern_items, aggregated_utility, global_support, "
                  "contributing_stores, client_coverage_percent) VALUES (%s, %s, 10, 1, 1, 100)",
                  (rnd, [k.item_id("bread"), k.item_id("milk")]))
    with psycopg.connect(login_roles["privacy_key_holder"]) as c:
        row = c.execute("SELECT pattern_items FROM global_patterns_decoded WHERE round_id = %s", (rnd,)).fetchone()
        assert row[0] == ["bread", "milk"]
    with psycopg.connect(login_roles["regional_coordinator"]) as c:
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            c.execute("SELECT * FROM privacy_hash_dictionary")


def test_round_plans_for_distributed_mode():
    """What issue 8 calls: per-level plans whose summed cost is the round's (ε, δ), shares per store."""
    plans = release_plan_for_round("gaussian", 1.0, 1e-6, Bounds(12, 20_000), [(1,), (2,), (3,)])
    total = sum_costs(plans)
    eps, delta = total.approx_dp(1e-6)
    assert 0.999 < eps <= 1.0
    u3 = plans[2].field_release("utility")
    share = M.noise_share([0] * 5, "gaussian", u3.scale, honest_min=12)
    assert len(share) == 5 and all(type(v) is int for v in share)
    assert math.isclose(M.share_scale("gaussian", u3.scale, 12) ** 2 * 12, u3.scale ** 2)


def test_cli_suggest_and_budget(tmp_path, stores, privacy_dsn, capsys):
    from include.privacy.__main__ import main
    f = tmp_path / "tx.jsonl"
    f.write_text("\n".join(json.dumps({"items": [f"i{j}" for j in range(n)], "quantities": [1] * n,
                                        "unit_utilities": ["2.50"] * n}) for n in range(1, 41)) + "\n")
    assert main(["suggest", "--jsonl", str(f)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["privacy_max_items"] == 38 and out["privacy_utility_cap"] == "100"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"items": ["a"], "quantities": [1]}\n')
    with pytest.raises(SystemExit, match="line 1"):
        main(["suggest", "--jsonl", str(bad)])
    sid = stores.create(epsilon=2.0)
    stores.add_transactions(sid, baskets(10))
    assert main(["--dsn", privacy_dsn, "suggest", "--store-id", sid]) == 0
    assert json.loads(capsys.readouterr().out)["n_transactions"] == 10
    assert main(["--dsn", privacy_dsn, "budget", "--store-id", sid, "--since", W1[0].isoformat(),
                 "--until", W1[1].isoformat()]) == 0
    assert json.loads(capsys.readouterr().out)["remaining"] == pytest.approx(2.0)
