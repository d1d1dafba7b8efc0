"""Command line: ``python -m include.mining INPUT --format spmf|csv|json --min-utility N
[--min-support F] [--max-length K] [--no-pruning] [--output FILE] [--stats] [--max-patterns N]``.

Output: one pattern per line, ``item item ... #UTIL: u #SUP: n`` (items sorted by name; integer
names of SPMF files numerically), in the engine's deterministic order. ``--stats`` prints time,
peak memory and pattern count on stderr. Exit codes: 0 ok, 2 bad input or usage (message names
file, line and problem), 3 more patterns than ``--max-patterns``, 1 other I/O failure.
"""

from __future__ import annotations

import argparse
import sys
import time

_T0 = time.perf_counter()


class _BadInput(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m include.mining",
        # a fixed width: the default formatter imports shutil (and bz2, lzma) to ask the terminal
        formatter_class=lambda prog: argparse.HelpFormatter(prog, width=100),
        description="Mine high-utility itemsets (exact; EFIM-style search with vertical projection).",
    )
    p.add_argument("input", metavar="INPUT", help="transaction file (.gz accepted)")
    p.add_argument("--format", choices=("spmf", "csv", "json"), default="spmf",
                   help="spmf: items:TU:utilities lines; csv/json: the platform's transaction files")
    p.add_argument("--min-utility", required=True, metavar="N",
                   help="absolute minimum utility (integer; decimals allowed for csv/json)")
    p.add_argument("--min-support", default="0", metavar="F", help="minimum support, fraction 0..1")
    p.add_argument("--max-length", type=int, default=None, metavar="K", help="maximum pattern length")
    p.add_argument("--no-pruning", action="store_true",
                   help="use only the TWU bound (same result, slower; for diagnosis)")
    p.add_argument("--output", "-o", default=None, metavar="FILE", help="output file (default stdout)")
    p.add_argument("--stats", action="store_true", help="print time, peak memory, counts on stderr")
    p.add_argument("--max-patterns", type=int, default=None, metavar="N",
                   help="fail (exit 3) when more than N patterns are found")
    p.add_argument("--projection", choices=("auto", "scan", "index"), default="auto",
                   help=argparse.SUPPRESS)
    return p


def _load_rows(path: str, fmt: str):
    """Transactions of a csv/json file through the ingestion formats module."""
    from .api import Miner

    try:
        from include.ingest.formats import FileError, RowError, read_transactions
    except ImportError as e:  # pragma: no cover - depends on the ingestion package
        raise _BadInput(f"{path}: --format {fmt} needs include.ingest.formats ({e})") from None
    import gzip

    miner = Miner()
    opener = gzip.open if path.endswith(".gz") else open
    batch: list = []
    try:
        with opener(path, "rb") as fh:
            for rec in read_transactions(fh, fmt, filename=path):
                if isinstance(rec, RowError):
                    where = f", field {rec.field}" if rec.field else ""
                    raise _BadInput(f"{path}, line {rec.line}{where}: {rec.message}")
                batch.append((rec.items, rec.quantities, rec.unit_utilities))
                if len(batch) >= 10000:
                    miner.add_rows(batch)
                    batch.clear()
            if batch:
                miner.add_rows(batch)
    except FileError as e:
        raise _BadInput(str(e)) from None
    except (ValueError, TypeError) as e:
        if isinstance(e, _BadInput):
            raise
        raise _BadInput(f"{path}: {e}") from None
    except OSError as e:
        raise _BadInput(f"{path}: cannot read file: {e.strerror or e}") from None
    return miner


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import huim_engine as native

    def fail(msg: str, code: int = 2) -> int:
        print(f"error: {msg}", file=sys.stderr)
        return code

    if args.max_length is not None and args.max_length < 1:
        return fail("--max-length must be a positive integer")
    t_load = time.perf_counter()
    try:
        if args.format == "spmf":
            eng = native.Engine.from_spmf(args.input)
            scale = 0
        else:
            miner = _load_rows(args.input, args.format)
            eng = miner._engine
            scale = eng.scale
    except native.InputError as e:
        return fail(e.args[0])
    except _BadInput as e:
        return fail(str(e))
    except native.UtilityOverflow as e:
        return fail(f"{args.input}: {e}")
    t_mine = time.perf_counter()
    mu_text = args.min_utility.strip()
    try:
        if scale == 0 and mu_text.lstrip("-").isdigit():
            mu = max(int(mu_text), 0)
        else:
            from .api import scaled_min_utility

            mu = scaled_min_utility(mu_text, scale)
        ms_text = args.min_support.strip()
        if ms_text in ("0", "0.0", ""):
            msc = 1
        else:
            from .api import min_support_count

            msc = min_support_count(ms_text, eng.n_transactions)
    except (ValueError, TypeError) as e:
        return fail(str(e))
    if mu > (1 << 64) - 1:
        mu = (1 << 64) - 1
    try:
        res = eng.mine(mu, msc, args.max_length, not args.no_pruning, args.max_patterns, args.projection)
    except native.TooManyPatterns as e:
        return fail(str(e).replace("max_patterns=", "--max-patterns "), 3)
    except native.UtilityOverflow as e:
        return fail(f"{args.input}: {e}")
    t_write = time.perf_counter()
    try:
        res.write(args.output)
    except OSError as e:
        return fail(str(e), 1)
    t_end = time.perf_counter()
    if args.stats:
        import resource

        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        s = res.stats()
        print(
            f"patterns: {len(res)}\n"
            f"time: {t_end - _T0:.3f} s (load {t_mine - t_load:.3f} s, mine {t_write - t_mine:.3f} s, "
            f"write {t_end - t_write:.3f} s)\n"
            f"peak memory (RSS): {peak_kb / 1024:.1f} MB\n"
            f"transactions: {s['n_transactions']}, items: {s['n_items']}, "
            f"promising items: {s['n_promising_items']}, merged transactions: {s['n_merged_transactions']}\n"
            f"algorithm: {s['algorithm']} (nodes indexed {s['nodes_indexed']}, scanned {s['nodes_scanned']}), "
            f"candidates: {s['candidates']}",
            file=sys.stderr,
        )
    return 0
