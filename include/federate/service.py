"""The steps of the ``federated_round`` DAG as plain functions (no Airflow): open a round, run it,
finish it. A clean failure (too few stores or clients, budget cap, region busy, protocol abort) is
recorded in ``federated_rounds.error_message`` and raised as :class:`RoundFailedCleanly`, which the
DAG turns into a non-retried task failure."""
from __future__ import annotations

import logging
import uuid
from datetime import datetime, timezone
from decimal import Decimal

import psycopg

from include.federate import protocol as P
from include.federate import records
from include.federate.identities import ensure_identity, load_registry
from include.federate.live import RoundLive, redis_client
from include.federate.topics import TO_COORDINATOR, TO_STORES, ensure_topics

log = logging.getLogger(__name__)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
DEFAULT_MIN_CLIENTS = 2


class RoundFailedCleanly(RuntimeError):
    """The round ended without a release; the reason is recorded in federated_rounds."""


def _region_key(region_id) -> str:
    return str(region_id) if region_id else "global"


def _parse_time(value, default: datetime) -> datetime:
    if value in (None, ""):
        return default
    t = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def resolve_stores(conn: psycopg.Connection, store_ids: list[str]) -> tuple[list[dict], list[str]]:
    """(stores to invite, problems). Empty ``store_ids``: every active store with a privacy config."""
    rows = conn.execute("""SELECT s.id, s.region_id, s.is_active, pc.noise_type IS NOT NULL AS has_config,
                                  COALESCE(pc.hash_patterns, false)
                             FROM stores s LEFT JOIN privacy_configs pc ON pc.store_id = s.id
                            WHERE (cardinality(%s::uuid[]) = 0 OR s.id = ANY(%s::uuid[]))
                            ORDER BY s.id""", (store_ids, store_ids)).fetchall()
    found = {str(r[0]): r for r in rows}
    problems = [f"store {s}: unknown" for s in store_ids if s not in found]
    out = []
    for sid, (_, region, active, has_config, hashed) in found.items():
        if not active:
            if store_ids:
                problems.append(f"store {sid}: inactive")
            continue
        if not has_config:
            if store_ids:
                problems.append(f"store {sid}: no privacy_configs row")
            continue
        out.append({"store_id": sid, "region_id": str(region) if region else None, "hash_patterns": hashed})
    return out, problems


def open_round(dsn: str, params: dict, *, kafka: tuple[dict, dict], redis: dict, dag_run_id: str | None,
               now: datetime | None = None) -> dict:
    from include.db.configs import get_config
    from include.federate.transport import KafkaTransport
    from include.privacy.budget import Budget, Charge, check
    from include.privacy.ledger import charges
    from include.privacy.settings import load_platform_settings

    now = now or datetime.now(timezone.utc)
    try:
        store_ids = [str(uuid.UUID(str(s))) for s in (params.get("store_ids") or [])]
    except ValueError as exc:
        raise RoundFailedCleanly(f"store_ids: not a list of UUIDs ({exc}); no round was opened") from None
    with psycopg.connect(dsn) as conn:
        with conn.transaction():
            platform = load_platform_settings(conn)
            stores, problems = resolve_stores(conn, store_ids)
            min_cfg = int(get_config(conn, "min_clients_per_round", Decimal(0)) or 0)
            hashing = sorted(s["store_id"] for s in stores if s["hash_patterns"])
            fingerprint = newest_key_fingerprint(conn) if hashing else None
        min_clients = int(params.get("min_clients_required") or min_cfg or DEFAULT_MIN_CLIENTS)
        regions = {s["region_id"] for s in stores}
        region = regions.pop() if len(regions) == 1 else None
        coordinator_id = P.coordinator_party(region)
        ensure_identity(conn, coordinator_id, role="coordinator", region_id=region)
        w_start = _parse_time(params.get("window_start"), EPOCH)
        w_end = _parse_time(params.get("window_end"), now)
        bounds = platform.bounds
        resolved = {
            "store_ids": [s["store_id"] for s in stores], "min_clients_required": min_clients,
            "mode": params.get("mode", "secure"), "epsilon": float(params.get("epsilon", 1.0)),
            "delta": float(params.get("delta") or platform.delta), "noise_type": params.get("noise_type", "gaussian"),
            "min_utility": params.get("min_utility"), "min_utility_ratio": params.get("min_utility_ratio"),
            "max_pattern_length": int(params.get("max_pattern_length") or 3), "top_k": params.get("top_k"),
            "window_start": w_start.isoformat(), "window_end": w_end.isoformat(),
            "phase_timeout_minutes": float(params.get("phase_timeout_minutes") or 5),
            "dropout_threshold": params.get("dropout_threshold"),
            "bounds": {"max_items": bounds.max_items, "utility_cap": bounds.utility_cap,
                       "utility_scale": bounds.utility_scale}, "region_id": region,
            "key_fingerprint": fingerprint, "proposal_epsilon": float(params.get("proposal_epsilon") or 0)}
        rid, number = records.open_round(conn, params=resolved, min_clients=min_clients, epsilon=resolved["epsilon"],
                                         mode=resolved["mode"], region_id=region, coordinator_id=coordinator_id,
                                         dag_run_id=dag_run_id)
        rid = str(rid)

        def refuse(reason: str):
            records.fail_round(conn, rid, reason)
            raise RoundFailedCleanly(f"round {number} ({rid}) failed: {reason}")

        if problems:
            refuse("invalid store_ids: " + "; ".join(problems))
        if hashing and fingerprint is None:
            refuse(f"{len(hashing)} invited store(s) hash their patterns (privacy_configs.hash_patterns), so the "
                   "round runs on keyed item ids, but there is no hashed catalogue: a key holder must run "
                   "`python -m include.privacy hash-dictionary` first")
        if not w_end > w_start:
            refuse(f"window_end {w_end.isoformat()} must be after window_start {w_start.isoformat()}")
        if resolved["min_utility"] is not None and resolved["min_utility_ratio"] is not None:
            refuse("give min_utility or min_utility_ratio, not both")
        spec_probe = _spec(rid, number, coordinator_id, resolved, [], ["t", 0, 0], ["t", 0])
        try:
            _, cost = P.release_plans(spec_probe)
        except Exception as exc:  # noqa: BLE001 - a bad ε/δ/noise type combination is the round's error
            refuse(f"invalid privacy parameters: {exc}")
        # the global cap per window: the round alone, then each store's spend so far
        cap = platform.global_epsilon
        invited, over_cap = [], {}
        if cap is not None:
            budget = Budget(cap, resolved["noise_type"], resolved["delta"], cap)
            alone = check([], Charge(w_start, w_end, cost, "reserved"), budget, "the round")
            if not alone.allowed:
                refuse(f"the round's cost breaks the global privacy budget: {alone.message}")
        for s in stores:
            if cap is not None:
                live = [e.charge() for e in charges(conn, s["store_id"], w_start, w_end)]
                d = check(live, Charge(w_start, w_end, cost, "reserved"), budget, f"store {s['store_id']}")
                if not d.allowed:
                    over_cap[s["store_id"]] = d.message
                    continue
            invited.append(s["store_id"])
        if len(invited) < min_clients:
            refuse(f"too few clients: {len(invited)} store(s) can be invited, min_clients_required is "
                   f"{min_clients}" + (f" ({len(over_cap)} over the global budget cap)" if over_cap else ""))
        timeout_s = max(5, int(round(resolved["phase_timeout_minutes"] * 60)))
        ttl = timeout_s * (5 * resolved["max_pattern_length"] + 2) + 600
        live = RoundLive(redis_client(redis), rid)
        holder = live.acquire(_region_key(region), ttl)
        if holder is not None:
            refuse(f"region {_region_key(region)} already has a running round ({holder})")
        try:
            cons, prod = kafka
            ensure_topics(cons)
            tr = KafkaTransport(cons, prod)
            sp, cp = tr.partition_of(TO_STORES, rid), tr.partition_of(TO_COORDINATOR, rid)
            spec = _spec(rid, number, coordinator_id, resolved, [P.store_party(s) for s in invited],
                         [TO_STORES, sp, tr.end_offset(TO_STORES, sp)], [TO_COORDINATOR, cp], timeout_s)
            coordinator_offset = tr.end_offset(TO_COORDINATOR, cp)
            records.set_running(conn, rid, params_update={"invited": invited, "over_cap": over_cap,
                                                          "lock_ttl_seconds": ttl})
            live.progress(phase="open", round_number=number, invited=len(invited))
        except Exception:
            live.release(_region_key(region))
            raise
    return {"round_id": rid, "round_number": number, "spec": spec.to_payload(),
            "coordinator_offset": coordinator_offset, "region": _region_key(region),
            "top_k": resolved["top_k"], "min_utility": resolved["min_utility"],
            "min_utility_ratio": resolved["min_utility_ratio"], "dropout_threshold": resolved["dropout_threshold"],
            "store_of_party": {P.store_party(s): s for s in invited}}


def _spec(rid, number, coordinator_id, r, invited, to_stores, to_coordinator, timeout_s=60) -> P.RoundSpec:
    b = r["bounds"]
    return P.RoundSpec(
        round_id=rid, round_number=int(number), coordinator_id=coordinator_id, mode=r["mode"],
        noise_type=r["noise_type"], epsilon=P.fstr(r["epsilon"]), delta=P.fstr(r["delta"]),
        window_start=r["window_start"], window_end=r["window_end"], max_pattern_length=r["max_pattern_length"],
        max_items=b["max_items"], utility_cap=b["utility_cap"], utility_scale=b["utility_scale"],
        split={"utility": "0.6", "support": "0.3", "presence": "0.1"}, invited=sorted(invited),
        min_clients=int(r["min_clients_required"]), phase_timeout_seconds=int(timeout_s),
        to_stores=list(to_stores), to_coordinator=list(to_coordinator), key_fingerprint=r.get("key_fingerprint"),
        proposal_epsilon=P.fstr(r["proposal_epsilon"]) if r.get("proposal_epsilon") else None)


def newest_key_fingerprint(conn: psycopg.Connection) -> str | None:
    """The fingerprint of the newest key in ``privacy_hashed_catalogue`` (None: nothing hashed yet)."""
    row = conn.execute("""SELECT key_fingerprint FROM privacy_hashed_catalogue GROUP BY key_fingerprint
                           ORDER BY max(created_at) DESC, key_fingerprint LIMIT 1""").fetchone()
    return row[0] if row else None


def hashed_catalogue(conn: psycopg.Connection, key_fingerprint: str) -> list[str]:
    """The level-1 domain of a round over keyed ids: the hashed catalogue of that key (ids only)."""
    rows = conn.execute("SELECT item_hash FROM privacy_hashed_catalogue WHERE key_fingerprint = %s ORDER BY 1",
                        (key_fingerprint,)).fetchall()
    return [r[0] for r in rows]


def item_catalogue(conn: psycopg.Connection, store_ids: list[str], start: datetime, end: datetime) -> list[str]:
    """The public item catalogue the level-1 domain is built on. The platform has no product master
    table yet: the chain's catalogue is taken as the distinct item names sold in the window by the
    invited stores (item names are public chain-wide; a store-secret assortment would need a product
    master or DP partition selection instead)."""
    rows = conn.execute("""SELECT DISTINCT unnest(items) FROM transactions
                            WHERE store_id = ANY(%s::uuid[]) AND transaction_date >= %s AND transaction_date < %s""",
                        (store_ids, start, end)).fetchall()
    return sorted(r[0] for r in rows)


class _Hooks:
    def __init__(self, dsn: str, audit, live: RoundLive, round_id: str):
        self.dsn, self.audit, self.live, self.round_id = dsn, audit, live, round_id
        self._last_phase = None

    def registry(self):
        with psycopg.connect(self.dsn) as c:
            return load_registry(c)

    def progress(self, **fields) -> None:
        try:
            self.live.progress(**fields)
        except Exception:  # noqa: BLE001 - live progress is best effort; the table is the record
            log.warning("redis progress failed", exc_info=True)
        phase = fields.get("phase")
        if phase and phase != self._last_phase:
            self._last_phase = phase
            level = fields.get("level")
            try:
                with psycopg.connect(self.dsn) as c:
                    records.set_phase(c, self.round_id, f"level {level} {phase}" if level else str(phase))
                self.audit.flush()
            except Exception:  # noqa: BLE001
                log.warning("could not record the phase", exc_info=True)


def run_round(dsn: str, opened: dict, *, kafka: tuple[dict, dict], redis: dict, try_number: int = 1) -> dict:
    from include.federate.coordinator import RoundCoordinator, patterns_table
    from include.federate.transport import KafkaTransport

    rid = opened["round_id"]
    spec = P.RoundSpec.from_payload(opened["spec"])
    live = RoundLive(redis_client(redis), rid)
    with psycopg.connect(dsn) as conn:
        row = records.round_row(conn, rid)
        if row["status"] == "completed":
            return {"round_id": rid, "status": "completed", "already": True}
        if row["status"] == "failed":
            raise RoundFailedCleanly(f"round {rid} failed: {row['error_message']}")
        if try_number > 1:
            records.fail_round(conn, rid, "the coordinator task was restarted mid-round; secure aggregation "
                                          "cannot resume a lost coordinator state")
            live.release(opened["region"])
            raise RoundFailedCleanly(f"round {rid} failed: coordinator restarted")
        coord = ensure_identity(conn, spec.coordinator_id, role="coordinator")
        start, end = spec.window
        catalogue = (hashed_catalogue(conn, spec.key_fingerprint) if spec.key_fingerprint
                     else item_catalogue(conn, list(opened["store_of_party"].values()), start, end))
    audit = records.ActivityAudit(dsn, rid, actor=spec.coordinator_id)
    hooks = _Hooks(dsn, audit, live, rid)
    cons, prod = kafka
    t = opened.get("dropout_threshold")
    try:
        result = RoundCoordinator(spec, coord, KafkaTransport(cons, prod), hooks, catalogue=catalogue,
                                  coordinator_offset=int(opened["coordinator_offset"]),
                                  dropout_threshold=int(t) if t else None,
                                  top_k=opened.get("top_k") or None, min_utility=opened.get("min_utility"),
                                  min_utility_ratio=opened.get("min_utility_ratio")).run()
        audit.flush()
        with psycopg.connect(dsn) as conn:
            if result.status != "completed":
                records.fail_round(conn, rid, f"{result.failed_phase}: {result.reason}", levels=result.levels,
                                   participating=len(result.included))
                raise RoundFailedCleanly(f"round {spec.round_number} ({rid}) failed in {result.failed_phase}: "
                                         f"{result.reason}")
            written = records.complete_round(conn, rid, result, spec, store_ids=opened["store_of_party"])
    finally:
        live.release(opened["region"])
    table = patterns_table(result.patterns, 10)
    log.info("round %s completed in %.1fs: %s\n%s", spec.round_number, result.seconds, written, table)
    return {"round_id": rid, "round_number": spec.round_number, "status": "completed", "seconds": result.seconds,
            "participants": len(result.included), "patterns": len(result.patterns), "levels": result.levels,
            "proposals": result.proposals,
            "messages": result.messages, "top_patterns": table}


def finalize(dsn: str, opened: dict | None, *, redis: dict, dag_run_id: str | None) -> dict:
    """Last task (all_done): a round left pending/running by a failed task is marked failed; the lock
    is released."""
    with psycopg.connect(dsn) as conn:
        rid = (opened or {}).get("round_id")
        if rid is None and dag_run_id:
            row = conn.execute("SELECT id FROM federated_rounds WHERE dag_run_id = %s", (dag_run_id,)).fetchone()
            rid = str(row[0]) if row else None
        if rid is None:
            return {"status": "no round"}
        row = records.round_row(conn, rid)
        if row["status"] not in ("completed", "failed"):
            records.fail_round(conn, rid, "a task of the federated_round DAG failed (see its log)")
        row = records.round_row(conn, rid)
    if opened:
        try:
            RoundLive(redis_client(redis), rid).release(opened["region"])
        except Exception:  # noqa: BLE001
            log.warning("could not release the region lock", exc_info=True)
    return {"round_id": rid, "status": row["status"], "error_message": row["error_message"]}


def join_round(dsn: str, invitation_text: str, *, kafka: tuple[dict, dict], hash_key=None) -> dict:
    """Store side of an invitation (the client DAG's join task): verify, budget, answer, keep state."""
    from include.federate.client import StoreRoundClient
    from include.federate.identities import load_client_state, save_client_state
    from include.federate.store_db import DbStoreSide
    from include.federate.transport import KafkaTransport, peek

    env = peek(invitation_text) or {}
    store_id = P.store_of(str(env.get("recipient")))
    rid = str(env.get("round_id"))
    side = DbStoreSide(dsn, store_id, rid, hash_key=hash_key)
    with side.connect() as c:
        identity = ensure_identity(c, P.store_party(store_id), role="store", store_id=store_id)
        saved = load_client_state(c, store_id, rid)
    if saved is not None:                       # a retried join task: answer again from the state
        client = StoreRoundClient.from_state(saved["client"], identity, side)
        return {"store_id": store_id, "round_id": rid, "joined": client.status == "joined"}
    side.refresh()
    client = StoreRoundClient(identity, side, invitation_text)
    answers = client.start()
    ctopic, cpartition = client.spec.to_coordinator
    if client.status == "joined":
        with side.connect() as c:
            save_client_state(c, store_id, rid, {"client": client.to_state(), "position": client.spec.to_stores[2]})
    cons, prod = kafka
    KafkaTransport(cons, prod).publish_many(ctopic, answers, partition=int(cpartition), key=rid)
    side.flush()
    return {"store_id": store_id, "round_id": rid, "joined": client.status == "joined",
            "reason": client.outcome.reason}


__all__ = ["open_round", "run_round", "finalize", "join_round", "RoundFailedCleanly", "resolve_stores",
           "item_catalogue"]
