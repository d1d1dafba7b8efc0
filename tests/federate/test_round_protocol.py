"""The round protocol around secure aggregation: candidate domain, post-processing, and whole rounds
between the real coordinator and store clients over the real Kafka broker (data and ledgers in
memory; the database-backed round is tested in test_round_kafka.py)."""
from __future__ import annotations

import json
import threading
import uuid
from decimal import Decimal

import numpy as np
import pytest

from include.federate import candidates as C
from include.federate.aggregate import LevelRelease, build_global_patterns
from include.federate.client import StoreRoundClient, candidate_counts, run_round_client
from include.federate.keys import KeyRegistry, PartyIdentity
from include.federate.messages import sign_message
from include.federate.protocol import RoundSpec, coordinator_party, store_party
from include.privacy.bounding import Bounds, Transaction, bound_transactions
from include.privacy.vectors import candidate_vectors
from include.synthetic import catalog, store_transactions

pytestmark = pytest.mark.timeout(300)


def _bounded(i: int, n: int = 300, n_items: int = 60):
    txs = store_transactions(i, n, n_items=n_items)
    return bound_transactions([Transaction(t.items, t.quantities, t.unit_utilities) for t in txs], Bounds(8, 30000, 100))


# -- candidate domain ------------------------------------------------------------------------------

def test_level_specs_generate_the_same_ordered_list_on_both_sides():
    items = catalog(30)
    s1 = C.spec(1, items=reversed(items))
    assert C.generate(s1) == [(i,) for i in sorted(items)]
    released = {1: (C.generate(s1), list(range(30)))}
    s2 = C.next_spec(2, released, keep_items=10)
    c2 = C.generate(s2)
    assert len(c2) == 45 and all(a < b for a, b in c2)
    assert set(s2["items"]) == {c[0] for c in C.generate(s1)[-10:]}     # the 10 best noisy utilities
    released[2] = (c2, list(range(45)))
    s3 = C.next_spec(3, released, keep_items=10, keep_pairs=12, min_kept_subpairs=2)
    c3 = C.generate(json.loads(json.dumps(s3)))                          # through the wire form
    kept = {tuple(p) for p in s3["pairs"]}
    assert c3 == sorted(set(c3)) and c3
    assert all(sum(p in kept for p in ((a, b), (a, c), (b, c))) >= 2 for a, b, c in c3)
    assert C.digest(c3) == C.digest(C.generate(s3)) != C.digest(c3[:-1])
    assert len(C.generate({**s3, "min_kept_subpairs": 1})) >= len(c3)


def test_fast_counts_equal_the_privacy_package_vectors():
    txs = _bounded(3, 400)
    items = catalog(60)
    for cands in (C.generate(C.spec(1, items=items)), C.generate(C.spec(2, items=items[:20])),
                  C.generate(C.spec(3, items=items[:20], pairs=C.generate(C.spec(2, items=items[:20]))[:60]))):
        ref = candidate_vectors(txs, cands)
        got = candidate_counts(txs, cands)
        assert got == {"utility": list(ref.utility), "support": list(ref.support), "presence": list(ref.presence)}


# -- post-processing -------------------------------------------------------------------------------

def test_global_patterns_clamp_cover_interval_and_flag():
    cands = [("a",), ("b",), ("c",), ("d",)]
    total = np.array([50_000, -700, 12_000, 9_000,  40, -3, 7, 2,  5, -1, 3, 9], dtype=np.int64)
    rel = LevelRelease.from_total(1, cands, total, n_stores=4, sigma={"utility": 1000.0})
    rows, summary = build_global_patterns([rel], utility_scale=100, top_k=3)
    assert [r.pattern_items for r in rows] == [["a"], ["c"], ["d"]]
    a, c, d = rows
    assert a.aggregated_utility == Decimal("500.00") and a.global_support == 40 and a.contributing_stores == 4
    assert d.contributing_stores == 4 and d.client_coverage_percent == Decimal("100.00")   # clamped to n
    assert a.utility_ci_low == Decimal("480.40") and a.utility_ci_high == Decimal("519.60")
    assert a.confident and c.confident and not d.confident          # d is the top-k boundary itself
    rows, _ = build_global_patterns([rel], utility_scale=100, top_k=None, min_utility=Decimal("100"))
    assert [r.pattern_items for r in rows] == [["a"], ["c"]] and all(r.confident for r in rows)
    rows, s = build_global_patterns([rel], utility_scale=100, top_k=None, min_utility_ratio=0.5)
    assert [r.pattern_items for r in rows] == [["a"]] and s["threshold_units"] == pytest.approx(0.5 * 70_300)
    neg = LevelRelease.from_total(1, [("x",)], np.array([-5, -2, -1]), n_stores=2, sigma={"utility": 10.0})
    assert build_global_patterns([neg], utility_scale=100, top_k=1)[0] == []      # below the noise floor
    rows, _ = build_global_patterns([neg], utility_scale=100, top_k=1, noise_floor_z=-1)
    assert rows[0].aggregated_utility == 0 and rows[0].global_support == 0 and rows[0].contributing_stores == 0


# -- whole rounds over Kafka -----------------------------------------------------------------------

@pytest.fixture(scope="module")
def kafka():
    from include.connections import KAFKA, KAFKA_PRODUCER, get_connection
    from include.federate.topics import ensure_topics

    cons, prod = get_connection(KAFKA).extra, get_connection(KAFKA_PRODUCER).extra
    ensure_topics(cons)
    return cons, prod



def _round(kafka, mode: str, n: int = 3, *, forged: bool = False, budget: float = 50.0,
           proposal_epsilon: str | None = None, planted: list | None = None):
    from include.federate.coordinator import RoundCoordinator
    from include.federate.memory import MemoryHooks, MemoryLedger, MemoryStoreSide
    from include.federate.topics import TO_COORDINATOR, TO_STORES
    from include.federate.transport import KafkaTransport, addressed_to

    cons, prod = kafka
    tr = KafkaTransport(cons, prod)
    coord = PartyIdentity.generate(coordinator_party(f"t{uuid.uuid4().hex[:6]}"))
    ids = {p: PartyIdentity.generate(p) for p in (store_party(uuid.uuid4()) for _ in range(n))}
    reg = KeyRegistry.of([coord, *ids.values()])
    sides = {p: MemoryStoreSide(p, reg, _bounded(k) + list(planted or []), MemoryLedger(budget))
             for k, p in enumerate(sorted(ids))}
    rid = str(uuid.uuid4())
    sp, cp = tr.partition_of(TO_STORES, rid), tr.partition_of(TO_COORDINATOR, rid)
    spec = RoundSpec(round_id=rid, round_number=1, coordinator_id=coord.party_id, mode=mode, noise_type="gaussian",
                     epsilon="2.0", delta="1e-06", window_start="2026-01-01T00:00:00+00:00",
                     window_end="2027-01-01T00:00:00+00:00", max_pattern_length=3, max_items=8, utility_cap=30000,
                     utility_scale=100, split={"utility": "0.6", "support": "0.3", "presence": "0.1"},
                     invited=sorted(ids), min_clients=2, phase_timeout_seconds=20,
                     to_stores=[TO_STORES, sp, tr.end_offset(TO_STORES, sp)], to_coordinator=[TO_COORDINATOR, cp],
                     proposal_epsilon=proposal_epsilon)
    coff = tr.end_offset(TO_COORDINATOR, cp)
    hooks = MemoryHooks(reg)
    coordinator = RoundCoordinator(spec, coord, tr, hooks, catalogue=catalog(60), coordinator_offset=coff,
                                   top_k=10, keep_items=15, keep_pairs=30)
    invitations = {p: sign_message(coord, round_id=rid, phase="invite", msg_type="invitation",
                                   payload=spec.to_payload(), recipient=p) for p in ids}
    outcomes = {}

    def plain(p):
        outcomes[p] = run_round_client(StoreRoundClient(ids[p], sides[p], invitations[p]), KafkaTransport(cons, prod),
                                       timeout=120)

    def deferring(p):   # state through JSON between every message, as between deferrals of the DAG task
        t = KafkaTransport(cons, prod)
        client = StoreRoundClient(ids[p], sides[p], invitations[p])
        t.publish_many(TO_COORDINATOR, client.start(), partition=cp, key=rid)
        with t.reader(TO_STORES, sp, spec.to_stores[2]) as reader:
            for _ in range(600):
                for rec in reader.poll(0.5):
                    if addressed_to(rec.value, round_id=rid, party_id=p):
                        state = json.loads(json.dumps(client.to_state()))
                        client = StoreRoundClient.from_state(state, ids[p], sides[p])
                        t.publish_many(TO_COORDINATOR, client.handle(rec.value), partition=cp, key=rid)
                if client.finished:
                    break
        outcomes[p] = client.outcome

    order = sorted(ids)
    threads = [threading.Thread(target=deferring if k == 0 else plain, args=(p,), daemon=True)
               for k, p in enumerate(order)]
    if forged:   # an outsider's join and a tampered one: both rejected and logged, the round goes on
        intruder = PartyIdentity.generate("store:intruder")
        tr.publish(TO_COORDINATOR, sign_message(intruder, round_id=rid, phase="invite", msg_type="join", payload={},
                                                recipient=coord.party_id), partition=cp)
        fake = sign_message(ids[order[0]], round_id=rid, phase="invite", msg_type="decline",
                            payload={"reason": "x"}, recipient=coord.party_id)
        tampered = json.loads(fake.to_json())
        tampered["payload"]["reason"] = "tampered"
        from confluent_kafka import Producer

        from tests.tlsmode import kafka_base

        pr = Producer(kafka_base(prod))  # TLS mode: the connection's security settings too (docs/tls.md)
        pr.produce(TO_COORDINATOR, json.dumps(tampered).encode(), partition=cp)
        pr.flush(10)
    for th in threads:
        th.start()
    result = coordinator.run()
    for th in threads:
        th.join(60)
    return result, outcomes, sides, hooks


def test_secure_round_over_kafka_with_a_deferring_client_and_forged_messages(kafka):
    result, outcomes, sides, hooks = _round(kafka, "secure", forged=True)
    assert result.status == "completed", result.reason
    # top_k = 10 caps the release; candidates under the noise floor are not released, so a draw may give fewer
    assert 1 <= len(result.patterns) <= 10 and [lv["survivors"] for lv in result.levels] == [3, 3, 3]
    utilities = [p.aggregated_utility for p in result.patterns]
    assert utilities == sorted(utilities, reverse=True)
    assert all(o.status == "completed" and o.included_levels == [1, 2, 3] for o in outcomes.values())
    assert all(c.status == "charged" for s in sides.values() for c in s.ledger.charges)
    rejected = [a for a in hooks.audit_log if a[0] == "rejected"]
    assert {a[2] for a in rejected} == {"unknown_sender", "bad_signature"}


def test_local_round_over_kafka(kafka):
    result, outcomes, sides, _ = _round(kafka, "local")
    assert result.status == "completed", result.reason
    assert all(o.included_levels == [1, 2, 3] for o in outcomes.values())


def test_store_that_cannot_afford_the_round_declines_before_any_noise(kafka):
    from include.privacy import mechanisms as M

    before = M.noise_draws()
    result, outcomes, sides, _ = _round(kafka, "secure", n=2, budget=0.01)
    assert result.status == "failed" and "too few clients: 0 joined" in result.reason
    assert all(o.status == "declined" and "BudgetExceeded" in o.reason for o in outcomes.values())
    assert all(not s.ledger.charges for s in sides.values())
    assert M.noise_draws() == before


def test_store_proposed_candidates_extend_the_domain_and_are_charged(kafka):
    """A pair sold in every store but absent from the public catalogue can only be found through the
    stores' proposals (OpenDP threshold release at join); the proposals cost is part of each charge."""
    from include.federate.protocol import proposal_plan, release_plans
    from include.privacy.bounding import BoundedTransaction

    planted = [BoundedTransaction(("zz-anchovy", "zz-baguette"), (7500, 7500))] * 300
    result, outcomes, sides, hooks = _round(kafka, "secure", planted=planted, proposal_epsilon="2.0")
    assert result.status == "completed", result.reason
    assert result.proposals.get("2", 0) >= 1            # counts of the proposed candidates per size
    found = [r.pattern_items for r in result.patterns]
    assert ["zz-anchovy", "zz-baguette"] in found                  # only proposals put it in the domain
    for p, o in outcomes.items():
        assert o.included_levels[0] == 0 and o.charged                # proposals released: charged

    def spec_like(pe):
        return RoundSpec(round_id="r", round_number=1, coordinator_id="coordinator:x", mode="secure",
                         noise_type="gaussian", epsilon="2.0", delta="1e-06", window_start="2026-01-01T00:00:00+00:00",
                         window_end="2027-01-01T00:00:00+00:00", max_pattern_length=3, max_items=8,
                         utility_cap=30000, utility_scale=100, split={"utility": "0.6", "support": "0.3",
                                                                      "presence": "0.1"},
                         invited=[], min_clients=2, phase_timeout_seconds=20, to_stores=["t", 0, 0],
                         to_coordinator=["t", 0], proposal_epsilon=pe)

    with_p, without = release_plans(spec_like("2.0"))[1], release_plans(spec_like(None))[1]
    assert with_p.rho == pytest.approx(without.rho + proposal_plan(spec_like("2.0")).cost.rho)
    for side in sides.values():
        [charge] = side.ledger.charges
        assert charge.status == "charged" and charge.cost.rho == pytest.approx(with_p.rho)
