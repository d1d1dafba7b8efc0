"""The transaction file formats: the data contract with the stores (see ``docs/ingest.md``).

Pure, streaming parsers of the two formats (``csv`` and ``json``) into typed records. No I/O
other than reading the given file, no Airflow, no database.

    for rec in read_transactions("day.csv", "csv"):
        if isinstance(rec, RowError): ...        # one rejected transaction, with its reason
        else: ...                                # a valid Transaction
    # FileError (a ValueError) is raised for file-level problems, possibly after some records
    # have been yielded (a bad byte in the middle of a file, a truncated JSON array, ...): a
    # consumer that must be all-or-nothing (the loader) keeps its work in one DB transaction.

Layers (the loader uses them separately so that the great-expectations suite decides the rules):
``iter_raw`` parses the structure (encoding, header, quoting, JSON syntax, decimal and date syntax,
grouping of CSV lines) into ``RawTransaction`` records; ``check_rules`` applies the row-level rules
of the contract; ``merge_items`` merges repeated items into a ``Transaction``.
``read_transactions`` = ``iter_raw`` + ``check_rules`` + ``merge_items``.

Memory: a CSV or JSON Lines file is read line by line, a JSON array element by element (an
element may be at most 64 Mi characters); one transaction is held at a time (at most
``MAX_ITEMS`` entries), plus 12 bytes per transaction for the check that a ``transaction_id`` is
used once per file (20 bytes per transaction briefly at the end of the file, when it is done).

Error texts are part of the contract (docs/ingest.md) and asserted by the tests: change them only
together with both.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import os
from array import array
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, Inexact, InvalidOperation
from itertools import chain
from typing import BinaryIO, Iterator, Union

__all__ = [
    "CSV_HEADER", "FILE_TYPES", "MAX_ITEMS", "FileError", "RawEntry", "RawTransaction", "RowError",
    "Transaction", "check_rules", "exact_context", "iter_raw", "merge_items", "read_transactions",
]

FILE_TYPES = ("csv", "json")
CSV_HEADER = ("transaction_id", "transaction_date", "item", "quantity", "unit_utility")
MAX_ITEMS = 10_000
# PostgreSQL `numeric` (unconstrained, the type of the DECIMAL columns): digits it can keep.
MAX_INTEGER_DIGITS = 131_072
MAX_FRACTION_DIGITS = 16_383
# A JSON array is decoded one record at a time; one record may not exceed this many characters.
MAX_JSON_RECORD_CHARS = 64 * 1024 * 1024
_BOM = codecs.BOM_UTF8
_READ_CHUNK = 1 << 20


def exact_context() -> Context:
    """A decimal context in which sums and products are exact (an inexact result raises)."""
    return Context(prec=MAX_PREC, Emax=MAX_EMAX, Emin=MIN_EMIN, traps=[Inexact, InvalidOperation])


_EXACT = exact_context()


@dataclass(frozen=True, slots=True)
class Transaction:
    transaction_id: str
    transaction_date: datetime          # timezone-aware (no offset in the file = UTC)
    items: tuple[str, ...]              # trimmed; repeats merged (quantities added)
    quantities: tuple[Decimal, ...]
    unit_utilities: tuple[Decimal, ...]
    line: int                           # CSV / JSON Lines: line where it starts; JSON array: record number

    @property
    def total_utility(self) -> Decimal:
        """Sum of quantity x unit_utility, computed exactly."""
        total = Decimal(0)
        mul, add = _EXACT.multiply, _EXACT.add
        for q, u in zip(self.quantities, self.unit_utilities):
            total = add(total, mul(q, u))
        return total


@dataclass(frozen=True, slots=True)
class RowError:
    """One rejected transaction: the first problem found in it."""
    line: int
    field: str
    message: str
    transaction_id: str | None


class FileError(ValueError):
    """A file-level problem: encoding, header, unparseable JSON, empty file, truncated file.

    ``str(err)`` is ``"<filename>, line <line>, <field>: <message>"`` (the parts that are known).
    """

    def __init__(self, filename: str, line: int | None, field: str | None, message: str,
                 *, unit: str = "line"):
        self.filename, self.line, self.field, self.message = filename, line, field, message
        self.unit = unit              # "line", or "record" (the element number of a JSON array)
        super().__init__(str(self))

    def __str__(self) -> str:
        where = [self.filename]
        if self.line is not None:
            where.append(f"{self.unit} {self.line}")
        if self.field:
            where.append(self.field)
        return ", ".join(where) + ": " + self.message

    def __reduce__(self):
        return (_file_error, (self.filename, self.line, self.field, self.message, self.unit))


def _file_error(filename, line, field, message, unit):
    return FileError(filename, line, field, message, unit=unit)


# One item of a transaction as written in the file (item not yet trimmed), a plain tuple for speed:
# (item, quantity, unit_utility, line, index); line: CSV line / JSON line or record number,
# index: 0-based position in the transaction.
RawEntry = tuple[str, Decimal, Decimal, int, int]
E_ITEM, E_QUANTITY, E_UNIT_UTILITY, E_LINE, E_INDEX = range(5)


@dataclass(slots=True)
class RawTransaction:
    """A structurally valid transaction, before the row rules and the merge of repeated items."""
    transaction_id: str
    transaction_date: datetime
    line: int
    entries: list[RawEntry]
    file_type: str
    n_entries: int = 0    # entries in the file (``entries`` is left empty past MAX_ITEMS)


# ----------------------------------------------------------------------------------------------
# values
def _parse_decimal(text: str, name: str) -> Decimal | str:
    """The exact Decimal of ``text``, or an error message."""
    try:
        d = Decimal(text)
    except (InvalidOperation, ValueError):
        return f"{name} is not a decimal number: {_show(text)}"
    if not d.is_finite() or "_" in text or not text.isascii():
        return f"{name} is not a decimal number: {_show(text)}"
    if len(text) > 24 or "e" in text or "E" in text:
        return _check_digits(d, name) or d
    return d


def _check_digits(d: Decimal, name: str) -> str | None:
    sign, digits, exp = d.as_tuple()
    if -exp > MAX_FRACTION_DIGITS:
        return f"{name} has more than {MAX_FRACTION_DIGITS} digits after the decimal point"
    if len(digits) + exp > MAX_INTEGER_DIGITS:
        return f"{name} has more than {MAX_INTEGER_DIGITS} digits before the decimal point"
    return None


def _parse_date(text: str) -> datetime | str:
    s = text.strip()
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        return f"transaction_date is not an ISO 8601 date-time: {_show(text)}"
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt


def _show(value: object, limit: int = 40) -> str:
    s = value if isinstance(value, str) else str(value)
    if len(s) > limit:
        s = s[:limit] + "..."
    return repr(s)


def _json_type(v: object) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, Decimal):
        return "number"
    if isinstance(v, str):
        return "string"
    if isinstance(v, list):
        return "array"
    if isinstance(v, dict):
        return "object"
    return type(v).__name__


# ----------------------------------------------------------------------------------------------
# sources
class _Tail(io.RawIOBase):
    """A raw stream over ``obj`` (anything with ``readinto`` or ``read``) that remembers the
    last byte read, to tell whether the file ends with a line end."""

    def __init__(self, obj):
        self._obj = obj
        self._readinto = getattr(obj, "readinto", None)
        self.last = b""
        self.closed_obj = False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if self._readinto is not None:
            n = self._readinto(b) or 0
        else:
            data = self._obj.read(len(b))
            n = len(data)
            b[:n] = data
        if n:
            self.last = bytes(b[n - 1:n])
        return n


def _open(source) -> tuple[io.BufferedReader, _Tail, object]:
    """(buffered stream, its tail tracker, what to close or None)."""
    owned = None
    if isinstance(source, (str, os.PathLike)):
        source = owned = open(source, "rb", buffering=0)
    elif not hasattr(source, "read"):
        raise TypeError(f"source must be a path or a binary stream, not {type(source).__name__}")
    tail = _Tail(source)
    return io.BufferedReader(tail, buffer_size=_READ_CHUNK), tail, owned


def _name_of(source, filename: str | None) -> str:
    if filename:
        return filename
    if isinstance(source, (str, os.PathLike)):
        return os.path.basename(os.fspath(source))
    return str(getattr(source, "name", "<stream>"))


class _Lines:
    """Decoded lines of a binary stream, counting physical lines; strict UTF-8, BOM dropped.

    ``number`` is the physical line last read; ``complete`` tells whether it ended with a line
    end (a line without one is the last of the file).
    """

    __slots__ = ("stream", "filename", "number", "complete")

    def __init__(self, stream: BinaryIO, filename: str):
        self.stream, self.filename, self.number, self.complete = stream, filename, 0, True

    def __iter__(self) -> Iterator[str]:
        n = 0
        for raw in self.stream:
            n += 1
            if n == 1 and raw.startswith(_BOM):
                raw = raw[3:]
            self.number = n
            self.complete = raw.endswith(b"\n")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise FileError(self.filename, n, None, _bad_utf8(raw, e.start)) from None
            yield text


def _bad_utf8(raw: bytes, start: int, column: int | None = None) -> str:
    return (f"not valid UTF-8: byte 0x{raw[start]:02x} at column "
            f"{(start if column is None else column) + 1} (save the file as UTF-8)")


# ----------------------------------------------------------------------------------------------
# duplicate transaction ids (12 bytes per transaction; checked at the end of the file)
class _IdTracker:
    __slots__ = ("hashes", "lines")

    def __init__(self):
        self.hashes = array("q")
        self.lines = array("I")

    def add(self, transaction_id: str, line: int) -> None:
        if transaction_id:
            self.hashes.append(hash(transaction_id))
            self.lines.append(line)

    def check(self, filename: str, file_type: str) -> None:
        n = len(self.hashes)
        if n < 2:
            return
        first: dict[int, int] = {}
        dup: tuple[int, int] | None = None
        if n <= 10_000:
            for h, ln in zip(self.hashes, self.lines):
                if h in first:
                    dup = (ln, first[h])
                    break
                first[h] = ln
        else:
            import numpy as np
            h = np.frombuffer(self.hashes, dtype=np.int64)
            hs = np.sort(h)                              # one copy: 8 bytes per transaction
            same = hs[1:][hs[1:] == hs[:-1]]
            del hs
            if len(same):                                # rare: find where, for the message
                lines = np.frombuffer(self.lines, dtype=np.uint32)
                seen: dict[int, int] = {}
                for i in np.flatnonzero(np.isin(h, same)):
                    v = int(h[i])
                    if v in seen:
                        dup = (int(lines[i]), seen[v])
                        break
                    seen[v] = int(lines[i])
        if dup:
            what = "line" if file_type != "json-array" else "record"
            hint = " (the lines of one transaction must be consecutive)" if file_type == "csv" else ""
            raise FileError(filename, dup[0], "transaction_id",
                            f"the transaction_id of the transaction at {what} {dup[1]} is used "
                            f"again{hint}; a transaction_id must be unique in a file", unit=what)


# ----------------------------------------------------------------------------------------------
# CSV
def _iter_csv(stream: io.BufferedReader, tail: _Tail, filename: str
              ) -> Iterator[RawTransaction | RowError]:
    first = stream.readline()
    if first.startswith(_BOM):
        first = first[3:]
    try:
        first_text = first.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileError(filename, 1, None, _bad_utf8(first, e.start)) from None
    # decoding in C: a bad byte surfaces as UnicodeDecodeError from the reader
    reader = csv.reader(chain((first_text,), map(bytes.decode, stream)), strict=True)

    def bad_bytes(e: UnicodeDecodeError) -> FileError:
        return FileError(filename, reader.line_num + 1, None, _bad_utf8(e.object, e.start))

    try:
        header = next(reader, None)
        while header == []:                                  # blank lines before the header
            header = next(reader, None)
    except csv.Error as e:
        raise FileError(filename, reader.line_num, "header",
                        f"the header is not valid CSV: {e}") from None
    except UnicodeDecodeError as e:
        raise bad_bytes(e) from None
    if header is None:
        raise FileError(filename, None, None, "the file is empty")
    if tuple(h.strip() for h in header) != CSV_HEADER:
        found = ",".join(header)
        if found.lstrip()[:1] in ("[", "{"):
            raise FileError(filename, reader.line_num, "header",
                            "the content is JSON, but file_type is 'csv'")
        raise FileError(filename, reader.line_num, "header",
                        f"expected {','.join(CSV_HEADER)!r}, found {_show(found, 80)}")

    ids = _IdTracker()
    dec_cache: dict[str, Decimal] = {}
    parse_decimal, parse_date = _parse_decimal, _parse_date
    max_items = MAX_ITEMS
    # the transaction being read
    cur_raw_tid: str | None = None         # transaction_id as written (None: no transaction yet)
    cur_tid = cur_date_text = ""
    cur_dt = _NO_DATE
    cur_line = cur_n = 0
    cur_entries: list = []
    cur_error: RowError | None = None      # its first structural error (entries then not kept)
    short: int | None = None               # fields of the last row when it had fewer than 5
    date_cache: dict[str, datetime | str] = {}
    date_text = item = qtext = utext = ""
    end = reader.line_num
    try:
        for row in reader:
            start = end + 1
            end = reader.line_num
            nf = len(row)
            if nf == 5:
                short = None
                tid_raw, date_text, item, qtext, utext = row
            elif not nf:                                         # blank line
                continue
            else:
                short = nf if nf < 5 else None
                tid_raw = row[0]
            if tid_raw != cur_raw_tid:
                tid = tid_raw.strip()
                if cur_raw_tid is None or tid != cur_tid:        # a new transaction
                    if cur_raw_tid is not None:
                        yield cur_error or RawTransaction(cur_tid, cur_dt, cur_line, cur_entries,
                                                          "csv", cur_n)
                    cur_raw_tid, cur_tid, cur_line, cur_n, cur_entries = tid_raw, tid, start, 0, []
                    cur_error, cur_dt, cur_date_text = None, _NO_DATE, ""
                    ids.add(tid, start)
                    if nf != 5:
                        cur_error = RowError(start, "line", f"expected 5 fields, found {nf}",
                                             tid or None)
                    elif not tid:
                        cur_error = RowError(start, "transaction_id", "transaction_id is empty",
                                             None)
                    else:
                        cur_date_text = date_text
                        dt = date_cache.get(date_text)
                        if dt is None:
                            dt = parse_date(date_text)
                            if len(date_cache) >= 10_000:
                                date_cache.clear()
                            date_cache[date_text] = dt
                        if dt.__class__ is str:
                            cur_error = RowError(start, "transaction_date", dt, tid)
                        else:
                            cur_dt = dt
                else:
                    cur_raw_tid = tid_raw
            cur_n += 1
            if cur_error is not None:
                continue                                         # rejected: keep no entries
            if nf != 5:
                cur_error = RowError(start, "line", f"expected 5 fields, found {nf}", cur_tid)
                continue
            if date_text != cur_date_text:
                dt = parse_date(date_text)
                if dt.__class__ is str:
                    cur_error = RowError(start, "transaction_date", dt, cur_tid)
                    continue
                if dt != cur_dt:
                    cur_error = RowError(
                        start, "transaction_date",
                        f"transaction_date {_show(date_text)} differs from "
                        f"{_show(cur_date_text)} on line {cur_line} of the same transaction",
                        cur_tid)
                    continue
            if cur_n > max_items:
                continue                                         # rejected by the rules
            if "\x00" in item:
                cur_error = RowError(start, "item", "item contains a NUL character", cur_tid)
                continue
            q = dec_cache.get(qtext)
            if q is None:
                q = parse_decimal(qtext, "quantity")
                if q.__class__ is str:
                    cur_error = RowError(start, "quantity", q, cur_tid)
                    continue
                if len(dec_cache) < 100_000:
                    dec_cache[qtext] = q
            u = dec_cache.get(utext)
            if u is None:
                u = parse_decimal(utext, "unit_utility")
                if u.__class__ is str:
                    cur_error = RowError(start, "unit_utility", u, cur_tid)
                    continue
                if len(dec_cache) < 100_000:
                    dec_cache[utext] = u
            cur_entries.append((item, q, u, start, cur_n - 1))
    except csv.Error as e:
        if "unexpected end of data" in str(e):
            raise FileError(filename, end + 1, None,
                            "the file ends inside a quoted field (truncated file?)") from None
        raise FileError(filename, reader.line_num, None, f"invalid CSV: {e}") from None
    except UnicodeDecodeError as e:
        raise bad_bytes(e) from None
    if short is not None and tail.last not in (b"\n", b"\r"):
        raise FileError(filename, end, None,
                        f"the last line has {short} of 5 fields and no line end (truncated file?)")
    if cur_raw_tid is not None:
        yield cur_error or RawTransaction(cur_tid, cur_dt, cur_line, cur_entries, "csv", cur_n)
    ids.check(filename, "csv")


_NO_DATE = datetime(1, 1, 1, tzinfo=timezone.utc)


# ----------------------------------------------------------------------------------------------
# JSON
_REQUIRED = ("transaction_id", "transaction_date", "items", "quantities", "unit_utilities")


def _json_record(obj, line: int, file_type: str) -> RawTransaction | RowError:
    if not isinstance(obj, dict):
        return RowError(line, "record",
                        f"a transaction must be a JSON object, found {_json_type(obj)}", None)
    tid = obj.get("transaction_id")
    tid_s = tid.strip() if isinstance(tid, str) else None
    for key in _REQUIRED:
        if key not in obj:
            return RowError(line, key, f"{key} is missing", tid_s or None)
    if not isinstance(tid, str):
        return RowError(line, "transaction_id",
                        f"transaction_id must be a string, found {_json_type(tid)}", None)
    if not tid_s:
        return RowError(line, "transaction_id", "transaction_id is empty", None)
    date = obj["transaction_date"]
    if not isinstance(date, str):
        return RowError(line, "transaction_date",
                        f"transaction_date must be a string, found {_json_type(date)}", tid_s)
    dt = _parse_date(date)
    if isinstance(dt, str):
        return RowError(line, "transaction_date", dt, tid_s)
    items, qs, us = obj["items"], obj["quantities"], obj["unit_utilities"]
    for key, arr in (("items", items), ("quantities", qs), ("unit_utilities", us)):
        if not isinstance(arr, list):
            return RowError(line, key, f"{key} must be an array, found {_json_type(arr)}", tid_s)
    if not (len(items) == len(qs) == len(us)):
        return RowError(line, "items", "items, quantities and unit_utilities must have the same "
                        f"length, found {len(items)}, {len(qs)} and {len(us)}", tid_s)
    if not items:
        return RowError(line, "items", "the transaction has no items", tid_s)
    rt = RawTransaction(tid_s, dt, line, [], file_type, len(items))
    if len(items) > MAX_ITEMS:
        return rt                                     # rejected by the rules; entries not kept
    entries = rt.entries
    for i, (item, q, u) in enumerate(zip(items, qs, us)):
        if not isinstance(item, str):
            return RowError(line, f"items[{i}]",
                            f"items[{i}] must be a string, found {_json_type(item)}", tid_s)
        if "\x00" in item:
            return RowError(line, f"items[{i}]", "item contains a NUL character", tid_s)
        for key, name, v in (("quantities", "quantity", q), ("unit_utilities", "unit_utility", u)):
            if v.__class__ is not Decimal:
                return RowError(line, f"{key}[{i}]",
                                f"{key}[{i}] must be a number, found {_json_type(v)}", tid_s)
            if not v.is_finite():
                return RowError(line, f"{key}[{i}]",
                                f"{name} is not a decimal number: {_show(str(v))}", tid_s)
            msg = _check_digits(v, name)
            if msg:
                return RowError(line, f"{key}[{i}]", msg, tid_s)
        entries.append((item, q, u, line, i))
    return rt


def _json_msg(e: json.JSONDecodeError) -> str:
    return e.msg.removesuffix(" at").removesuffix(" starting")


def _loads(text: str):
    return json.loads(text, parse_float=Decimal, parse_int=Decimal, parse_constant=Decimal)


def _iter_json_lines(stream: BinaryIO, filename: str) -> Iterator[RawTransaction | RowError]:
    lines = _Lines(stream, filename)
    ids = _IdTracker()
    for text in lines:
        if not text.strip():
            continue
        n = lines.number
        try:
            obj = _loads(text)
        except json.JSONDecodeError as e:
            hint = "" if lines.complete else " (truncated file?)"
            raise FileError(filename, n, None,
                            f"invalid JSON at column {e.colno}: {_json_msg(e)}{hint}") from None
        rec = _json_record(obj, n, "json")
        if rec.transaction_id:
            ids.add(rec.transaction_id, n)
        yield rec
    ids.check(filename, "json")


class _JsonArrayReader:
    """Decodes the elements of one top-level JSON array one at a time from a binary stream.

    Holds the current element plus at most one read chunk (1 MiB) of text; an element may not
    be longer than MAX_JSON_RECORD_CHARS.
    """

    def __init__(self, stream: BinaryIO, filename: str):
        self.stream, self.filename = stream, filename
        self.decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self.buf = ""
        self.pos = 0
        self.eof = False
        self.line_at_buf = 1          # line number of buf[0]
        self.col_at_buf = 0           # 0-based column of buf[0] in its line
        self.first = True

    def _fill(self) -> bool:
        """Reads one more chunk into the buffer; False at the end of the file."""
        if self.eof:
            return False
        data = self.stream.read(_READ_CHUNK)
        if self.first and data.startswith(_BOM):
            data = data[3:]
        self.first = False
        if self.pos > 0:                              # drop what was consumed
            nl = self.buf.rfind("\n", 0, self.pos)
            if nl >= 0:
                self.line_at_buf += self.buf.count("\n", 0, self.pos)
                self.col_at_buf = self.pos - (nl + 1)
            else:
                self.col_at_buf += self.pos
            self.buf = self.buf[self.pos:]
            self.pos = 0
        try:
            text = self.decoder.decode(data, final=not data)
        except UnicodeDecodeError as e:
            nl = data.rfind(b"\n", 0, max(e.start, 0))
            line = self.line_at_buf + self.buf.count("\n") + data.count(b"\n", 0, max(e.start, 0))
            col = e.start - (nl + 1)
            if nl < 0:
                col += self._col(len(self.buf)) - 1
            raise FileError(self.filename, line, None,
                            _bad_utf8(data, max(e.start, 0), col)) from None
        if not data:
            self.eof = True
        self.buf += text
        return True

    def _line(self, pos: int) -> int:
        return self.line_at_buf + self.buf.count("\n", 0, pos)

    def _col(self, pos: int) -> int:
        nl = self.buf.rfind("\n", 0, pos)
        return pos - nl if nl >= 0 else self.col_at_buf + pos + 1

    def _next_char(self) -> str:
        """Skips blanks; the next character (not consumed), '' at the end of the file."""
        while True:
            buf, p, n = self.buf, self.pos, len(self.buf)
            while p < n and buf[p] in " \t\r\n":
                p += 1
            self.pos = p
            if p < n:
                return buf[p]
            if not self._fill():
                return ""

    def _fail(self, pos: int, msg: str):
        raise FileError(self.filename, self._line(pos), None,
                        f"invalid JSON at column {self._col(pos)}: {msg}")

    def elements(self, decoder: json.JSONDecoder) -> Iterator[object]:
        self._next_char()
        self.pos += 1                                  # the '['
        c = self._next_char()
        if c == "]":
            self.pos += 1
            return self._expect_end()
        while True:
            if c == "":
                self._fail(self.pos, "the array is not closed (truncated file?)")
            while True:
                try:
                    obj, end = decoder.raw_decode(self.buf, self.pos)
                except json.JSONDecodeError as e:
                    if not self.eof and len(self.buf) - self.pos <= MAX_JSON_RECORD_CHARS:
                        self._fill()                   # maybe incomplete: read on
                        continue
                    if not self.eof:
                        self._fail(self.pos, f"an element is longer than "
                                   f"{MAX_JSON_RECORD_CHARS} characters or is not valid JSON")
                    hint = "" if self.buf.rstrip().endswith("]") else " (truncated file?)"
                    self._fail(e.pos, _json_msg(e) + hint)
                if end == len(self.buf) and not self.eof:
                    self._fill()                       # a number may go on in the next chunk
                    continue
                break
            yield obj
            self.pos = end
            c = self._next_char()
            if c == ",":
                self.pos += 1
                c = self._next_char()
                if c == "]":
                    self._fail(self.pos, "a value is expected after ','")
                continue
            if c == "]":
                self.pos += 1
                return self._expect_end()
            if c == "":
                self._fail(self.pos, "the array is not closed (truncated file?)")
            self._fail(self.pos, "expecting ',' or ']' after an element")

    def _expect_end(self) -> None:
        if self._next_char():
            self._fail(self.pos, "extra data after the closing ']'")


def _iter_json_array(stream: BinaryIO, filename: str) -> Iterator[RawTransaction | RowError]:
    reader = _JsonArrayReader(stream, filename)
    decoder = json.JSONDecoder(parse_float=Decimal, parse_int=Decimal, parse_constant=Decimal)
    ids = _IdTracker()
    number = 0
    for obj in reader.elements(decoder):
        number += 1
        rec = _json_record(obj, number, "json")
        if rec.transaction_id:
            ids.add(rec.transaction_id, number)
        yield rec
    ids.check(filename, "json-array")


def _iter_json(stream: BinaryIO, filename: str) -> Iterator[RawTransaction | RowError]:
    # the first non-blank character decides: '[' = a JSON array, '{' = JSON Lines
    head = b""
    while True:
        data = stream.read(_READ_CHUNK)
        head += data
        probe = head[3:] if head.startswith(_BOM) else head
        if not data or probe.lstrip():
            break
    first = probe.lstrip()[:1]
    if not first:
        raise FileError(filename, None, None, "the file is empty")
    stream = io.BufferedReader(_Prefixed(head, stream), buffer_size=_READ_CHUNK)
    if first == b"[":
        return _iter_json_array(stream, filename)
    if first == b"{":
        return _iter_json_lines(stream, filename)
    text = probe.lstrip()[:200].decode("utf-8", "replace")
    if text.split("\n", 1)[0].count(",") >= 2:
        raise FileError(filename, 1, None, "the content is not JSON (it looks like CSV), "
                        "but file_type is 'json'")
    raise FileError(filename, 1, None,
                    f"the content is not JSON: expected '[' or '{{', found {_show(text[:20])}")


class _Prefixed(io.RawIOBase):
    """``prefix`` followed by the rest of ``stream``."""

    def __init__(self, prefix: bytes, stream):
        self.prefix, self.stream = memoryview(prefix), stream

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        if len(self.prefix):
            n = min(len(b), len(self.prefix))
            b[:n] = self.prefix[:n]
            self.prefix = self.prefix[n:]
            return n
        data = self.stream.read(len(b))
        b[:len(data)] = data
        return len(data)


# ----------------------------------------------------------------------------------------------
# public API
def iter_raw(source, file_type: str, *, filename: str | None = None
             ) -> Iterator[RawTransaction | RowError]:
    """Structural parse: ``RawTransaction`` records (row rules not applied) and ``RowError``s."""
    if file_type not in FILE_TYPES:
        raise ValueError(f"file_type must be one of {FILE_TYPES}, not {file_type!r}")
    name = _name_of(source, filename)
    stream, tail, owned = _open(source)
    try:
        if file_type == "csv":
            yield from _iter_csv(stream, tail, name)
        else:
            yield from _iter_json(stream, name)
    finally:
        if owned is not None:
            owned.close()


def check_rules(raw: RawTransaction) -> RowError | None:
    """The row-level rules of the contract on one transaction: the first violation, or None.

    Rules: at most MAX_ITEMS items; per item, in order: item non-empty after trimming,
    quantity > 0, unit_utility >= 0. The great-expectations suite (``include.ingest.validate``)
    applies the same rules to chunks and reports the same texts; this is the pure reference
    used by ``read_transactions``.
    """
    tid = raw.transaction_id
    if raw.n_entries > MAX_ITEMS:
        return RowError(raw.line, "items", too_many_items(raw.n_entries), tid)
    csv_names = raw.file_type == "csv"
    for item, q, u, line, index in raw.entries:
        if not item.strip():
            return RowError(line, "item" if csv_names else f"items[{index}]", EMPTY_ITEM, tid)
        if not q > 0:
            return RowError(line, "quantity" if csv_names else f"quantities[{index}]",
                            bad_quantity(q), tid)
        if u < 0:
            return RowError(line, "unit_utility" if csv_names else f"unit_utilities[{index}]",
                            bad_unit_utility(u), tid)
    return None


# texts of the row rules (shared with the great-expectations suite)
EMPTY_ITEM = "item is empty"


def too_many_items(n: int) -> str:
    return f"the transaction has {n} items, at most {MAX_ITEMS} are allowed"


def bad_quantity(q: Decimal) -> str:
    return f"quantity must be greater than 0, found {q}"


def bad_unit_utility(u: Decimal) -> str:
    return f"unit_utility must not be negative, found {u}"


def merge_items(raw: RawTransaction) -> Transaction | RowError:
    """Trim item names and merge repeated items (quantities added) when the unit utility agrees."""
    entries = raw.entries
    names = [e[0].strip() for e in entries]
    if len(set(names)) == len(names):                 # no repeated item: the common case
        return Transaction(raw.transaction_id, raw.transaction_date, tuple(names),
                           tuple(e[1] for e in entries), tuple(e[2] for e in entries), raw.line)
    pos: dict[str, int] = {}
    items: list[str] = []
    qs: list[Decimal] = []
    us: list[Decimal] = []
    first: list[int] = []
    add = _EXACT.add
    for name, (_, q, u, line, index) in zip(names, entries):
        i = pos.get(name)
        if i is None:
            pos[name] = len(items)
            items.append(name)
            qs.append(q)
            us.append(u)
            first.append(index)
        elif us[i] == u:
            qs[i] = add(qs[i], q)
        else:
            if raw.file_type == "csv":
                field, where = "unit_utility", f"line {entries[first[i]][E_LINE]}"
            else:
                field, where = f"unit_utilities[{index}]", f"unit_utilities[{first[i]}]"
            return RowError(line, field, repeated_item(name, u, where, us[i]), raw.transaction_id)
    return Transaction(raw.transaction_id, raw.transaction_date, tuple(items), tuple(qs),
                       tuple(us), raw.line)


def repeated_item(name: str, u: Decimal, where: str, first_u: Decimal) -> str:
    return f"item {_show(name)} is repeated with unit_utility {u}, but {where} has {first_u}"


def read_transactions(source, file_type: str, *, filename: str | None = None
                      ) -> Iterator[Union[Transaction, RowError]]:
    """Valid transactions and rejected ones (``RowError``) of a CSV or JSON transaction file.

    ``source``: a path or a binary stream. ``file_type``: ``'csv'`` or ``'json'``.
    Raises ``FileError`` for a file-level problem (possibly after yielding some records).
    """
    for rec in iter_raw(source, file_type, filename=filename):
        if isinstance(rec, RowError):
            yield rec
            continue
        err = check_rules(rec)
        yield err if err is not None else merge_items(rec)
