"""The file formats (the contract with the stores): pure parser, no services."""
from __future__ import annotations

import io
import json
import tracemalloc
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from include.ingest.formats import (FileError, RowError, Transaction, check_rules, iter_raw,
                                    read_transactions)

H = "transaction_id,transaction_date,item,quantity,unit_utility\n"
UTC = timezone.utc


def parse(data, file_type="csv"):
    raw = data.encode("utf-8") if isinstance(data, str) else data
    return list(read_transactions(io.BytesIO(raw), file_type, filename="f.dat"))


def file_error(data, file_type="csv") -> str:
    with pytest.raises(FileError) as ei:
        parse(data, file_type)
    return str(ei.value)


def only_error(data, file_type="csv") -> RowError:
    out = [r for r in parse(data, file_type) if isinstance(r, RowError)]
    assert len(out) == 1, out
    return out[0]


def jrec(**kw) -> dict:
    rec = {"transaction_id": "T1", "transaction_date": "2024-03-01T10:00:00",
           "items": ["milk"], "quantities": [1], "unit_utilities": [1.5]}
    rec.update(kw)
    return rec


def jarray(*recs) -> str:
    return json.dumps(list(recs))


def jlines(*recs) -> str:
    return "".join(json.dumps(r) + "\n" for r in recs)


# ------------------------------------------------------------------------------- good files
def test_good_csv_groups_merges_and_trims():
    out = parse("\ufeff" + H
                + "T1,2024-03-01T10:00:00,milk,2,1.50\n"
                + 'T1,2024-03-01T10:00:00," bread, ""rye"" ",1,2\n'
                + "T1,2024-03-01T10:00:00,milk ,3,1.5\n"
                + "T2,2024-03-01T11:00:00+02:00,eggs,12,0.25\r\n"
                + "T3,2024-03-02,x,0.001,0\n")
    assert out == [
        Transaction("T1", datetime(2024, 3, 1, 10, tzinfo=UTC), ("milk", 'bread, "rye"'),
                    (Decimal("5"), Decimal("1")), (Decimal("1.50"), Decimal("2")), 2),
        Transaction("T2", datetime(2024, 3, 1, 11, tzinfo=timezone(timedelta(hours=2))),
                    ("eggs",), (Decimal("12"),), (Decimal("0.25"),), 5),
        Transaction("T3", datetime(2024, 3, 2, tzinfo=UTC), ("x",), (Decimal("0.001"),),
                    (Decimal("0"),), 6),
    ]
    assert out[0].total_utility == Decimal("9.50")
    assert out[1].transaction_date.utcoffset() == timedelta(hours=2)


def test_total_utility_is_exact():
    q = "0.1"
    u = "0.3333333333333333333333333333333333333333"
    (t,) = parse(H + f"T1,2024-01-01,a,{q},{u}\nT1,2024-01-01,b,3,0.1\n")
    assert str(t.total_utility) == "0.33333333333333333333333333333333333333333"


@pytest.mark.parametrize("shape", ["array", "lines"])
def test_good_json(shape):
    recs = [jrec(items=["milk", " bread ", "milk"], quantities=[1, 2.5, 3],
                 unit_utilities=[0.10, 2, 0.1]),
            jrec(transaction_id="T2", transaction_date="2024-03-01T10:00:00Z", items=["x"],
                 quantities=[1e-3], unit_utilities=[0])]
    text = json.dumps(recs, indent=2) if shape == "array" else jlines(*recs)
    out = parse(text, "json")
    # line: the record number in an array (here also the line of JSON Lines)
    assert out[0] == Transaction("T1", datetime(2024, 3, 1, 10, tzinfo=UTC), ("milk", "bread"),
                                 (Decimal("4"), Decimal("2.5")), (Decimal("0.10"), Decimal("2")), 1)
    assert out[1].quantities == (Decimal("0.001"),)
    assert out[1].line == 2
    # decimals come from the text, never through a binary float
    (t,) = parse(jarray(jrec(quantities=[0.1], unit_utilities=[0.2])), "json")
    assert t.total_utility == Decimal("0.02")


def test_json_array_records_are_numbered():
    out = parse("[\n" + ",\n".join(json.dumps(jrec(transaction_id=f"T{i}")) for i in range(3))
                + "\n]", "json")
    assert [t.line for t in out] == [1, 2, 3]


def test_header_only_and_empty_array_are_valid_and_empty():
    assert parse(H) == []
    assert parse("[]", "json") == []
    assert parse(" [ ] \n", "json") == []


# ------------------------------------------------------------------------------- row rules
@pytest.mark.parametrize("row,line,field,message", [
    ("T1,2024-01-01,milk,0,1", 2, "quantity", "quantity must be greater than 0, found 0"),
    ("T1,2024-01-01,milk,-2,1", 2, "quantity", "quantity must be greater than 0, found -2"),
    ("T1,2024-01-01,milk,2,-0.01", 2, "unit_utility",
     "unit_utility must not be negative, found -0.01"),
    ("T1,2024-01-01,  ,2,1", 2, "item", "item is empty"),
    ("T1,2024-01-01,milk,two,1", 2, "quantity", "quantity is not a decimal number: 'two'"),
    ("T1,2024-01-01,milk,1_000,1", 2, "quantity", "quantity is not a decimal number: '1_000'"),
    ("T1,2024-01-01,milk,NaN,1", 2, "quantity", "quantity is not a decimal number: 'NaN'"),
    ("T1,2024-01-01,milk,1,Infinity", 2, "unit_utility",
     "unit_utility is not a decimal number: 'Infinity'"),
    ("T1,2024-01-01,milk,1,1e-16384", 2, "unit_utility",
     "unit_utility has more than 16383 digits after the decimal point"),
    ("T1,2024-01-01,milk,1e131072,1", 2, "quantity",
     "quantity has more than 131072 digits before the decimal point"),
    ("T1,yesterday,milk,1,1", 2, "transaction_date",
     "transaction_date is not an ISO 8601 date-time: 'yesterday'"),
    (",2024-01-01,milk,1,1", 2, "transaction_id", "transaction_id is empty"),
    ("T1,2024-01-01,milk,1", 2, "line", "expected 5 fields, found 4"),
    ("T1,2024-01-01,milk,1,1,extra", 2, "line", "expected 5 fields, found 6"),
    ("T1,2024-01-01,mi\x00lk,1,1", 2, "item", "item contains a NUL character"),
])
def test_csv_row_rules(row, line, field, message):
    err = only_error(H + row + "\n")
    assert (err.line, err.field, err.message) == (line, field, message)


def test_csv_rejects_the_whole_transaction_and_keeps_the_others():
    out = parse(H + "T1,2024-01-01,a,1,1\nT2,2024-01-01,a,1,1\nT2,2024-01-01,b,-1,1\n"
                "T3,2024-01-01,c,1,1\n")
    assert [type(r).__name__ for r in out] == ["Transaction", "RowError", "Transaction"]
    assert out[1] == RowError(4, "quantity", "quantity must be greater than 0, found -1", "T2")


def test_csv_repeated_item_with_other_unit_utility_is_rejected():
    err = only_error(H + "T1,2024-01-01,milk,1,1.50\nT1,2024-01-01,bread,1,2\n"
                     "T1,2024-01-01, milk,1,1.60\n")
    assert err == RowError(4, "unit_utility",
                           "item 'milk' is repeated with unit_utility 1.60, but line 2 has 1.50",
                           "T1")


def test_csv_lines_of_a_transaction_share_the_date():
    err = only_error(H + "T1,2024-01-01T10:00:00,a,1,1\nT1,2024-01-01T10:00:00Z,b,1,1\n"
                     "T1,2024-01-01T11:00:00,c,1,1\n")
    assert err == RowError(4, "transaction_date",
                           "transaction_date '2024-01-01T11:00:00' differs from "
                           "'2024-01-01T10:00:00' on line 2 of the same transaction", "T1")


def test_csv_at_most_10000_items():
    body = "".join(f"T1,2024-01-01,item{i},1,1\n" for i in range(10_001))
    err = only_error(H + body + "T2,2024-01-01,a,1,1\n")
    assert err == RowError(2, "items", "the transaction has 10001 items, at most 10000 are allowed",
                           "T1")
    ok = parse(H + "".join(f"T1,2024-01-01,item{i},1,1\n" for i in range(10_000)))
    assert len(ok[0].items) == 10_000


@pytest.mark.parametrize("rec,field,message", [
    (jrec(quantities=[0]), "quantities[0]", "quantity must be greater than 0, found 0"),
    (jrec(items=["a", "b"], quantities=[1, -1], unit_utilities=[1, 1]), "quantities[1]",
     "quantity must be greater than 0, found -1"),
    (jrec(unit_utilities=[-1]), "unit_utilities[0]", "unit_utility must not be negative, found -1"),
    (jrec(items=[" "]), "items[0]", "item is empty"),
    (jrec(items=["a", "a"], quantities=[1, 1], unit_utilities=[1, 2]), "unit_utilities[1]",
     "item 'a' is repeated with unit_utility 2, but unit_utilities[0] has 1"),
    (jrec(items=["a", "b"]), "items",
     "items, quantities and unit_utilities must have the same length, found 2, 1 and 1"),
    (jrec(items=[], quantities=[], unit_utilities=[]), "items", "the transaction has no items"),
    (jrec(quantities=["1"]), "quantities[0]", "quantities[0] must be a number, found string"),
    (jrec(quantities=[True]), "quantities[0]", "quantities[0] must be a number, found boolean"),
    (jrec(items=[5]), "items[0]", "items[0] must be a string, found number"),
    (jrec(items="milk"), "items", "items must be an array, found string"),
    (jrec(transaction_id=7), "transaction_id", "transaction_id must be a string, found number"),
    (jrec(transaction_id=" "), "transaction_id", "transaction_id is empty"),
    (jrec(transaction_date="01/03/2024"), "transaction_date",
     "transaction_date is not an ISO 8601 date-time: '01/03/2024'"),
    ({"transaction_id": "T1"}, "transaction_date", "transaction_date is missing"),
])
def test_json_row_rules(rec, field, message):
    err = only_error(jarray(jrec(transaction_id="T0"), rec), "json")
    assert (err.line, err.field, err.message) == (2, field, message)


def test_json_non_object_and_nan():
    err = only_error("[5]", "json")
    assert err == RowError(1, "record", "a transaction must be a JSON object, found number", None)
    err = only_error('[{"transaction_id":"T1","transaction_date":"2024-01-01","items":["a"],'
                     '"quantities":[NaN],"unit_utilities":[1]}]', "json")
    assert (err.field, err.message) == ("quantities[0]", "quantity is not a decimal number: 'NaN'")


def test_json_at_most_10000_items():
    n = 10_001
    err = only_error(jlines(jrec(items=[f"i{k}" for k in range(n)], quantities=[1] * n,
                                 unit_utilities=[1] * n)), "json")
    assert err == RowError(1, "items", "the transaction has 10001 items, at most 10000 are allowed",
                           "T1")


# ------------------------------------------------------------------------------- file level
@pytest.mark.parametrize("data,file_type", [("", "csv"), ("\n\n", "csv"), ("", "json"),
                                            ("  \n ", "json"), ("\ufeff", "json")])
def test_empty_file(data, file_type):
    assert file_error(data, file_type) == "f.dat: the file is empty"


def test_wrong_header():
    assert file_error("id,date,item,qty,price\nT1,2024-01-01,a,1,1\n") == (
        "f.dat, line 1, header: expected "
        "'transaction_id,transaction_date,item,quantity,unit_utility', found 'id,date,item,qty,price'")


def test_type_does_not_match_content():
    assert file_error(jarray(jrec())) == \
        "f.dat, line 1, header: the content is JSON, but file_type is 'csv'"
    assert file_error(H + "T1,2024-01-01,a,1,1\n", "json") == \
        "f.dat, line 1: the content is not JSON (it looks like CSV), but file_type is 'json'"


def test_wrong_encoding():
    latin1 = (H + "T1,2024-01-01,café,1,1\n").encode("latin-1")
    assert file_error(latin1) == \
        "f.dat, line 2: not valid UTF-8: byte 0xe9 at column 18 (save the file as UTF-8)"
    utf16 = (H + "T1,2024-01-01,a,1,1\n").encode("utf-16")
    assert file_error(utf16) == \
        "f.dat, line 1: not valid UTF-8: byte 0xff at column 1 (save the file as UTF-8)"
    bad_json = ('[{"transaction_id":"T1","transaction_date":"2024-01-01",\n"items":["caf'
                .encode() + b"\xe9" + b'"],"quantities":[1],"unit_utilities":[1]}]')
    assert file_error(bad_json, "json") == \
        "f.dat, line 2: not valid UTF-8: byte 0xe9 at column 14 (save the file as UTF-8)"


def test_truncated_csv():
    assert file_error(H + "T1,2024-01-01,a,1,1\nT2,2024-01-01,b") == \
        "f.dat, line 3: the last line has 3 of 5 fields and no line end (truncated file?)"
    assert file_error(H + 'T1,2024-01-01,"a,1,1\n') == \
        "f.dat, line 2: the file ends inside a quoted field (truncated file?)"


def test_truncated_json():
    full = jarray(jrec(), jrec(transaction_id="T2"))
    assert file_error(full[:-30], "json") == \
        "f.dat, line 1: invalid JSON at column 235: Expecting value (truncated file?)"
    assert file_error(full[:-1], "json") == \
        "f.dat, line 1: invalid JSON at column 264: the array is not closed (truncated file?)"
    lines = jlines(jrec(), jrec(transaction_id="T2"))
    assert file_error(lines[:-20], "json") == \
        "f.dat, line 2: invalid JSON at column 107: Unterminated string (truncated file?)"


def test_unparseable_json():
    assert file_error('[{"transaction_id": "T1",}]', "json") == \
        "f.dat, line 1: invalid JSON at column 26: Expecting property name enclosed in double quotes"
    assert file_error(jlines(jrec()) + "{oops}\n", "json") == \
        "f.dat, line 2: invalid JSON at column 2: Expecting property name enclosed in double quotes"
    assert file_error("[1] [2]", "json") == \
        "f.dat, line 1: invalid JSON at column 5: extra data after the closing ']'"


def test_transaction_id_used_twice():
    assert file_error(H + "T1,2024-01-01,a,1,1\nT2,2024-01-01,a,1,1\nT1,2024-01-01,b,1,1\n") == (
        "f.dat, line 4, transaction_id: the transaction_id of the transaction at line 2 is used "
        "again (the lines of one transaction must be consecutive); a transaction_id must be "
        "unique in a file")
    assert file_error(jarray(jrec(), jrec(transaction_id="T2"), jrec()), "json") == (
        "f.dat, record 3, transaction_id: the transaction_id of the transaction at record 1 is "
        "used again; a transaction_id must be unique in a file")


def test_file_error_fields():
    with pytest.raises(FileError) as ei:
        parse(H + "T1,2024-01-01,a,1,1\nT2,2024-01-01,b")
    e = ei.value
    assert (e.filename, e.line, e.field) == ("f.dat", 3, None)
    assert e.message == "the last line has 3 of 5 fields and no line end (truncated file?)"
    assert isinstance(e, ValueError)


# ------------------------------------------------------------------------------- streaming
def _csv_stream(n_tx: int):
    """A file-like object producing a large CSV on the fly (never held in memory)."""

    class Gen(io.RawIOBase):
        def __init__(self):
            self.parts = self._gen()
            self.buf = b""

        def _gen(self):
            yield H.encode()
            for t in range(n_tx):
                yield "".join(f"T{t},2024-01-01T10:00:00,item{k},{k + 1},1.25\n"
                              for k in range(4)).encode()

        def readable(self):
            return True

        def readinto(self, b):
            while len(self.buf) < len(b):
                try:
                    self.buf += next(self.parts)
                except StopIteration:
                    break
            n = min(len(b), len(self.buf))
            b[:n] = self.buf[:n]
            self.buf = self.buf[n:]
            return n

    return Gen()


def test_csv_streams_in_bounded_memory():
    import numpy  # noqa: F401  (imported by the id check at the end; its import is not data)

    n = 60_000                                      # ~ 9 MB of CSV
    tracemalloc.start()
    count = 0
    for rec in read_transactions(_csv_stream(n), "csv", filename="big.csv"):
        assert isinstance(rec, Transaction)
        count += 1
    _cur, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert count == n
    assert peak < 4 * 1024 * 1024, peak            # buffers + the id check, not the file


def test_raw_layer_and_rules_compose():
    raws = list(iter_raw(io.BytesIO((H + "T1,2024-01-01,a,-1,1\n").encode()), "csv"))
    assert check_rules(raws[0]) == RowError(2, "quantity",
                                            "quantity must be greater than 0, found -1", "T1")


def test_transaction_id_used_twice_in_a_large_file():
    body = H + "".join(f"T{i},2024-01-01,a,1,1\n" for i in range(20_000)) + "T7,2024-01-01,a,1,1\n"
    assert file_error(body) == (
        "f.dat, line 20002, transaction_id: the transaction_id of the transaction at line 9 is "
        "used again (the lines of one transaction must be consecutive); a transaction_id must be "
        "unique in a file")
