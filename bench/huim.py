"""Benchmark of the HUI mining engine against the `pami` package's EFIM (issue 14).

Each run is its own process on the same (uncompressed) input file: this engine's command line
(`python -m include.mining FILE --min-utility N --output OUT`) and a small runner that imports
`PAMI.highUtilityPattern.basic.EFIM`, mines and writes its patterns. Reported per case:
whole-process wall time (min over the runs), peak RSS of the child (`wait4` rusage), pattern
counts, agreement (same itemsets with the same utilities) and the ratio ours / pami.

    .venv/bin/python bench/huim.py                 # everything (long: pami takes minutes on some)
    .venv/bin/python bench/huim.py --quick         # the issue's fixed cases only, pami run once
    .venv/bin/python bench/huim.py --pami-timeout 120 --runs 3 --datasets foodmart,chess

The latest table is written into bench/README.md (between the huim markers) unless --no-readme.
"""

from __future__ import annotations

import argparse
import gzip
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ROOT / "bench" / "data" / "huim"
README = ROOT / "bench" / "README.md"
MARKERS = {"sweep": "huim-bench-sweep", "fixed": "huim-bench-fixed"}

# three thresholds per dataset giving roughly 10^2, 10^4, 10^5 patterns (found with this engine)
SWEEP = {
    "foodmart": [15000, 5600, 2800],
    "chess": [640000, 530000, 460000],
    "mushroom": [520000, 350000, 200000],
    "bms": [2220000, 2020000, 2000000],  # 7, 7, 9109: the count jumps (see README)
    "ecommerce": [1500000, 1000000, 890000],
    "retail_synthutil": [120000, 9200, 4000],
}

# the fixed cases: (dataset, min_utility, patterns, Java reference / pami, best known / pami)
FIXED = [
    ("foodmart", 3000, 85034, 0.13, 0.064, "C++ EFIM"),
    ("chess", 450000, 112873, 0.091, 0.037, "C++ EFIM"),
    ("mushroom", 200000, 92656, 0.19, 0.062, "C++ EFIM"),
    ("bms", 2220000, 7, 0.22, 0.017, "C++ EFIM"),
    ("retail_synthutil", 100000, 121, 0.019, 0.019, "Java FHM"),
    ("retail_synthutil", 50000, 527, 0.0078, 0.0078, "Java FHM"),
    ("ecommerce", 1000000, 15524, 0.036, 0.023, "Rust, raw ids"),
]

PAMI_CHILD = r"""
import sys
from PAMI.highUtilityPattern.basic.EFIM import EFIM
path, minutil, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
algo = EFIM(path, minutil, " ")
algo.mine()
with open(out, "w") as f:
    for items, util in algo.getPatterns().items():
        f.write(" ".join(items.split()) + "\t" + str(util) + "\n")
"""


@dataclass
class Run:
    seconds: float | None = None  # min over runs; None = failed or timed out
    runs: list[float] = field(default_factory=list)
    rss_mb: float | None = None
    patterns: dict | None = None
    note: str = ""


# A small launcher process starts each measured command and reports its wall time and peak RSS
# (wait4). The benchmark's own process grows (it compares pattern sets) and Linux carries a
# parent's peak RSS into a forked child's ru_maxrss, so the child is not forked from it directly.
LAUNCHER = r"""
import json, os, signal, subprocess, sys, time
timeout = float(sys.argv[1]); cmd = sys.argv[2:]
t0 = time.perf_counter()
p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
deadline = t0 + timeout
while True:
    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
    if pid:
        wall = time.perf_counter() - t0
        break
    if time.perf_counter() > deadline:
        os.killpg(p.pid, signal.SIGKILL)
        os.wait4(p.pid, 0)
        print(json.dumps({"wall": None, "rss_kb": 0, "note": "timeout"}))
        sys.exit(0)
    time.sleep(0.001)
err = p.stderr.read().decode(errors="replace")
rc = os.waitstatus_to_exitcode(status)
p.returncode = rc
note = "" if rc == 0 else f"exit {rc}: {err.strip()[-300:]}"
print(json.dumps({"wall": wall if rc == 0 else None, "rss_kb": ru.ru_maxrss, "note": note}))
"""


def run_child(cmd: list[str], timeout: float, env: dict | None = None) -> tuple[float | None, float, str]:
    """(wall seconds or None on timeout/failure, peak RSS MB, note)."""
    import json

    out = subprocess.run([sys.executable, "-c", LAUNCHER, str(timeout), *cmd], capture_output=True,
                         text=True, env=env, timeout=timeout + 120)
    if out.returncode != 0:
        return None, 0.0, f"launcher failed: {out.stderr.strip()[-300:]}"
    r = json.loads(out.stdout)
    return r["wall"], r["rss_kb"] / 1024, r["note"]


def read_ours(path: Path) -> dict:
    res = {}
    with open(path) as f:
        for line in f:
            items, rest = line.split(" #UTIL: ")
            res[frozenset(items.split(" "))] = int(rest.split(" #SUP: ")[0])
    return res


def read_pami(path: Path) -> dict:
    res = {}
    with open(path) as f:
        for line in f:
            items, util = line.rstrip("\n").split("\t")
            res[frozenset(items.split(" "))] = int(util)
    return res


def measure(kind: str, data: Path, mu: int, runs: int, timeout: float, tmp: Path) -> Run:
    out = tmp / f"{kind}-{data.stem}-{mu}.out"
    if kind == "ours":
        cmd = [sys.executable, "-m", "include.mining", str(data), "--format", "spmf",
               "--min-utility", str(mu), "--output", str(out)]
        env = None
    else:
        child = tmp / "pami_child.py"
        child.write_text(PAMI_CHILD)
        cmd = [sys.executable, str(child), str(data), str(mu), str(out)]
        env = dict(os.environ, MPLCONFIGDIR=str(tmp / "mpl"))
    r = Run()
    for i in range(runs):
        wall, rss, note = run_child(cmd, timeout, env)
        if wall is None:
            r.note = note
            break
        r.runs.append(wall)
        r.rss_mb = max(r.rss_mb or 0.0, rss)
        # a slow run is measured once: its min of 3 would not change a ratio that is far apart
        if (kind == "pami" and wall > timeout / 3) or (kind == "ours" and wall > 60):
            break
    if r.runs:
        r.seconds = min(r.runs)
        r.patterns = read_ours(out) if kind == "ours" else read_pami(out)
    return r


def fmt_s(x: float | None) -> str:
    return "—" if x is None else (f"{x:.3f}" if x < 10 else f"{x:.1f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="only the issue's fixed cases; pami once")
    ap.add_argument("--runs", type=int, default=3, help="runs per tool and case (min is reported)")
    ap.add_argument("--pami-timeout", type=float, default=900.0, help="seconds before a pami run is killed")
    ap.add_argument("--datasets", default="", help="comma-separated subset of datasets")
    ap.add_argument("--no-readme", action="store_true", help="do not rewrite bench/README.md")
    ap.add_argument("--no-fixed", action="store_true", help="skip the fixed cases table")
    ap.add_argument("--no-sweep", action="store_true", help="skip the three-threshold sweep")
    args = ap.parse_args()
    only = set(filter(None, args.datasets.split(",")))
    pami_runs = 1 if args.quick else args.runs

    cases: list[tuple[str, int]] = []
    if not args.quick and not args.no_sweep:
        for d, mus in SWEEP.items():
            cases += [(d, mu) for mu in mus]
    if not args.no_fixed:
        cases += [(d, mu) for d, mu, *_ in FIXED]
    if only:
        cases = [c for c in cases if c[0] in only]
    seen = set()
    cases = [c for c in cases if not (c in seen or seen.add(c))]

    tmp = Path(tempfile.mkdtemp(prefix="huim-bench-"))
    results: dict[tuple[str, int], tuple[Run, Run]] = {}
    try:
        files = {}
        for d in sorted({c[0] for c in cases}):
            dst = tmp / f"{d}.txt"
            with gzip.open(DATASETS / f"{d}.txt.gz", "rb") as src, open(dst, "wb") as f:
                shutil.copyfileobj(src, f)
            files[d] = dst
        for d, mu in cases:
            ours = measure("ours", files[d], mu, args.runs, 3600.0, tmp)
            pami = measure("pami", files[d], mu, pami_runs, args.pami_timeout, tmp)
            results[(d, mu)] = (ours, pami)
            print(row_text(d, mu, ours, pami), flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    tables = render(results, args)
    for name, table in tables.items():
        print()
        print(table)
        if not args.no_readme:
            write_readme(name, table)
    return 0


def agreement(ours: Run, pami: Run) -> str:
    if ours.patterns is None:
        return "ours failed"
    if pami.patterns is None:
        return "— (pami " + (pami.note or "failed") + ")"
    if ours.patterns == pami.patterns:
        return "yes"
    a, b = set(ours.patterns), set(pami.patterns)
    diff = sum(1 for k in a & b if ours.patterns[k] != pami.patterns[k])
    return f"NO ({len(a - b)} only ours, {len(b - a)} only pami, {diff} utilities differ)"


def ratio(ours: Run, pami: Run) -> float | None:
    if ours.seconds is None or pami.seconds is None:
        return None
    return ours.seconds / pami.seconds


def ratio_or_bound(ours: Run, pami: Run, timeout: float) -> tuple[float | None, bool]:
    """The ratio, or (when pami was killed at the timeout) an upper bound of it."""
    r = ratio(ours, pami)
    if r is None and ours.seconds is not None and pami.note == "timeout":
        return ours.seconds / timeout, True
    return r, False


def row_text(d: str, mu: int, ours: Run, pami: Run) -> str:
    r = ratio(ours, pami)
    n = len(ours.patterns) if ours.patterns is not None else None
    return (f"{d}@{mu}: ours {fmt_s(ours.seconds)} s {ours.rss_mb or 0:.0f} MB ({n} patterns), "
            f"pami {fmt_s(pami.seconds)} s {pami.rss_mb or 0:.0f} MB {pami.note}, "
            f"ratio {'—' if r is None else f'{r:.4f}'}, agree: {agreement(ours, pami)}")


def render(results: dict, args) -> dict[str, str]:
    tables = {}
    host = f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end, Python {platform.python_version()}"
    head = (f"Run {time.strftime('%Y-%m-%d %H:%M')} ({host}); whole-process wall time in seconds, ours min of "
            f"{args.runs}, pami min of {1 if args.quick else args.runs} (once when a run takes more than "
            f"a third of the {args.pami_timeout:.0f} s timeout); peak RSS of the child process in MB.")
    lines = [head, ""]
    do_sweep = not (args.quick or args.no_sweep)
    sweep_rows = [(d, mu) for d, mus in SWEEP.items() for mu in mus if (d, mu) in results and do_sweep]
    if sweep_rows:
        lines.append("| dataset @ min_utility | patterns (ours / pami) | ours s | pami s | ratio | ours MB | pami MB | agree |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---|")
        for d, mu in sweep_rows:
            o, p = results[(d, mu)]
            lines.append(table_row(d, mu, o, p, args.pami_timeout))
        tables["sweep"] = "\n".join(lines)
    lines = [head, ""]
    fixed_rows = [f for f in FIXED if (f[0], f[1]) in results and not args.no_fixed]
    if fixed_rows:
        lines.append("| dataset @ min_utility | patterns | ours s | pami s | ours / pami | Java ref / pami | "
                     "best known / pami | ≤ Java | ≤ best | ours MB | pami MB | agree |")
        lines.append("|---|---:|---:|---:|---:|---:|---:|---|---|---:|---:|---|")
        for d, mu, npat, java, best, who in fixed_rows:
            o, p = results[(d, mu)]
            r, bound = ratio_or_bound(o, p, args.pami_timeout)
            n = len(o.patterns) if o.patterns is not None else "—"
            rs = "—" if r is None else (f"< {r:.4f}" if bound else f"{r:.4f}")
            ps = fmt_s(p.seconds) if p.seconds is not None else f"> {args.pami_timeout:.0f} ({p.note})"
            lines.append(
                f"| {d} @ {mu} | {n} | {fmt_s(o.seconds)} | {ps} | {rs} | {java} | {best} ({who}) | "
                f"{'—' if r is None else ('yes' if r <= java else 'NO')} | "
                f"{'—' if r is None else ('yes' if r <= best else 'NO')} | "
                f"{o.rss_mb or 0:.0f} | {p.rss_mb or 0:.0f} | {agreement(o, p)} |"
            )
        tables["fixed"] = "\n".join(lines)
    return tables


def table_row(d: str, mu: int, o: Run, p: Run, timeout: float) -> str:
    r, bound = ratio_or_bound(o, p, timeout)
    no = len(o.patterns) if o.patterns is not None else "—"
    npm = len(p.patterns) if p.patterns is not None else "—"
    rs = "—" if r is None else (f"< {r:.4f}" if bound else f"{r:.4f}")
    ps = fmt_s(p.seconds) if p.seconds is not None else (f"> {timeout:.0f}" if p.note == "timeout" else p.note or "—")
    return (f"| {d} @ {mu} | {no} / {npm} | {fmt_s(o.seconds)} | {ps} | {rs} | "
            f"{o.rss_mb or 0:.0f} | {p.rss_mb or 0:.0f} | {agreement(o, p)} |")


def write_readme(name: str, table: str) -> None:
    begin, end = f"<!-- {MARKERS[name]}:begin -->", f"<!-- {MARKERS[name]}:end -->"
    text = README.read_text() if README.exists() else "# Benchmarks\n"
    block = f"{begin}\n{table}\n{end}"
    if begin in text and end in text:
        a, b = text.index(begin), text.index(end) + len(end)
        text = text[:a] + block + text[b:]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    README.write_text(text)


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
