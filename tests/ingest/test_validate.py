"""The great-expectations suites decide exactly what the pure rules decide, with the same texts."""
from __future__ import annotations

import io
import json

from include.ingest.formats import RawTransaction, RowError, check_rules, iter_raw
from include.ingest.validate import ITEM_EXPECTATIONS, file_facts
from tests.ingest.conftest import H

CSV = (H + "A,2024-01-01,milk,2,1\n"
       "B,2024-01-01,milk,-2,1.50\n"
       "C,2024-01-01,milk,2,-1\n"
       "D,2024-01-01,  ,2,1\nD,2024-01-01,b,-2,1\n"         # first problem: the empty item
       "E,2024-01-01,a,1,1\nE,2024-01-01,a,1,2\n"            # merge conflict: not a GE rule
       "F,2024-01-01,a,1e-9999,1\n"                          # tiny but positive
       "G,2024-01-01,a,-1e-9999,1\n"                         # tiny and negative (no underflow)
       "H,2024-01-01,a,1,-0\n"
       "I,2024-01-01,a,1,-1e-400\n"
       "J,2024-01-01,a,0.0,1\n")


def _raws(data: bytes, file_type: str) -> list[RawTransaction]:
    return [r for r in iter_raw(io.BytesIO(data), file_type) if isinstance(r, RawTransaction)]


def test_suite_matches_the_pure_rules_csv(validator):
    raws = _raws(CSV.encode(), "csv")
    too_big = RawTransaction("Z", raws[0].transaction_date, 99, [], "csv", 10_001)
    raws.append(too_big)
    got = validator.validate_chunk(raws)
    assert got == [check_rules(r) for r in raws]
    assert sum(e is not None for e in got) == 7          # B C D G I J Z
    assert got[-1] == RowError(99, "items", "the transaction has 10001 items, at most 10000 are "
                               "allowed", "Z")


def test_suite_matches_the_pure_rules_json(validator):
    recs = [{"transaction_id": f"T{i}", "transaction_date": "2024-01-01", "items": items,
             "quantities": qs, "unit_utilities": us}
            for i, (items, qs, us) in enumerate([
                (["a", "b"], [1, 2], [0, 1]),
                (["a", " "], [1, 2], [0, 1]),
                (["a", "b"], [1, 0], [0, 1]),
                (["a", "b"], [1, 1], [0, -1]),
                ([f"i{k}" for k in range(10_001)], [1] * 10_001, [1] * 10_001),
            ])]
    raws = _raws(json.dumps(recs).encode(), "json")
    got = validator.validate_chunk(raws)
    assert got == [check_rules(r) for r in raws]
    assert [e.field if e else None for e in got] == [None, "items[1]", "quantities[1]",
                                                    "unit_utilities[1]", "items"]


def test_suite_names():
    assert [k for k, _c, _kw in ITEM_EXPECTATIONS] == ["n_items", "item", "quantity",
                                                       "unit_utility"]


def test_file_suite(validator, tmp_path):
    def check(content: bytes, file_type="csv", known=True):
        p = tmp_path / "f.dat"
        p.write_bytes(content)
        err = validator.validate_file(file_facts(p, file_type, store_id="s-1", store_known=known))
        return None if err is None else str(err)

    assert check(H.encode() + b"T1,2024-01-01,a,1,1\n") is None
    assert check(b'[{"a": 1}]', "json") is None
    assert check(b"") == "f.dat: the file is empty"
    assert check(b"\xff\xfe" + H.encode("utf-16-le")) == \
        "f.dat, line 1: not valid UTF-8: byte 0xff at column 1 (save the file as UTF-8)"
    assert check(H.encode(), known=False) == "f.dat, store_id: store s-1 is not a known active store"
    assert check(b"a,b\n") == ("f.dat, line 1, header: expected "
                               "'transaction_id,transaction_date,item,quantity,unit_utility', "
                               "found 'a,b'")
    assert check(H.encode(), "json") == \
        "f.dat, line 1: the content is not JSON (it looks like CSV), but file_type is 'json'"


def test_each_value_is_judged_once_per_file(validator, monkeypatch):
    """With a file's ValueVerdicts the suite runs only on values no earlier chunk had (not at all
    when there are none), and the outcome stays exactly the pure rules'."""
    from include.ingest.validate import ValueVerdicts

    raws = _raws(CSV.encode(), "csv")
    verdicts = ValueVerdicts()
    runs = []
    judge = validator._failures
    monkeypatch.setattr(validator, "_failures",
                        lambda name, df: runs.append(len(df)) or judge(name, df))
    assert validator.validate_chunk(raws, verdicts) == [check_rules(r) for r in raws]
    assert validator.validate_chunk(raws, verdicts) == [check_rules(r) for r in raws]
    assert len(runs) == 1                                   # nothing new: the suite did not run
    more = raws + _raws((H + "K,2024-01-01,new item,3,-7\nL,2024-01-01,a,-2,1\n").encode(), "csv")
    got = validator.validate_chunk(more, verdicts)
    assert got == [check_rules(r) for r in more]
    assert [e.field if e else None for e in got[-2:]] == ["unit_utility", "quantity"]
    assert runs == [runs[0], 1]                             # one row: the three new values


def test_verdicts_past_their_limit_are_judged_again(validator):
    from include.ingest.validate import ValueVerdicts

    raws = _raws(CSV.encode(), "csv")
    verdicts = ValueVerdicts(limit=0)                       # remembers nothing
    for _ in range(2):
        assert validator.validate_chunk(raws, verdicts) == [check_rules(r) for r in raws]
    assert not any(verdicts.seen.values()) and not any(verdicts.bad.values())
