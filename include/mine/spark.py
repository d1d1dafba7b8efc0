"""The PySpark path for large stores: the same patterns as the local engine, with the search space
(not only the reading) spread over the executors - the PHUI-Miner / EFIM-Par partitioning by first item.

1. **Read** the store's window straight from PostgreSQL into the executors: a JDBC read split into
   ``n`` partitions by predicates on a hash of the transaction id (``(hashtext(id::text) & 2147483647)
   % n = k``). Nothing passes through the driver. The jobs' path (:func:`read_scaled_transactions`)
   has PostgreSQL compute each item utility (quantity x unit_utility in exact numeric, repeated items
   merged) as an integer at the window's scale (:func:`window_scale`: the most decimals of one product,
   as the engine computes it), so no decimal is parsed in Python; :func:`read_transactions` reads the
   raw arrays as exact text for :func:`mine_rdd`.
2. **Item statistics on the cluster** (pass 1): per item its TWU (sum of the utilities of the
   transactions holding it) and support count, plus the transaction count and the total utility: DataFrame
   aggregations in the JVM in exact decimal(38,0) (:func:`mine_scaled`), or Python per partition for
   decimal rows (:func:`mine_rdd`). The driver keeps the *promising* items (TWU >= min_utility, support >=
   min_support count: no pattern holds another item) and fixes the global order: TWU ascending, then name.
3. **Work estimate** (pass 2): per promising item i, the size of its projected database
   (sum over the transactions holding i of the number of items from i on, in the global order).
   Items are spread over ``P`` partitions by longest-processing-time-first on that estimate.
4. **Enumeration** (pass 3): every transaction, reduced to its promising items in the global order
   with integer utilities, is sent once to each partition owning one of its items, as its suffix from
   the first item that partition owns. On its executor, for each owned item i, the projected database
   D_i (the suffixes from i of the transactions holding i) is mined by the compiled engine and only the
   patterns holding i are kept: exactly the patterns whose first item in the global order is i.
   A pattern X with first item i occurs only in transactions holding i, and each of their suffixes
   from i holds all of X, so its utility and support in D_i are its utility and support in the whole
   database: the union over i is the engine's result, each pattern once. Support is divided by the
   whole window's transaction count, confidence (all-confidence) uses the items' global supports.
5. The patterns come back to the driver (bounded by ``max_patterns``) and are written like the local
   path's (:func:`include.mine.store.write_result`).

On D_i the engine searches with ``required_item=i``: the sub-trees that cannot hold i (patterns found
again in their own partitions) are skipped, so no pattern is enumerated twice (``stats.sub_patterns``
equals ``patterns``).
"""
from __future__ import annotations

import glob
import heapq
import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

from include.mine import errors

_CTX = Context(prec=200)  # exact for the products and sums of the platform's decimals
_U64_MAX = (1 << 64) - 1
JDBC_JAR_ENV = "PLATFORM_JDBC_JAR"
MASTER_ENV = "PLATFORM_SPARK_MASTER"
SPARK_CONN_ID = "platform_spark"


# ------------------------------------------------------------------------------------ executor side
def _dec(v) -> Decimal:
    if isinstance(v, float):
        raise TypeError(f"binary float {v!r} is not accepted; quantities and unit utilities must be exact")
    return v if isinstance(v, Decimal) else Decimal(str(v) if isinstance(v, int) else v.strip())


def parse_row(row) -> tuple[tuple[str, ...], tuple[Decimal, ...], int]:
    """``(items, quantities, unit_utilities)`` -> ``(names, utilities, scale)`` as the engine loads it:
    utility = quantity x unit_utility (exact), a repeated name is one item (utilities added), negative
    utilities refused; ``scale`` = most decimals of one product (trailing zeros ignored)."""
    items, qs, us = row[0], row[1], row[2]
    if len(items) != len(qs) or len(items) != len(us):
        raise ValueError(f"{len(items)} items, {len(qs)} quantities and {len(us)} unit_utilities (counts must match)")
    acc: dict[str, Decimal] = {}
    scale = 0
    with localcontext(_CTX):
        for name, q, u in zip(items, qs, us):
            d = _dec(q) * _dec(u)
            if d < 0:
                raise ValueError(f"item {name!r}: negative utility (quantity x unit_utility < 0) is not supported")
            e = d.normalize().as_tuple().exponent if d else 0
            if e < 0:
                scale = max(scale, -e)
            acc[name] = acc[name] + d if name in acc else d
    return tuple(acc), tuple(acc.values()), scale


def _partition_stats(it):
    n = 0
    scale = 0
    total = Decimal(0)
    items: dict[str, list] = {}
    with localcontext(_CTX):
        for names, utils, sc in it:
            n += 1
            if sc > scale:
                scale = sc
            tu = sum(utils, Decimal(0))
            total += tu
            for x in names:
                e = items.get(x)
                if e is None:
                    items[x] = [tu, 1]
                else:
                    e[0] += tu
                    e[1] += 1
    yield n, scale, total, items


def _partition_costs(it, bc):
    rank = bc.value["rank"]
    acc: dict[int, int] = defaultdict(int)
    for names, _utils, _sc in it:
        rs = sorted(rank[x] for x in names if x in rank)
        length = len(rs)
        for k, r in enumerate(rs):
            acc[r] += length - k
    yield dict(acc)


def _route(rec, bc):
    """One transaction -> (partition, suffix) for each partition owning one of its items."""
    v = bc.value
    rank, owner, scale = v["rank"], v["owner"], v["scale"]
    names, utils, _sc = rec
    if v.get("prescaled"):   # exact integers at the window's scale already (read_scaled_transactions)
        kept = sorted((rank[x], u) for x, u in zip(names, utils) if x in rank)
    else:
        with localcontext(_CTX):
            kept = sorted((rank[x], int(u.scaleb(scale))) for x, u in zip(names, utils) if x in rank)
    seen = set()
    for k, (r, _u) in enumerate(kept):
        p = owner[r]
        if p not in seen:
            seen.add(p)
            sub = kept[k:]
            yield p, (tuple(x for x, _ in sub), tuple(u for _, u in sub))


def _identity(p):
    return p


def _mine_partition(index, it, bc):
    """Mine D_i for every item i this partition owns; yields ("p", (ranks, utility, support_count)) per
    kept pattern and one ("s", stats) record."""
    from include.mining import Miner

    v = bc.value
    owner, mu, ms, maxlen, pruning, max_patterns = (v["owner"], v["mu_scaled"], v["ms_count"], v["maxlen"],
                                                    v["pruning"], v["max_patterns"])
    t0 = time.perf_counter()
    txs = []
    occ: dict[int, list[tuple[int, int]]] = defaultdict(list)
    for ti, (_p, (ranks, utils)) in enumerate(it):
        txs.append((tuple(map(str, ranks)), utils))
        for pos, r in enumerate(ranks):
            if owner[r] == index:
                occ[r].append((ti, pos))
    calls = found = kept = 0
    for r in sorted(occ):
        # D_i as flat arrays (C-speed slices): transaction t is items_flat[offsets[t]:offsets[t+1]]
        items_flat: list[str] = []
        utils_flat: list[int] = []
        offsets = [0]
        for ti, pos in occ[r]:
            names, utils = txs[ti]
            items_flat.extend(names[pos:])
            utils_flat.extend(utils[pos:])
            offsets.append(len(items_flat))
        m = Miner()
        m.add_batch(items_flat, offsets, [1] * len(items_flat), utils_flat)
        key = str(r)
        # the whole window's support count, as a fraction of D_i (exact: ceil(ms / |D_i| * |D_i|) = ms);
        # required_item: only the patterns holding i, the sub-trees without it are never searched
        res = m.mine(mu, Fraction(ms, len(offsets) - 1), maxlen, pruning, max_patterns=max_patterns,
                     required_item=key)
        calls += 1
        found += len(res.patterns)
        for p in res.patterns:
            if key in p.items:
                kept += 1
                yield "p", (tuple(int(x) for x in p.items), int(p.utility), p.support_count)
    yield "s", {"partition": index, "transactions": len(txs), "items": len(occ), "engine_calls": calls,
                "sub_patterns": found, "patterns": kept, "seconds": round(time.perf_counter() - t0, 3)}


# ------------------------------------------------------------------------------------ driver side
@dataclass
class SparkPattern:
    items: tuple[str, ...]
    utility: int | Decimal
    support_count: int
    support: float
    confidence: float

    @property
    def pattern_length(self) -> int:
        return len(self.items)


@dataclass
class SparkMiningResult:
    patterns: list[SparkPattern]
    stats: dict[str, Any] = field(default_factory=dict)


def mine_rdd(rows, min_utility, min_support=0, max_pattern_length: int | None = None, use_pruning: bool = True,
             *, max_patterns: int | None = None, n_partitions: int | None = None) -> SparkMiningResult:
    """All high-utility itemsets of an RDD of ``(items, quantities, unit_utilities)`` rows, exactly as
    :func:`include.mining.mine` finds them on the same rows (order aside). See the module doc."""
    from pyspark import StorageLevel

    from include.mining.api import min_support_count, scaled_min_utility

    sc = rows.context
    t0 = time.perf_counter()
    parsed = rows.map(parse_row).persist(StorageLevel.MEMORY_AND_DISK)
    try:
        # pass 1: item statistics
        n, scale, total, stats = 0, 0, Decimal(0), {}
        with localcontext(_CTX):
            for pn, ps, pt, pitems in parsed.mapPartitions(_partition_stats).collect():
                n += pn
                scale = max(scale, ps)
                total += pt
                for x, (twu, sup) in pitems.items():
                    e = stats.get(x)
                    if e is None:
                        stats[x] = [twu, sup]
                    else:
                        e[0] += twu
                        e[1] += sup
            total_scaled = int(total.scaleb(scale))
            stats_scaled = {x: (int(twu.scaleb(scale)), sup) for x, (twu, sup) in stats.items()}
        return _mine_parsed(parsed, n, scale, total_scaled, stats_scaled, min_utility, min_support,
                            max_pattern_length, use_pruning, max_patterns=max_patterns,
                            n_partitions=n_partitions or 4 * sc.defaultParallelism, prescaled=False, t0=t0)
    finally:
        parsed.unpersist()


def mine_scaled(df, scale: int, min_utility, min_support=0, max_pattern_length: int | None = None,
                use_pruning: bool = True, *, max_patterns: int | None = None,
                n_partitions: int | None = None) -> SparkMiningResult:
    """As :func:`mine_rdd`, for a DataFrame ``(items, utilities)`` whose utilities are already exact
    integers at ``scale`` (:func:`read_scaled_transactions`): pass 1 (item TWU and support, transaction
    count, total utility) runs as DataFrame aggregations in the JVM, in exact decimal(38,0)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F

    t0 = time.perf_counter()
    df = df.persist(StorageLevel.MEMORY_AND_DISK)
    parsed = None
    try:
        tu = F.aggregate("utilities", F.lit(0).cast("decimal(38,0)"), lambda acc, x: acc + x.cast("decimal(38,0)"))
        per_tx = df.select("items", tu.alias("tu"))
        agg = per_tx.agg(F.count("*").alias("n"), F.sum("tu").alias("total")).first()
        n, total_scaled = int(agg["n"]), int(agg["total"] or 0)
        rows = (per_tx.select(F.explode(F.array_distinct("items")).alias("item"), "tu")
                .groupBy("item").agg(F.sum("tu").alias("twu"), F.count("*").alias("sup")).collect())
        stats_scaled = {r["item"]: (int(r["twu"]), int(r["sup"])) for r in rows}
        parsed = df.rdd.map(lambda r: (tuple(r[0]), tuple(r[1]), scale)).persist(StorageLevel.MEMORY_AND_DISK)
        return _mine_parsed(parsed, n, scale, total_scaled, stats_scaled, min_utility, min_support,
                            max_pattern_length, use_pruning, max_patterns=max_patterns,
                            n_partitions=n_partitions or 4 * df.sparkSession.sparkContext.defaultParallelism,
                            prescaled=True, t0=t0)
    finally:
        if parsed is not None:
            parsed.unpersist()
        df.unpersist()


def _mine_parsed(parsed, n: int, scale: int, total_scaled: int, stats: dict, min_utility, min_support,
                 max_pattern_length, use_pruning, *, max_patterns, n_partitions: int, prescaled: bool,
                 t0: float) -> SparkMiningResult:
    """Passes 2 and 3 over ``parsed`` ((names, utilities, scale) per transaction) given pass 1's result:
    ``stats`` = item -> (TWU at ``scale``, support count)."""
    from pyspark import StorageLevel

    from include.mining.api import min_support_count, scaled_min_utility

    sc = parsed.context
    P = n_partitions
    t1 = time.perf_counter()
    if total_scaled > _U64_MAX:
        raise errors.PermanentMiningError(
            f"total utility {Decimal(total_scaled).scaleb(-scale)} at scale {scale} exceeds the engine's "
            "exact 64-bit range")
    base = {"n_transactions": n, "n_items": len(stats), "scale": scale, "partitions": P,
            "read_and_stats_seconds": round(t1 - t0, 3), "stats_in_jvm": prescaled}
    if n == 0:
        return SparkMiningResult([], {**base, "n_promising_items": 0, "patterns": 0})
    mu_scaled = scaled_min_utility(min_utility, scale)
    ms_count = min_support_count(min_support, n)
    promising = sorted((twu, x) for x, (twu, sup) in stats.items() if twu >= mu_scaled and sup >= ms_count)
    names = [x for _t, x in promising]
    rank = {x: r for r, x in enumerate(names)}
    item_sup = {x: stats[x][1] for x in names}
    base.update(n_promising_items=len(names), min_utility_scaled=mu_scaled, min_support_count=ms_count)
    if not names:
        return SparkMiningResult([], {**base, "patterns": 0})

    # pass 2: projected database sizes -> owner partition per item (longest processing time first)
    bc_rank = sc.broadcast({"rank": rank})
    cost: dict[int, int] = defaultdict(int)
    for part in parsed.mapPartitions(lambda it: _partition_costs(it, bc_rank)).collect():
        for r, c in part.items():
            cost[r] += c
    heap = [(0, p) for p in range(P)]
    owner = [0] * len(names)
    for r in sorted(range(len(names)), key=lambda r: (-cost[r], r)):
        load, p = heapq.heappop(heap)
        owner[r] = p
        heapq.heappush(heap, (load + cost[r], p))
    t2 = time.perf_counter()

    # pass 3: route suffixes, mine each first item's projected database
    bc = sc.broadcast({"rank": rank, "owner": owner, "scale": scale, "mu_scaled": mu_scaled,
                       "ms_count": ms_count, "maxlen": max_pattern_length, "pruning": bool(use_pruning),
                       "max_patterns": max_patterns, "prescaled": prescaled})
    mined = (parsed.flatMap(lambda rec: _route(rec, bc))
             .partitionBy(P, _identity)
             .mapPartitionsWithIndex(lambda i, it: _mine_partition(i, it, bc))
             .persist(StorageLevel.MEMORY_AND_DISK))
    try:
        try:
            mined.count()  # all partitions in parallel
        except Exception as e:  # noqa: BLE001 - an executor's error comes back wrapped
            if "TooManyPatterns" in str(e):
                from include.mine.params import too_many_patterns_message

                raise errors.GuardRailError(too_many_patterns_message(max_patterns)) from None
            raise
        t3 = time.perf_counter()
        out: list[SparkPattern] = []
        part_stats = []
        q = Decimal(1).scaleb(-scale) if scale else None
        for kind, payload in mined.toLocalIterator():
            if kind == "s":
                part_stats.append(payload)
                continue
            ranks, util, supc = payload
            items = tuple(sorted(names[r] for r in ranks))
            utility = Decimal(util) * q if q is not None else util
            out.append(SparkPattern(items, utility, supc, supc / n, supc / max(item_sup[x] for x in items)))
            if max_patterns is not None and len(out) > max_patterns:
                from include.mine.params import too_many_patterns_message

                raise errors.GuardRailError(too_many_patterns_message(max_patterns))
    finally:
        mined.unpersist()
        bc.unpersist()
        bc_rank.unpersist()
    secs = [s["seconds"] for s in part_stats]
    base.update(patterns=len(out), sub_patterns=sum(s["sub_patterns"] for s in part_stats),
                engine_calls=sum(s["engine_calls"] for s in part_stats),
                routed_transactions=sum(s["transactions"] for s in part_stats),
                partition_seconds_max=max(secs, default=0), partition_seconds_min=min(secs, default=0),
                plan_seconds=round(t2 - t1, 3), mine_seconds=round(t3 - t2, 3),
                collect_seconds=round(time.perf_counter() - t3, 3),
                total_seconds=round(time.perf_counter() - t0, 3))
    return SparkMiningResult(out, base)


# ------------------------------------------------------------------------------------ session, reading
def jdbc_jar() -> str:
    """The PostgreSQL JDBC driver jar (``org.postgresql:postgresql``), fetched from Maven Central by
    scripts/install.sh into the cache's Maven repository; ``PLATFORM_JDBC_JAR`` overrides."""
    if os.environ.get(JDBC_JAR_ENV):
        return os.environ[JDBC_JAR_ENV]
    roots = [os.environ.get("PLATFORM_CACHE_DIR"), "/var/cache/retail-platform",
             os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "retail-platform")]
    found = []
    for root in filter(None, roots):
        found += glob.glob(os.path.join(root, "m2/org/postgresql/postgresql/*/postgresql-*.jar"))
    found = [f for f in found if not f.endswith(("-sources.jar", "-javadoc.jar"))]
    if not found:
        raise errors.MiningError(
            "the PostgreSQL JDBC driver is missing: run scripts/install.sh (it fetches org.postgresql:postgresql "
            f"from Maven Central), or set {JDBC_JAR_ENV} to the jar")

    def version(path):
        return tuple(int(p) if p.isdigit() else 0 for p in Path(path).parent.name.split("."))

    return max(found, key=version)


def spark_master() -> str:
    """``PLATFORM_SPARK_MASTER``; else the host of connection ``platform_spark`` (e.g.
    ``spark://spark-master:7077``); else ``SPARK_MASTER_URL`` (docker-compose); else ``local[*]``."""
    if os.environ.get(MASTER_ENV):
        return os.environ[MASTER_ENV]
    from include.connections import ConnectionNotConfigured, get_connection

    try:
        c = get_connection(SPARK_CONN_ID)
        host = c.host or "local[*]"
        if "://" not in host and not host.startswith("local") and host != "yarn":
            host = f"spark://{host}"
        return f"{host}:{c.port}" if c.port and host.startswith("spark://") and host.count(":") < 2 else host
    except ConnectionNotConfigured:
        pass
    return os.environ.get("SPARK_MASTER_URL") or "local[*]"


def get_session(master: str | None = None, *, app_name: str = "mine_store_patterns", driver_memory: str = "1g",
                conf: dict[str, str] | None = None):
    """A SparkSession for mining (JDBC driver on the class path, UI off, loopback on this machine)."""
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    root = str(Path(__file__).resolve().parents[2])
    if root not in os.environ.get("PYTHONPATH", "").split(os.pathsep):  # local executors import include.*
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    from pyspark.sql import SparkSession

    b = (SparkSession.builder.master(master or spark_master()).appName(app_name)
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.driver.memory", driver_memory)
         .config("spark.jars", jdbc_jar())
         .config("spark.sql.shuffle.partitions", "8")
         .config("spark.python.worker.reuse", "true")
         .config("spark.executorEnv.PYTHONPATH", os.environ["PYTHONPATH"]))
    for k, v in (conf or {}).items():
        b = b.config(k, v)
    return b.getOrCreate()


def jdbc_options(dsn: str) -> tuple[str, dict[str, str]]:
    """(JDBC URL, properties) of a libpq DSN/URI."""
    from psycopg.conninfo import conninfo_to_dict

    d = conninfo_to_dict(dsn)
    url = f"jdbc:postgresql://{d.get('host') or '127.0.0.1'}:{d.get('port') or 5432}/{d.get('dbname') or ''}"
    props = {"driver": "org.postgresql.Driver", "user": str(d.get("user") or ""),
             "password": str(d.get("password") or ""), "fetchsize": "5000",
             "ApplicationName": "mine_store_patterns.spark"}
    if d.get("sslmode"):
        props["sslmode"] = str(d["sslmode"])
    if d.get("sslrootcert"):          # TLS mode (docs/tls.md): the project CA the driver verifies against
        props["sslrootcert"] = str(d["sslrootcert"])
    return url, props


def read_transactions(spark, dsn: str, store_id, window_start=None, window_end=None, *, n_partitions: int = 4):
    """DataFrame ``(items, quantities, unit_utilities)`` of the store's window, read by the executors
    with ``n_partitions`` JDBC queries (hash of the transaction id); decimals as exact text."""
    import uuid as _uuid

    url, props = jdbc_options(dsn)
    sid = str(_uuid.UUID(str(store_id)))  # a UUID: safe to inline
    cond = [f"store_id = '{sid}'::uuid"]
    if window_start is not None:
        cond.append(f"transaction_date >= '{window_start.isoformat()}'::timestamptz")
    if window_end is not None:
        cond.append(f"transaction_date < '{window_end.isoformat()}'::timestamptz")
    table = (f"(SELECT id, items, quantities::text[] AS quantities, unit_utilities::text[] AS unit_utilities "
             f"FROM transactions WHERE {' AND '.join(cond)}) AS t")
    preds = [f"(hashtext(id::text) & 2147483647) % {n_partitions} = {k}" for k in range(n_partitions)]
    return spark.read.jdbc(url, table, predicates=preds, properties=props).select(
        "items", "quantities", "unit_utilities")


def _window_sql(store_id, window_start=None, window_end=None, alias: str = "t") -> str:
    import uuid as _uuid

    sid = str(_uuid.UUID(str(store_id)))  # a UUID: safe to inline
    cond = [f"{alias}.store_id = '{sid}'::uuid"]
    if window_start is not None:
        cond.append(f"{alias}.transaction_date >= '{window_start.isoformat()}'::timestamptz")
    if window_end is not None:
        cond.append(f"{alias}.transaction_date < '{window_end.isoformat()}'::timestamptz")
    return " AND ".join(cond)


def window_scale(conn, store_id, window_start=None, window_end=None) -> int:
    """The window's utility scale as the engine computes it (most decimals of one quantity x unit_utility,
    trailing zeros ignored), by PostgreSQL in exact numeric; raises PermanentMiningError (naming a
    transaction) for arrays of different lengths, NULLs or a negative utility, as :func:`parse_row` does."""
    cond = _window_sql(store_id, window_start, window_end)
    row = conn.execute(f"""
        SELECT COALESCE(max(scale(trim_scale(z.q * z.u))), 0),
               min(t.id::text) FILTER (WHERE z.item IS NULL OR z.q IS NULL OR z.u IS NULL),
               min(t.id::text || ' item ' || z.item) FILTER (WHERE z.q * z.u < 0)
          FROM transactions t, unnest(t.items, t.quantities, t.unit_utilities) AS z(item, q, u)
         WHERE {cond}""").fetchone()
    scale, bad_shape, negative = row
    if bad_shape:
        raise errors.PermanentMiningError(f"store {store_id}: transactions cannot be mined: transaction {bad_shape}: "
                                          "items, quantities and unit_utilities differ in length or hold NULLs")
    if negative:
        raise errors.PermanentMiningError(f"store {store_id}: transactions cannot be mined: transaction {negative}: "
                                          "negative utility (quantity x unit_utility < 0) is not supported")
    return int(scale)


def read_scaled_transactions(spark, dsn: str, store_id, window_start=None, window_end=None, *, scale: int,
                             n_partitions: int = 4):
    """DataFrame ``(items, utilities)`` of the store's window read by the executors with ``n_partitions``
    JDBC queries: per transaction its distinct items and their utilities (quantity x unit_utility, a
    repeated item's lines added) as exact integers at ``scale``, computed by PostgreSQL in numeric, so no
    decimal is parsed in Python. A utility beyond 64 bits fails the read ("bigint out of range")."""
    url, props = jdbc_options(dsn)
    factor = "1" + "0" * int(scale)
    table = (f"""(SELECT t.id, a.items, a.utilities FROM transactions t CROSS JOIN LATERAL (
                    SELECT array_agg(g.item ORDER BY g.item) AS items, array_agg(g.u ORDER BY g.item) AS utilities
                      FROM (SELECT z.item, (sum(z.q * z.u) * {factor}::numeric)::bigint AS u
                              FROM unnest(t.items, t.quantities, t.unit_utilities) AS z(item, q, u)
                             GROUP BY z.item) g) a
                 WHERE {_window_sql(store_id, window_start, window_end)}) AS s""")
    preds = [f"(hashtext(id::text) & 2147483647) % {n_partitions} = {k}" for k in range(n_partitions)]
    return spark.read.jdbc(url, table, predicates=preds, properties=props).select("items", "utilities")


def run_spark_job(dsn: str, job, *, started: float, session=None, inject_failure: str | None = None) -> dict:
    """Mine ``job`` (running) with PySpark and write its result; the memory measured is the peak summed
    resident set of this process and its children (driver, JVM, local Python workers)."""
    import psycopg

    from include.mine import store
    from include.mine.memory import RssSampler
    from include.mine.params import memory_budget_message

    own = session is None
    spark = session or get_session()
    sc = spark.sparkContext
    budget = job.memory_budget_mb
    sampler = RssSampler(os.getpid(), budget_mb=budget, on_exceed=lambda mb: sc.cancelAllJobs())
    try:
        with sampler:
            per_core = int(job.params.get("spark_partitions_per_core") or 4)
            with psycopg.connect(dsn, application_name="mine_store_patterns.spark") as conn:
                scale = window_scale(conn, job.store_id, job.window_start, job.window_end)
            df = read_scaled_transactions(spark, dsn, job.store_id, job.window_start, job.window_end, scale=scale,
                                          n_partitions=max(2, 2 * sc.defaultParallelism))
            try:
                res = mine_scaled(df, scale, job.min_utility, job.min_support, job.max_pattern_length,
                                  job.use_pruning, max_patterns=job.max_patterns,
                                  n_partitions=per_core * sc.defaultParallelism)
            except Exception:
                if sampler.exceeded_mb is not None:
                    raise errors.GuardRailError(memory_budget_message(sampler.exceeded_mb, budget)) from None
                raise
            if sampler.exceeded_mb is not None:
                raise errors.GuardRailError(memory_budget_message(sampler.exceeded_mb, budget))
            stats = {**res.stats, "engine_path": "spark", "master": sc.master,
                     "default_parallelism": sc.defaultParallelism}
            pats = (store.to_db_pattern(p.items, p.utility, p.support, p.confidence) for p in res.patterns)
            with psycopg.connect(dsn, application_name="mine_store_patterns.spark") as conn:
                return store.write_result(conn, job, pats, started=started,
                                          memory_used_mb=lambda: max(sampler.peak_mb, sampler.sample()),
                                          stats=stats, inject_failure=inject_failure)
    except errors.MiningError as e:
        e.memory_used_mb = e.memory_used_mb or sampler.peak_mb
        raise
    except Exception as e:
        err = errors.MiningError(f"{type(e).__name__}: {_short(e)}")
        err.memory_used_mb = sampler.peak_mb
        raise err from e
    finally:
        if own:
            spark.stop()


def _short(e: Exception, limit: int = 2000) -> str:
    """The useful part of a (Py4J-wrapped) Spark error."""
    text = str(e)
    for marker in ("PythonException:", "Caused by:"):
        i = text.find(marker)
        if i >= 0:
            text = text[i:]
            break
    return text[:limit]
