"""The command line: output format, options, input errors (file, line, problem; exit code 2)."""

from __future__ import annotations

import gzip
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from include.mining import mine
from include.mining.reference import brute_force_mine

ROOT = Path(__file__).resolve().parents[2]

SPMF = """\
# a comment
% another
@CONVERTED_FROM_TEXT
3 5 1 2 4 6:30:1 3 5 10 6 5\r
3 5 2 4:20:3 3 8 6\r
3 1 4:8:1 5 2
3 5 1 7:27:6 6 10 5
3 5 2 7:11:2 3 4 2

"""

def _expected(min_utility: int) -> dict[tuple[str, ...], tuple[int, int]]:
    txs = []
    for line in SPMF.splitlines():
        line = line.strip()
        if not line or line[0] in "#%@":
            continue
        items, _, utils = line.split(":")
        us = [int(u) for u in utils.split()]
        txs.append((items.split(), [1] * len(us), us))
    got = brute_force_mine(txs, min_utility)
    return {tuple(sorted(k, key=int)): (int(u), c) for k, (u, c, _) in got.items()}


EXPECTED_25 = _expected(25)
assert len(EXPECTED_25) > 10


def run(*args: str, input_file: Path | None = None) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "include.mining", *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def parse(out: str) -> dict[tuple[str, ...], tuple[int, int]]:
    res = {}
    for line in out.splitlines():
        items, rest = line.split(" #UTIL: ")
        u, s = rest.split(" #SUP: ")
        toks = tuple(items.split(" "))
        assert list(toks) == sorted(toks, key=int), line
        assert toks not in res
        res[toks] = (int(u), int(s))
    return res


@pytest.fixture
def spmf(tmp_path: Path) -> Path:
    p = tmp_path / "db.txt"
    p.write_bytes(SPMF.encode())
    return p


def test_spmf_output(spmf: Path):
    r = run(str(spmf), "--format", "spmf", "--min-utility", "25")
    assert r.returncode == 0, r.stderr
    assert parse(r.stdout) == EXPECTED_25
    assert r.stdout.endswith("\n") and "\r" not in r.stdout
    assert r.stderr == ""


def test_gzip_output_file_stats_and_pruning(spmf: Path, tmp_path: Path):
    gz = tmp_path / "db.txt.gz"
    gz.write_bytes(gzip.compress(spmf.read_bytes()))
    out = tmp_path / "out.txt"
    r = run(str(gz), "--min-utility", "25", "--output", str(out), "--stats")
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert parse(out.read_text()) == EXPECTED_25
    assert f"patterns: {len(EXPECTED_25)}" in r.stderr
    assert "time:" in r.stderr and "peak memory" in r.stderr
    r2 = run(str(spmf), "--min-utility", "25", "--no-pruning")
    assert r2.stdout == out.read_text()  # same result, same order


def test_max_length_and_min_support(spmf: Path):
    r = run(str(spmf), "--min-utility", "25", "--max-length", "2", "--min-support", "0.6")
    assert r.returncode == 0, r.stderr
    got = parse(r.stdout)
    assert got == {k: v for k, v in EXPECTED_25.items() if len(k) <= 2 and v[1] >= 3}


def test_max_patterns_exit_code(spmf: Path):
    r = run(str(spmf), "--min-utility", "1", "--max-patterns", "5")
    assert r.returncode == 3
    assert "--max-patterns 5" in r.stderr


@pytest.mark.parametrize(
    "line, problem",
    [
        ("1 2:5:2 2", "transaction utility (TU) 5 does not equal the sum of the utilities 4"),
        ("1 2 3:4:2 2", "3 items but 2 utilities (counts must match)"),
        ("1 2:4:2 2 1", "2 items but 3 utilities (counts must match)"),
        ("1 x:4:2 2", "item 'x' is not a non-negative integer"),
        ("1 2:4:2 2.5", "utility '2.5' is not a non-negative integer"),
        ("1 2:4:2 -2", "utility '-2' is not a non-negative integer"),
        ("1 2:four:2 2", "transaction utility (TU) 'four' is not a non-negative integer"),
        ("1 2 4 2", "expected 'items:TU:utilities' but found no ':'"),
        ("1 2:4", "expected 'items:TU:utilities' but found only one ':'"),
        ("1 2:4:2:2", "expected 'items:TU:utilities' but found more than two ':'"),
        ("1 1:4:2 2", "item 1 appears twice"),
        (":0:", "transaction has no items"),
    ],
)
def test_malformed_spmf_lines(tmp_path: Path, line: str, problem: str):
    p = tmp_path / "bad.txt"
    p.write_text("1 2:3:1 2\n# ok\n" + line + "\n3:1:1\n")
    r = run(str(p), "--format", "spmf", "--min-utility", "1")
    assert r.returncode == 2
    assert r.stdout == ""
    assert r.stderr.strip() == f"error: {p}, line 3: {problem}"


def test_missing_file_and_bad_options(tmp_path: Path):
    r = run(str(tmp_path / "nope.txt"), "--min-utility", "1")
    assert r.returncode == 2 and "nope.txt" in r.stderr and "cannot read file" in r.stderr
    p = tmp_path / "ok.txt"
    p.write_text("1:1:1\n")
    assert run(str(p), "--min-utility", "x").returncode == 2
    assert run(str(p), "--min-utility", "1", "--max-length", "0").returncode == 2
    assert run(str(p), "--min-utility", "1", "--min-support", "2").returncode == 2
    assert run(str(p)).returncode == 2  # --min-utility is required


CSV = """transaction_id,transaction_date,item,quantity,unit_utility
t1,2024-05-01T10:00:00Z,bread,2,1.50
t1,2024-05-01T10:00:00Z,milk,1,0.99
t2,2024-05-01T11:00:00Z,bread,1,1.50
t2,2024-05-01T11:00:00Z,milk,2,0.99
t2,2024-05-01T11:00:00Z,eggs,12,0.25
t3,2024-05-02T09:00:00Z,eggs,6,0.25
"""


def _csv_transactions():
    return [
        (["bread", "milk"], [2, 1], [Decimal("1.50"), Decimal("0.99")]),
        (["bread", "milk", "eggs"], [1, 2, 12], [Decimal("1.50"), Decimal("0.99"), Decimal("0.25")]),
        (["eggs"], [6], [Decimal("0.25")]),
    ]


def _expected_lines(min_utility: str) -> dict:
    return {p.items: p for p in mine(_csv_transactions(), Decimal(min_utility))}


def _parse_named(out: str) -> dict:
    res = {}
    for line in out.splitlines():
        items, rest = line.split(" #UTIL: ")
        u, s = rest.split(" #SUP: ")
        res[tuple(items.split(" "))] = (Decimal(u), int(s))
    return res


def test_csv_and_json_formats(tmp_path: Path):
    c = tmp_path / "day.csv"
    c.write_text(CSV)
    r = run(str(c), "--format", "csv", "--min-utility", "3.5")
    assert r.returncode == 0, r.stderr
    exp = {k: (Decimal(p.utility), p.support_count) for k, p in _expected_lines("3.5").items()}
    assert _parse_named(r.stdout) == exp
    assert ("bread", "milk") in exp and exp[("bread", "milk")] == (Decimal("7.47"), 2)
    recs = [
        {"transaction_id": f"t{i}", "transaction_date": "2024-05-01T10:00:00Z", "items": it,
         "quantities": q, "unit_utilities": [float(x) for x in u]}
        for i, (it, q, u) in enumerate(_csv_transactions())
    ]
    j = tmp_path / "day.json"
    j.write_text(json.dumps(recs))
    gz = tmp_path / "day.json.gz"
    gz.write_bytes(gzip.compress(j.read_bytes()))
    for path in (j, gz):
        r = run(str(path), "--format", "json", "--min-utility", "3.5")
        assert r.returncode == 0, r.stderr
        assert _parse_named(r.stdout) == exp


def test_csv_row_error_names_file_line_field(tmp_path: Path):
    c = tmp_path / "bad.csv"
    c.write_text(CSV.replace("t2,2024-05-01T11:00:00Z,milk,2,0.99", "t2,2024-05-01T11:00:00Z,milk,-2,0.99"))
    r = run(str(c), "--format", "csv", "--min-utility", "1")
    assert r.returncode == 2
    assert str(c) in r.stderr and "line 5" in r.stderr and "quantity" in r.stderr
    h = tmp_path / "header.csv"
    h.write_text("a,b\n1,2\n")
    r = run(str(h), "--format", "csv", "--min-utility", "1")
    assert r.returncode == 2 and "header" in r.stderr
