"""The spec's SQL (docs/spec/database-design.md) parsed into tables, columns, indexes and the
default server_configs rows, for the schema tests."""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SPEC_PATH = Path(__file__).resolve().parents[2] / "docs" / "spec" / "database-design.md"


@dataclass
class SpecColumn:
    name: str
    type: str            # as format_type() prints it
    not_null: bool
    default: str | None  # normalised
    primary_key: bool
    unique: bool
    references: tuple[str, str] | None
    check_in: tuple[str, frozenset[str]] | None


@dataclass
class Spec:
    tables: dict[str, dict[str, SpecColumn]]
    indexes: dict[str, tuple[str, str]]           # name -> (table, normalised column list)
    server_configs: list[tuple[str, str, str, str]]


_TYPES = {"UUID": "uuid", "TEXT": "text", "TIMESTAMPTZ": "timestamp with time zone", "BOOLEAN": "boolean",
          "BIGINT": "bigint", "INTEGER": "integer", "DECIMAL": "numeric", "INET": "inet", "JSONB": "jsonb",
          "TEXT[]": "text[]", "DECIMAL[]": "numeric[]"}


def normalize_default(expr: str | None) -> str | None:
    if expr is None:
        return None
    e = expr.strip().lower()
    e = re.sub(r"::[a-z ]+(\(\d+\))?(\[\])?", "", e)
    return e


def _split_top(body: str) -> list[str]:
    parts, depth, cur = [], 0, []
    for ch in body:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [" ".join(p.split()) for p in parts if p.strip()]


def _spec_type(t: str) -> str:
    m = re.fullmatch(r"VARCHAR\((\d+)\)", t)
    if m:
        return f"character varying({m.group(1)})"
    return _TYPES[t]


def parse_spec(text: str) -> Spec:
    code = "\n".join(re.findall(r"```sql\n(.*?)```", text, re.S))
    code = re.sub(r"--[^\n]*", "", code)
    tables: dict[str, dict[str, SpecColumn]] = {}
    for name, body in re.findall(r"CREATE TABLE (\w+) \((.*?)\n\);", code, re.S):
        cols = {}
        for part in _split_top(body):
            m = re.match(r"(\w+) (\w+(?:\(\d+\))?(?:\[\])?)(.*)$", part)
            col, typ, rest = m.group(1), m.group(2), m.group(3)
            d = re.search(r"DEFAULT\s+('[^']*'|[\w.]+(?:\(\))?)", rest)
            ref = re.search(r"REFERENCES (\w+)\((\w+)\)", rest)
            chk = re.search(r"CHECK \((\w+) IN \(([^)]*)\)\)", rest)
            cols[col] = SpecColumn(
                name=col, type=_spec_type(typ), not_null="NOT NULL" in rest or "PRIMARY KEY" in rest,
                default=normalize_default(d.group(1)) if d else None, primary_key="PRIMARY KEY" in rest,
                unique=bool(re.search(r"\bUNIQUE\b", rest)), references=(ref.group(1), ref.group(2)) if ref else None,
                check_in=(chk.group(1), frozenset(re.findall(r"'([^']*)'", chk.group(2)))) if chk else None)
        tables[name] = cols
    indexes = {n: (t, " ".join(c.split()).lower())
               for n, t, c in re.findall(r"CREATE INDEX (\w+) ON (\w+)\s*\(([^)]*)\);", code)}
    ins = re.search(r"INSERT INTO server_configs \(([^)]*)\) VALUES(.*?);", code, re.S)
    rows = re.findall(r"\('([^']*)', '([^']*)', '([^']*)', '([^']*)'\)", ins.group(2))
    return Spec(tables, indexes, rows)


def load_spec() -> Spec:
    assert SPEC_PATH.is_file(), f"spec not found at {SPEC_PATH}"
    return parse_spec(SPEC_PATH.read_text(encoding="utf-8"))
