"""A fresh in-process DuckDB per run: no shared database file, so no lock to contend for."""

from __future__ import annotations

import os
from pathlib import Path

import duckdb


def connect(scratch: Path | None = None) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB in UTC, memory-capped (BILLING_DUCKDB_MEMORY, default 3GB), spilling to
    `scratch`."""
    config = {"memory_limit": os.environ.get("BILLING_DUCKDB_MEMORY", "3GB")}
    if scratch is not None:
        config["temp_directory"] = str(scratch)  # a setting, not SQL: the path is never quoted
    con = duckdb.connect(config=config)
    con.execute("SET TimeZone = 'UTC'")
    return con


def literal(text: str | os.PathLike) -> str:
    """`text` as an SQL string literal, for the few places DuckDB takes no parameter (a file path
    in read_parquet or COPY TO, a key in a VALUES list): the one quoting helper of the project."""
    return "'" + str(text).replace("'", "''") + "'"


def literal_list(texts) -> str:
    """A list literal of `texts` (see literal)."""
    return "[" + ", ".join(literal(t) for t in texts) + "]"
