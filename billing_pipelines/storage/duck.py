"""A fresh in-process DuckDB per run (no shared database file, so no lock to contend for), and
the one way SQL is written: the files of sql/ rendered by `render`, every value bound as a DuckDB
parameter where DuckDB takes one, else written by `literal`, never quoted by hand."""

from __future__ import annotations

import os
import re
from datetime import date, datetime
from functools import cache
from pathlib import Path

import duckdb
import jinja2

from billing_pipelines import paths


def connect(scratch: Path | None = None) -> duckdb.DuckDBPyConnection:
    """In-memory DuckDB in UTC, memory-capped (BILLING_DUCKDB_MEMORY, default 3GB), spilling to
    `scratch`, with no progress bar (DuckDB prints it to stdout, into run logs and reports)."""
    config = {"memory_limit": os.environ.get("BILLING_DUCKDB_MEMORY", "3GB")}
    if scratch is not None:
        config["temp_directory"] = str(scratch)  # a setting, not SQL: the path is never quoted
    con = duckdb.connect(config=config)
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    return con


class Sql(str):
    """A piece of SQL (a query, a relation, an expression) that a template takes as it is."""


def literal(value: str | os.PathLike | date | int) -> Sql:
    """`value` as an SQL literal, for the places DuckDB takes no parameter (a file path in
    read_parquet or COPY TO, a date in a query that others nest): a string, a DATE or TIMESTAMP,
    an integer. The one quoting helper of the project."""
    if isinstance(value, bool) or not isinstance(value, (str, os.PathLike, date, int)):
        raise TypeError(f"no SQL literal for {type(value).__name__} {value!r}")
    if isinstance(value, int):
        return Sql(str(value))
    if isinstance(value, datetime):
        return Sql(f"TIMESTAMP '{value.isoformat(sep=' ')}'")
    if isinstance(value, date):
        return Sql(f"DATE '{value.isoformat()}'")
    return Sql("'" + str(value).replace("'", "''") + "'")


def literal_list(values) -> Sql:
    """A list literal of `values` (see literal)."""
    return Sql("[" + ", ".join(literal(v) for v in values) + "]")


_PARAMS = re.compile(r"^-- params:(.*)$", re.M)
_TEMPLATES = jinja2.Environment(undefined=jinja2.StrictUndefined, autoescape=False, keep_trailing_newline=True,
                                finalize=lambda value: value if isinstance(value, Sql) else literal(value))


@cache
def _template(relative: str) -> tuple[jinja2.Template, frozenset[str]]:
    text = paths.sql(relative)
    declared = _PARAMS.search(text)
    if declared is None:
        raise ValueError(f"sql/{relative} declares no parameters (a `-- params: a, b` line; `-- params:` for none)")
    return _TEMPLATES.from_string(text), frozenset(p.strip() for p in declared.group(1).split(",") if p.strip())


def render(relative: str, **values: Sql | str | date | int) -> Sql:
    """The query of sql/<relative> with its declared parameters (its `-- params:` line): each
    `{{ name }}` is a Sql piece as it is, or any other value written by `literal`."""
    template, declared = _template(relative)
    if set(values) != declared:
        raise TypeError(f"sql/{relative} takes {', '.join(sorted(declared)) or 'no parameter'}; "
                        f"given {', '.join(sorted(values)) or 'none'}")
    return Sql(template.render(values))
