"""The benchmark datasets (bench/data/huim): the exact result set and utilities are confirmed by a second, independent
implementation, the `pami` package's EFIM (run live in its own process); support counts are
checked by direct counting on a sample. retail_synthutil is compared with pami's recorded result
(pami needs about 3 minutes there; bench/huim.py runs it live)."""

from __future__ import annotations

import gzip
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from include.mining import Miner

ROOT = Path(__file__).resolve().parents[2]
DATASETS = ROOT / "bench" / "data" / "huim"
HERE = Path(__file__).resolve().parent

PAMI_CHILD = r"""
import sys
from PAMI.highUtilityPattern.basic.EFIM import EFIM
algo = EFIM(sys.argv[1], int(sys.argv[2]), " ")
algo.mine()
with open(sys.argv[3], "w") as f:
    for items, util in algo.getPatterns().items():
        f.write(" ".join(items.split()) + "\t" + str(util) + "\n")
"""

# thresholds with many patterns where pami finishes in seconds
CASES = [
    ("foodmart", 3000, 85034),
    ("mushroom", 200000, 92656),
    ("chess", 450000, 112873),
    ("bms", 2220000, 7),
    ("ecommerce", 1000000, 15524),
]


def load_transactions(name: str) -> list[tuple[frozenset, dict]]:
    txs = []
    with gzip.open(DATASETS / f"{name}.txt.gz", "rt") as f:
        for line in f:
            items, _, utils = line.strip().split(":")
            txs.append(dict(zip(items.split(), map(int, utils.split()))))
    return txs


def check_supports(miner_patterns, name: str, n_sample: int = 150) -> None:
    txs = load_transactions(name)
    sets = [frozenset(t) for t in txs]
    rng = random.Random(14)
    for p in rng.sample(miner_patterns, min(n_sample, len(miner_patterns))):
        s = frozenset(p.items)
        holding = [t for t, st in zip(txs, sets) if s <= st]
        assert p.support_count == len(holding)
        assert p.utility == sum(t[i] for t in holding for i in s)
        assert p.support == len(holding) / len(txs)
        best = max(sum(1 for st in sets if i in st) for i in s)
        assert p.confidence == len(holding) / best


def ours(name: str, mu: int):
    m = Miner.from_spmf(str(DATASETS / f"{name}.txt.gz"))
    res = m.mine(mu)
    return res


def as_map(patterns) -> dict[frozenset, int]:
    return {frozenset(p.items): p.utility for p in patterns}


@pytest.mark.parametrize("name, mu, count", CASES, ids=[f"{c[0]}@{c[1]}" for c in CASES])
def test_dataset_matches_pami(name: str, mu: int, count: int, tmp_path: Path):
    plain = tmp_path / f"{name}.txt"
    with gzip.open(DATASETS / f"{name}.txt.gz", "rb") as src:
        plain.write_bytes(src.read())
    child = tmp_path / "pami_child.py"
    child.write_text(PAMI_CHILD)
    out = tmp_path / "pami.out"
    env = dict(os.environ, MPLCONFIGDIR=str(tmp_path / "mpl"))
    subprocess.run([sys.executable, str(child), str(plain), str(mu), str(out)], check=True,
                   capture_output=True, timeout=600, env=env)
    expected = {}
    for line in out.read_text().splitlines():
        items, util = line.split("\t")
        expected[frozenset(items.split(" "))] = int(util)
    res = ours(name, mu)
    assert len(res.patterns) == count == len(expected)
    assert as_map(res.patterns) == expected
    # every variant gives the same result
    m = Miner.from_spmf(str(plain))
    for projection in ("scan", "index"):
        r, _ = m.search(mu, projection=projection)
        assert len(r) == count
    check_supports(res.patterns, name)


def test_retail_matches_recorded_pami_result():
    expected = {}
    for line in (HERE / "data" / "retail_synthutil_100000.pami.txt").read_text().splitlines():
        if line.startswith("#"):
            continue
        items, util = line.split("\t")
        expected[frozenset(items.split(" "))] = int(util)
    res = ours("retail_synthutil", 100000)
    assert as_map(res.patterns) == expected
    assert len(expected) == 121
    assert res.stats.n_transactions == 88162 and res.stats.n_items == 16470
    check_supports(res.patterns, "retail_synthutil", 40)


def test_no_pruning_and_limits_on_a_dataset():
    m = Miner.from_spmf(str(DATASETS / "foodmart.txt.gz"))
    full = m.mine(6000)
    assert m.mine(6000, use_pruning=False).patterns == full.patterns
    k3 = m.mine(6000, max_pattern_length=3).patterns
    assert k3 == [p for p in full.patterns if p.pattern_length <= 3]
    sup = m.mine(6000, min_support=0.002).patterns
    assert sup == [p for p in full.patterns if p.support >= 0.002]
    m2 = Miner.from_spmf(str(DATASETS / "chess.txt.gz"))
    full = m2.mine(600000)
    assert m2.mine(600000, use_pruning=False, max_pattern_length=4).patterns == [
        p for p in full.patterns if p.pattern_length <= 4
    ]
    for item in sorted({i for p in full.patterns for i in p.items})[::7]:
        assert m2.mine(600000, required_item=item).patterns == [p for p in full.patterns if item in p.items]
