"""Rows of a PostgreSQL table <-> Parquet (zstd), exact to the last digit.

Each column keeps its PostgreSQL type in the Parquet field metadata (``pg_type``). Types that Parquet
cannot hold exactly are stored as their PostgreSQL text form: ``numeric`` (unbounded precision: ``1.50``
stays ``1.50``), ``numeric[]``, ``uuid``, ``jsonb``, ``inet``. timestamptz is microseconds UTC, as in
PostgreSQL. Restoring feeds the text forms back through COPY, so PostgreSQL parses them as it printed them.
"""
from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
from psycopg import sql

COMPRESSION = "zstd"
COMPRESSION_LEVEL = 6

# pg type -> (arrow type, select expression needs a text cast)
_NATIVE = {
    "timestamp with time zone": pa.timestamp("us", tz="UTC"),
    "text": pa.string(),
    "character varying": pa.string(),
    "text[]": pa.list_(pa.string()),
    "character varying[]": pa.list_(pa.string()),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "smallint": pa.int16(),
    "boolean": pa.bool_(),
    "double precision": pa.float64(),
}


@dataclass(frozen=True)
class Column:
    name: str
    pg_type: str          # format_type() without typmod, e.g. "numeric[]", "character varying"

    @property
    def as_text(self) -> bool:
        return self.pg_type not in _NATIVE

    @property
    def arrow_type(self) -> pa.DataType:
        if self.pg_type in _NATIVE:
            return _NATIVE[self.pg_type]
        if self.pg_type.endswith("[]"):
            return pa.list_(pa.string())
        return pa.string()

    def select_expr(self, alias: str | None = None) -> sql.Composable:
        ident = sql.Identifier(alias, self.name) if alias else sql.Identifier(self.name)
        if not self.as_text:
            return ident
        cast = sql.SQL("text[]" if self.pg_type.endswith("[]") else "text")
        return sql.SQL("{}::{} AS {}").format(ident, cast, sql.Identifier(self.name))


def table_columns(conn: psycopg.Connection, table: str, schema: str = "public") -> list[Column]:
    rows = conn.execute(
        """SELECT a.attname, regexp_replace(format_type(a.atttypid, NULL), '\\(.*\\)', '')
             FROM pg_attribute a
            WHERE a.attrelid = format('%%I.%%I', %s::text, %s::text)::regclass
              AND a.attnum > 0 AND NOT a.attisdropped AND a.attgenerated = ''
            ORDER BY a.attnum""", (schema, table)).fetchall()
    if not rows:
        raise LookupError(f"table {schema}.{table} not found")
    return [Column(n, t) for n, t in rows]


def select_list(columns: list[Column], alias: str | None = None) -> sql.Composable:
    return sql.SQL(", ").join(c.select_expr(alias) for c in columns)


def arrow_schema(columns: list[Column], metadata: dict[str, str] | None = None) -> pa.Schema:
    fields = [pa.field(c.name, c.arrow_type, nullable=True, metadata={"pg_type": c.pg_type}) for c in columns]
    return pa.schema(fields, metadata={k: str(v) for k, v in (metadata or {}).items()})


def to_parquet_bytes(columns: list[Column], rows: list[tuple], metadata: dict[str, str] | None = None) -> bytes:
    """Rows (as selected with :func:`select_list`) -> Parquet bytes, zstd."""
    schema = arrow_schema(columns, metadata)
    arrays = [pa.array([r[i] for r in rows], type=f.type) for i, f in enumerate(schema)]
    table = pa.Table.from_arrays(arrays, schema=schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=COMPRESSION, compression_level=COMPRESSION_LEVEL,
                   write_statistics=True)
    return buf.getvalue()


def read_parquet_bytes(data: bytes) -> pa.Table:
    return pq.read_table(io.BytesIO(data))


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_rows(table: pa.Table) -> list[tuple]:
    cols = [table.column(i).to_pylist() for i in range(table.num_columns)]
    return list(zip(*cols)) if cols else []
