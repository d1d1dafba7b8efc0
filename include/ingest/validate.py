"""The great-expectations suites of the transaction file contract (run with an ephemeral context).

Two levels, as in ``docs/ingest.md``:

* **file** (``transaction_file``): one row of facts about a file, taken from its first 64 KiB and
  the database before anything is loaded: not empty, UTF-8, known store, declared ``file_type``
  matches the content, CSV header. A failed expectation fails the file.
* **rows** (``transaction_rows``, one row per item): the row rules of the contract, run on each
  chunk of parsed transactions: 1..MAX_ITEMS items per transaction, item non-empty after
  trimming, ``quantity > 0``, ``unit_utility >= 0``. A transaction with a failed expectation is
  rejected, with the same text as ``formats.check_rules``.

Structural problems met while streaming (a bad byte or broken JSON further down, a truncated file)
are raised by the parser (``formats.FileError``); unparseable values, dates and the merge of
repeated items are decided by the parser and ``formats.merge_items``.

``import great_expectations`` takes 1.5-7 s, so it happens in ``ContractValidator()``, never at
import time of this module.
"""
from __future__ import annotations

import codecs
import csv
import io
import logging
import os
import threading
from dataclasses import dataclass
from decimal import Decimal
from typing import Sequence

from include.ingest import formats
from include.ingest.formats import (CSV_HEADER, MAX_ITEMS, EMPTY_ITEM, FileError, RawTransaction,
                                    RowError, bad_quantity, bad_unit_utility, too_many_items)

HEAD_BYTES = 64 * 1024

# (name, expectation class, kwargs) in the order they are reported; the first failure is the
# file's error.
FILE_EXPECTATIONS = [
    ("non_empty", "ExpectColumnValuesToBeInSet", {"column": "non_empty", "value_set": [True]}),
    ("utf8", "ExpectColumnValuesToBeInSet", {"column": "utf8", "value_set": [True]}),
    ("store_known", "ExpectColumnValuesToBeInSet", {"column": "store_known", "value_set": [True]}),
    ("type_matches", "ExpectColumnPairValuesToBeEqual",
     {"column_A": "file_type", "column_B": "content_type"}),
    ("header", "ExpectColumnValuesToBeInSet", {"column": "header_ok", "value_set": [True]}),
]
ITEM_EXPECTATIONS = [    # per item row, in the order check_rules applies them
    ("n_items", "ExpectColumnValuesToBeBetween",
     {"column": "n_items", "min_value": 1, "max_value": MAX_ITEMS}),
    ("item", "ExpectColumnValuesToMatchRegex", {"column": "item", "regex": r"\S"}),
    ("quantity", "ExpectColumnValuesToBeBetween",
     {"column": "quantity", "min_value": 0, "strict_min": True}),
    ("unit_utility", "ExpectColumnValuesToBeBetween", {"column": "unit_utility", "min_value": 0}),
]


@dataclass(frozen=True)
class FileFacts:
    filename: str
    file_type: str          # declared
    content_type: str       # 'csv' | 'json' | 'empty' (from the first non-blank byte)
    non_empty: bool
    utf8: bool
    store_known: bool
    header_ok: bool
    store_id: str
    head: bytes             # the complete lines of the first HEAD_BYTES (for the error texts)


def file_facts(path: str | os.PathLike, file_type: str, *, store_id: str, store_known: bool,
               filename: str | None = None) -> FileFacts:
    """The facts the file-level suite checks, from the first 64 KiB of the file."""
    with open(path, "rb") as f:
        head = f.read(HEAD_BYTES)
        complete = len(head) < HEAD_BYTES
    body = head[3:] if head.startswith(codecs.BOM_UTF8) else head
    first = body.lstrip()[:1]
    content_type = "empty" if not first else ("json" if first in (b"[", b"{") else "csv")
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=complete)
        utf8 = True
    except UnicodeDecodeError:
        utf8 = False
    header_ok = True
    if content_type == "csv" and file_type == "csv" and utf8:
        text = body.decode("utf-8", "ignore")
        lines = [ln for ln in io.StringIO(text, newline="") if ln.strip()]
        if lines and (complete or len(lines) > 1 or lines[0].endswith("\n")):
            try:
                header = next(csv.reader([lines[0]]))
            except csv.Error:
                header = []
            header_ok = tuple(h.strip() for h in header) == CSV_HEADER
    cut = head if complete else head[: head.rfind(b"\n") + 1]
    return FileFacts(filename or os.path.basename(os.fspath(path)), file_type, content_type,
                     content_type != "empty", utf8, store_known, header_ok, str(store_id), cut)


def _signed_float(d: Decimal) -> float:
    """A float with the sign (and zero-ness) of ``d``, for comparisons with 0 (no underflow)."""
    f = float(d)
    if f == 0.0 and not d.is_zero():
        return -5e-324 if d.is_signed() else 5e-324
    return f


class ContractValidator:
    """The three suites in one ephemeral great-expectations context (build once, run per chunk)."""

    def __init__(self):
        os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
        # its import logs hundreds of INFO lines ("Skipping registering function ...")
        logging.getLogger("great_expectations").setLevel(logging.WARNING)
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        ctx = gx.get_context(mode="ephemeral")
        try:
            ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        except Exception:  # pragma: no cover - cosmetic only
            pass
        ds = ctx.data_sources.add_pandas(name="transaction_files")
        self._runs = {}
        for name, specs in (("transaction_file", FILE_EXPECTATIONS),
                            ("transaction_rows", ITEM_EXPECTATIONS)):
            asset = ds.add_dataframe_asset(name=name)
            batch = asset.add_batch_definition_whole_dataframe(f"{name}_whole")
            suite = ctx.suites.add(gx.ExpectationSuite(name=name))
            ids = {}
            for key, cls, kwargs in specs:
                exp = suite.add_expectation(getattr(gx.expectations, cls)(**kwargs))
                ids[exp.id] = key
            vd = ctx.validation_definitions.add(
                gx.ValidationDefinition(name=f"{name}_validation", data=batch, suite=suite))
            self._runs[name] = (vd, ids)
        self.context = ctx
        self._lock = threading.Lock()         # one validation at a time per context

    def _failures(self, name: str, df) -> dict[str, list[int]]:
        """{expectation key: sorted row positions that failed} (empty dict when all passed)."""
        vd, ids = self._runs[name]
        with self._lock:
            res = vd.run(batch_parameters={"dataframe": df},
                         result_format={"result_format": "COMPLETE"})
        out: dict[str, list[int]] = {}
        for r in res.results:
            if r.success:
                continue
            key = ids.get(r.expectation_config.id) or r.expectation_config.type
            if r.exception_info and r.exception_info.get("raised_exception"):
                raise RuntimeError(f"expectation {key} of suite {name} raised: "
                                   f"{r.exception_info.get('exception_message')}")
            idx = r.result.get("unexpected_index_list") or []
            out[key] = sorted(int(i if not isinstance(i, dict) else next(iter(i.values())))
                              for i in idx) or [0]
        return out

    # ------------------------------------------------------------------------------------------
    def validate_file(self, facts: FileFacts) -> FileError | None:
        """The file-level suite; the error of the first failed expectation, or None."""
        import pandas as pd

        df = pd.DataFrame([{
            "non_empty": facts.non_empty, "utf8": facts.utf8, "store_known": facts.store_known,
            "file_type": facts.file_type,
            "content_type": facts.file_type if facts.content_type == "empty" else facts.content_type,
            "header_ok": facts.header_ok,
        }])
        failed = self._failures("transaction_file", df)
        for key, _cls, _kw in FILE_EXPECTATIONS:
            if key in failed:
                return self._file_error(key, facts)
        return None

    @staticmethod
    def _file_error(key: str, facts: FileFacts) -> FileError:
        if key == "non_empty":
            return FileError(facts.filename, None, None, "the file is empty")
        if key == "store_known":
            return FileError(facts.filename, None, "store_id",
                             f"store {facts.store_id} is not a known active store")
        # encoding, type and header: the parser's own text for the same problem
        try:
            for _ in formats.iter_raw(io.BytesIO(facts.head), facts.file_type,
                                      filename=facts.filename):
                pass
        except FileError as e:
            return e
        return FileError(facts.filename, 1, None, {
            "utf8": "not valid UTF-8 (save the file as UTF-8)",
            "type_matches": f"the content is {facts.content_type.upper()}, but file_type is "
                            f"{facts.file_type!r}",
            "header": f"expected {','.join(CSV_HEADER)!r}",
        }[key])

    # ------------------------------------------------------------------------------------------
    def validate_chunk(self, chunk: Sequence[RawTransaction],
                       verdicts: "ValueVerdicts | None" = None) -> list[RowError | None]:
        """The row rules on a chunk: for each transaction its first violation, or None.

        Rows: one per item (plus one placeholder row for a transaction whose items were not kept
        because there are too many), with the transaction's item count on every row. The suite's
        expectations are per value (column map expectations: a row fails exactly when its value
        fails), so the suite runs on each column's **distinct values**, and with ``verdicts`` (one
        ``ValueVerdicts`` per file) only on the values that no earlier chunk of the file had: a
        chunk of 100,000 items of a retail file is a few thousand rows for the suite, or none
        when all its values were seen before (the suite then does not run for that chunk).
        """
        import numpy as np

        result: list[RowError | None] = [None] * len(chunk)
        if not chunk:
            return result
        if verdicts is None:
            verdicts = ValueVerdicts()
        flat = [e for t in chunk for e in (t.entries or ((_EMPTY, _ONE, _ONE, t.line, 0),))]
        columns = {
            "n_items": [t.n_entries for t in chunk],
            "item": [e[0] for e in flat],
            "quantity": [e[1] for e in flat],
            "unit_utility": [e[2] for e in flat],
        }
        distinct = {name: dict.fromkeys(values) for name, values in columns.items()}
        new = {name: [v for v in d if v not in verdicts.seen[name]]
               for name, d in distinct.items()}
        judged = self._judge(new, distinct, verdicts) if any(new.values()) else {}
        counts = [len(t.entries) or 1 for t in chunk]
        failed: dict[str, np.ndarray] = {}     # rule -> failing rows (items), in file order
        for name, values in columns.items():
            bad, now = verdicts.bad[name], judged.get(name) or set()
            if now or (bad and not bad.isdisjoint(distinct[name])):
                rows_bad = np.fromiter((v in bad or v in now for v in values), dtype=bool,
                                       count=len(values))
                if name == "n_items":          # per transaction: spread to its rows
                    rows_bad = np.repeat(rows_bad, counts)
                failed[name] = np.flatnonzero(rows_bad)
        if not failed:
            return result
        owner = np.repeat(np.arange(len(chunk)), counts)
        # the first failing (row, rule) of each transaction, rows in file order
        order = {key: i for i, (key, _c, _k) in enumerate(ITEM_EXPECTATIONS)}
        first: dict[int, tuple[int, int]] = {}
        for key, bad_rows in failed.items():
            for r in bad_rows.tolist():
                k = int(owner[r])
                cand = (r, order[key]) if key != "n_items" else (-1, 0)
                if k not in first or cand < first[k]:
                    first[k] = cand
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        keys = [key for key, _c, _k in ITEM_EXPECTATIONS]
        for k, (r, rule) in first.items():
            t = chunk[k]
            key = keys[rule]
            if key == "n_items":
                result[k] = RowError(t.line, "items", too_many_items(t.n_entries) if t.n_entries
                                     else "the transaction has no items", t.transaction_id)
                continue
            item, q, u, line, index = t.entries[r - int(starts[k])]
            csv_names = t.file_type == "csv"
            if key == "item":
                result[k] = RowError(line, "item" if csv_names else f"items[{index}]", EMPTY_ITEM,
                                     t.transaction_id)
            elif key == "quantity":
                result[k] = RowError(line, "quantity" if csv_names else f"quantities[{index}]",
                                     bad_quantity(q), t.transaction_id)
            else:
                result[k] = RowError(line,
                                     "unit_utility" if csv_names else f"unit_utilities[{index}]",
                                     bad_unit_utility(u), t.transaction_id)
        return result

    def _judge(self, new: dict[str, list], distinct: dict[str, dict],
               verdicts: "ValueVerdicts") -> dict[str, set]:
        """Runs the row suite on the new values of each column (a column without new values is
        given one value of the chunk, whose verdict is known), records the verdicts and returns
        the failing values per column."""
        import numpy as np
        import pandas as pd

        fed = {name: new[name] or [next(iter(distinct[name]))] for name in new}
        length = max(len(v) for v in fed.values())
        data = {}
        for name, values in fed.items():
            if name in ("quantity", "unit_utility"):
                col = np.array([_signed_float(d) for d in values], dtype=np.float64)
            elif name == "n_items":
                col = np.array(values, dtype=np.int64)
            else:
                col = np.empty(len(values), dtype=object)
                col[:] = values
            # padded with the first value: a repeat gets the same verdict as the value itself
            data[name] = np.concatenate([col, np.repeat(col[:1], length - len(col))])
        failed = self._failures("transaction_rows", pd.DataFrame(data))
        out = {}
        for name, values in fed.items():
            out[name] = {values[p if p < len(values) else 0] for p in failed.get(name, ())}
            verdicts.record(name, values, out[name])
        return out


class ValueVerdicts:
    """The row suite's verdicts on the distinct values of one file, per column: each value is
    judged by the suite once per file. Bounded memory: once a column has ``limit`` values, further
    new values are not remembered (they are judged again in each chunk they appear in)."""

    def __init__(self, limit: int = 500_000):
        self.limit = limit
        self.seen: dict[str, set] = {key: set() for key, _c, _k in ITEM_EXPECTATIONS}
        self.bad: dict[str, set] = {key: set() for key, _c, _k in ITEM_EXPECTATIONS}

    def record(self, column: str, values: list, bad: set) -> None:
        seen = self.seen[column]
        if len(seen) < self.limit:
            seen.update(values)
            self.bad[column] |= bad           # (a remembered value's verdict, good or bad)


_EMPTY = ""
_ONE = Decimal(1)
