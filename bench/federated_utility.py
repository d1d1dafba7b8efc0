"""Utility and speed of federated rounds: 20 synthetic stores x 20,000 transactions.

The peer is pooled, non-private mining (``include.mining`` over all stores' transactions together):
its top-100 itemsets of size <= 3 by exact utility are the truth. Each setting runs one real round:
the coordinator (this process) and 20 store agents (separate processes, the client code of the
``federated_client`` DAG) talk over the real Kafka broker; store data and ledgers are in memory (no
database). Printed per setting: F1@100 (the round releases exactly top_k=100 patterns, so F1 =
precision = recall), the median relative utility error over true positives, seconds per round.

    python bench/federated_utility.py [--stores 20] [--transactions 20000] [--eps 0.25,0.5,1,2]
                                      [--modes secure,local] [--json out.json]

Targets (issue 8): secure F1@100 >= 0.85 at eps=1 and >= 0.80 at eps=0.5, median relative error
<= 3 % at eps=1, secure clearly better than local at eps <= 1, < 60 s per round.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from include.connections import KAFKA, KAFKA_PRODUCER, get_connection  # noqa: E402

N_ITEMS = 200
SEED = 2026
HISTORIC_SEED = 1999   # "last quarter": bounds come from other data than the rounds read


def _load_env() -> None:
    if os.environ.get("AIRFLOW_CONN_PLATFORM_KAFKA"):
        return
    import shlex
    import subprocess

    out = subprocess.run(["bash", "-c", f"set -a; source {shlex.quote(str(ROOT / '.local/env.sh'))}; env -0"],
                         check=True, capture_output=True).stdout
    for entry in out.split(b"\0"):
        if b"=" in entry:
            k, v = entry.decode().split("=", 1)
            os.environ.setdefault(k, v)


def _store_agent(index: int, n_tx: int, party: str, key: bytes, registry: dict, bounds: tuple, rounds: int,
                 inv_offset: int, ready) -> None:
    from include.federate.client import run_store_agent
    from include.federate.keys import KeyRegistry, PartyIdentity
    from include.federate.memory import MemoryLedger, MemoryStoreSide
    from include.federate.transport import KafkaTransport
    from include.privacy.bounding import Bounds, Transaction, bound_transactions
    from include.synthetic import store_transactions

    txs = store_transactions(index, n_tx, n_items=N_ITEMS, seed=SEED)
    bt = bound_transactions([Transaction(t.items, t.quantities, t.unit_utilities) for t in txs], Bounds(*bounds))
    side = MemoryStoreSide(party, KeyRegistry.from_dict(registry), bt, MemoryLedger(1000.0))
    tr = KafkaTransport(get_connection(KAFKA).extra, get_connection(KAFKA_PRODUCER).extra)
    ready.set()
    run_store_agent(PartyIdentity.from_private_bytes(party, key), side, tr, rounds=rounds,
                    invitations_offset=inv_offset, stop_after=3600)


def _cpu_seconds(procs) -> float:
    """CPU time (user + system) used so far by this process and the store agents."""
    import psutil

    total = sum(psutil.Process().cpu_times()[:2])
    for pr in procs:
        try:
            total += sum(psutil.Process(pr.pid).cpu_times()[:2])
        except psutil.Error:
            pass
    return total


def truth(n_stores: int, n_tx: int, k: int = 100, max_len: int = 3) -> dict:
    from include.mining.api import Miner
    from include.synthetic import store_transactions

    m = Miner()
    total = Decimal(0)
    for i in range(n_stores):
        for t in store_transactions(i, n_tx, n_items=N_ITEMS, seed=SEED):
            m.add(t.items, t.quantities, t.unit_utilities)
            total += sum(q * u for q, u in zip(t.quantities, t.unit_utilities))
    frac = Decimal("0.002")
    while True:
        pats = m.mine(total * frac, 0.0, max_len).patterns
        if len(pats) >= k or frac < Decimal("1e-7"):
            break
        frac /= 4
    pats.sort(key=lambda p: (-Decimal(p.utility), p.items))
    return {tuple(sorted(p.items)): Decimal(p.utility) for p in pats[:k]}


def historic_bounds(n_stores: int):
    from include.privacy.bounding import Transaction, suggest_bounds
    from include.synthetic import store_transactions

    txs = [Transaction(t.items, t.quantities, t.unit_utilities) for i in range(n_stores)
           for t in store_transactions(i, 2000, n_items=N_ITEMS, seed=HISTORIC_SEED)]
    return suggest_bounds(txs, length_percentile=95.0, utility_percentile=99.0)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--stores", type=int, default=20)
    ap.add_argument("--transactions", type=int, default=20000)
    ap.add_argument("--eps", default="0.25,0.5,1,2")
    ap.add_argument("--modes", default="secure,local")
    ap.add_argument("--delta", type=float, default=1e-6)
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--phase-timeout", type=int, default=120)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    _load_env()

    from include.federate import topics
    from include.federate.coordinator import RoundCoordinator
    from include.federate.keys import KeyRegistry, PartyIdentity
    from include.federate.memory import MemoryHooks
    from include.federate.protocol import RoundSpec, coordinator_party, store_party
    from include.federate.transport import KafkaTransport
    from include.synthetic import catalog

    eps_list = [float(e) for e in args.eps.split(",")]
    modes = args.modes.split(",")
    t0 = time.time()
    true_top = truth(args.stores, args.transactions, args.top_k)
    sizes = {n: sum(1 for k in true_top if len(k) == n) for n in (1, 2, 3)}
    print(f"truth: pooled top-{args.top_k} by exact utility in {time.time() - t0:.1f}s; "
          f"itemsets by size {sizes}", flush=True)
    sb = historic_bounds(args.stores)
    bounds = (sb.max_items, sb.utility_cap, sb.utility_scale)
    print(f"bounds from historic data: l={sb.max_items} C={sb.utility_cap / sb.utility_scale} "
          f"(clipped share on historic data {sb.clipped_share:.3%})", flush=True)

    cons, prod = get_connection(KAFKA).extra, get_connection(KAFKA_PRODUCER).extra
    topics.ensure_topics(cons)
    tr = KafkaTransport(cons, prod)
    coord = PartyIdentity.generate(coordinator_party("bench"))
    ids = {store_party(f"bench-{uuid.uuid4().hex[:8]}-{i:02d}"): None for i in range(args.stores)}
    ids = {p: PartyIdentity.generate(p) for p in ids}
    registry = KeyRegistry.of([coord, *ids.values()])
    inv_offset = tr.end_offset(topics.INVITATIONS, 0)
    n_rounds = len(eps_list) * len(modes)
    ctx = mp.get_context("spawn")
    procs, events = [], []
    t0 = time.time()
    for i, p in enumerate(sorted(ids)):
        ev = ctx.Event()
        pr = ctx.Process(target=_store_agent, args=(i, args.transactions, p, ids[p].private_bytes(),
                                                   registry.to_dict(), bounds, n_rounds, inv_offset, ev), daemon=True)
        pr.start()
        procs.append(pr)
        events.append(ev)
    for ev in events:
        ev.wait(900)
    print(f"{args.stores} store agents ready in {time.time() - t0:.1f}s (data generated and clipped in each)",
          flush=True)

    results = []
    for mode in modes:
        for eps in eps_list:
            rid = str(uuid.uuid4())
            sp, cp = tr.partition_of(topics.TO_STORES, rid), tr.partition_of(topics.TO_COORDINATOR, rid)
            spec = RoundSpec(round_id=rid, round_number=len(results) + 1, coordinator_id=coord.party_id, mode=mode,
                             noise_type="gaussian", epsilon=repr(eps), delta=repr(args.delta),
                             window_start="2026-01-01T00:00:00+00:00", window_end="2027-01-01T00:00:00+00:00",
                             max_pattern_length=3, max_items=bounds[0], utility_cap=bounds[1],
                             utility_scale=bounds[2], split={"utility": "0.6", "support": "0.3", "presence": "0.1"},
                             invited=sorted(ids), min_clients=2, phase_timeout_seconds=args.phase_timeout,
                             to_stores=[topics.TO_STORES, sp, tr.end_offset(topics.TO_STORES, sp)],
                             to_coordinator=[topics.TO_COORDINATOR, cp])
            coff = tr.end_offset(topics.TO_COORDINATOR, cp)
            cpu0 = _cpu_seconds(procs)
            t1 = time.time()
            res = RoundCoordinator(spec, coord, tr, MemoryHooks(registry), catalogue=catalog(N_ITEMS),
                                   coordinator_offset=coff, top_k=args.top_k).run()
            secs = time.time() - t1
            cpu = _cpu_seconds(procs) - cpu0
            load = os.getloadavg()[0]
            if res.status != "completed":
                print(f"{mode} eps={eps}: FAILED {res.reason}", flush=True)
                results.append({"mode": mode, "epsilon": eps, "status": res.status, "reason": res.reason})
                continue
            released = {tuple(sorted(p.pattern_items)): p.aggregated_utility for p in res.patterns}
            tp = set(released) & set(true_top)
            f1 = 2 * len(tp) / (len(released) + len(true_top)) if released else 0.0
            rel = [abs(released[k] - true_top[k]) / true_top[k] for k in tp]
            med = float(statistics.median(rel)) if rel else float("nan")
            conf = [p for p in res.patterns if p.confident]
            false_conf = sum(1 for p in conf if tuple(sorted(p.pattern_items)) not in true_top)
            row = {"mode": mode, "epsilon": eps, "status": "completed", "f1_at_100": round(f1, 3),
                   "median_relative_error": round(med, 4), "seconds": round(secs, 1),
                   "cpu_seconds": round(cpu, 1), "load_average": round(load, 1),
                   "levels": [(lv["candidates"], lv["seconds"]) for lv in res.levels],
                   "confident": len(conf), "false_confident": false_conf}
            results.append(row)
            print(f"{mode:>6} eps={eps:<5} F1@100={f1:.3f}  median rel. error={med:.2%}  "
                  f"round {secs:.1f}s (CPU {cpu:.0f}s in all parties, load avg {load:.0f})  "
                  f"levels(candidates, s)={row['levels']}  confident {len(conf)} "
                  f"({false_conf} false)", flush=True)
    for pr in procs:
        pr.join(30)
        if pr.is_alive():
            pr.terminate()
    print("\nsummary (targets: secure F1 >= 0.85 @1, >= 0.80 @0.5; med. rel. err <= 3% @1; < 60 s/round)")
    print(f"{'mode':>6} " + " ".join(f"{'eps=' + str(e):>18}" for e in eps_list))
    for mode in modes:
        cells = []
        for e in eps_list:
            r = next((x for x in results if x["mode"] == mode and x["epsilon"] == e), None)
            cells.append(f"{r['f1_at_100']:.3f}/{r['median_relative_error']:.1%}/{r['seconds']:.0f}s"
                         if r and r.get("status") == "completed" else "failed")
        print(f"{mode:>6} " + " ".join(f"{c:>18}" for c in cells))
    print("cells: F1@100 / median relative error / seconds per round")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
