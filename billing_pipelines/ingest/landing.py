"""The landing zone (SPEC §1.1): `{landing}/dt=YYYY-MM-DD/**/*.jsonl|.jsonl.gz|.parquet`.

Reads every file of one landing date into DuckDB as the fields of SPEC §1.1, each with its type,
so that classify.sql can give every row its quarantine reason or its price.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from itertools import chain

import duckdb
import numpy as np
from isal import igzip
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from billing_pipelines import paths
from billing_pipelines.storage import Store, StoredFile

EVENT_FIELDS = (
    "request_id", "org_id", "user_id", "ts", "model", "action",
    "input_tokens", "output_tokens", "latency_ms", "cost_usd",
)
_STRING_FIELDS = {"request_id", "org_id", "user_id", "model", "action"}
_INTEGER_FIELDS = {"input_tokens", "output_tokens", "latency_ms"}
# Parquet column kinds (see _kind) each field accepts; any other kind is a bad_type.
_GOOD_KINDS = {**{f: {"VARCHAR"} for f in _STRING_FIELDS}, **{f: {"BIGINT"} for f in _INTEGER_FIELDS},
               "ts": {"VARCHAR", "TIMESTAMPTZ"}}
_COST_KINDS = {"BIGINT", "DOUBLE", "DECIMAL", "VARCHAR"}
SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
JSON_BLOCK_BYTES = 32 << 20
# RFC 3339 with a mandatory offset; DuckDB's cast would read a bare local time as UTC.
_RFC3339 = r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})"


class LandingError(RuntimeError):
    """A landed file that cannot be read at all: its partition fails, naming the file."""


def partition_name(day: date) -> str:
    return f"dt={day.isoformat()}"


def landed_files(store: Store, day: date) -> list[StoredFile]:
    """The event files of one landing date, from a listing of its folder only."""
    return landing_dates(store, partition_name(day)).get(day, [])


def landing_dates(store: Store, prefix: str = "") -> dict[date, list[StoredFile]]:
    """Every landing date (under `prefix`) with its event files, from one listing."""
    by_date: dict[date, list[StoredFile]] = {}
    for stored in store.list(prefix):
        folder, _, rest = stored.key.partition("/")
        if not folder.startswith("dt=") or not rest:
            continue
        try:
            day = date.fromisoformat(folder[3:])
        except ValueError:
            continue
        if _is_event_file(stored.key):
            by_date.setdefault(day, []).append(stored)
    return by_date


def _is_event_file(key: str) -> bool:
    name = key.rsplit("/", 1)[-1]
    if name.startswith((".", "_")):
        return False  # hidden files and markers such as _SUCCESS
    if name.endswith(SUFFIXES):
        return True
    raise LandingError(f"{key}: not an event file (expected {', '.join(SUFFIXES)})")


def files_fingerprint(files: list[StoredFile]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.key}\0{f.size}\0{f.mtime_ns}\n".encode())
    return digest.hexdigest()


def _parse_ts(expr: str) -> str:
    return (
        f"CASE WHEN regexp_full_match({expr}, '{_RFC3339}') "
        f"THEN {_utc(f'try_cast({expr} AS TIMESTAMPTZ)')} END"
    )


def _utc(instant: str) -> str:
    """A TIMESTAMPTZ as a UTC TIMESTAMP: the same microseconds, without a time-zone lookup per
    row (`AT TIME ZONE 'UTC'` costs more than reading the column)."""
    return f"make_timestamp(epoch_us({instant}))"


def load_fields(con: duckdb.DuckDBPyConnection, store: Store, files: list[StoredFile]) -> None:
    """Create `files(file_idx, key)`, the table `json_fields` (the JSON lines of `files`, parsed
    once) and the view `fields` (every row of `files`: JSON lines and Parquet rows, in file order)."""
    con.register("files", pa.table({"file_idx": list(range(len(files))), "key": [f.key for f in files]}))
    _load_json_fields(con, store, [(i, f) for i, f in enumerate(files) if not f.key.endswith(".parquet")])
    parts = [parquet_fields_sql(i, *_parquet_source(con, store, i, f)) if f.key.endswith(".parquet")
             else f"SELECT * FROM json_fields WHERE file_idx = {i}" for i, f in enumerate(files)]
    con.execute("CREATE OR REPLACE TEMP VIEW fields AS " + "\nUNION ALL BY NAME\n".join(parts or ["SELECT * FROM json_fields"]))


def _load_json_fields(con: duckdb.DuckDBPyConnection, store: Store, json_files: list[tuple[int, StoredFile]]) -> None:
    """Table `json_fields`: the lines of `json_files` parsed (jsonl_fields.sql), a block of about
    JSON_BLOCK_BYTES of text at a time (the next one read meanwhile), so that memory does not
    grow with the size of a file or a date."""
    paths_sql = "[" + ", ".join(f"'$.{name}'" for name in EVENT_FIELDS) + "]"
    parse = (paths.sql("ingest/jsonl_fields.sql").replace("{lines}", "json_lines").replace("{paths}", paths_sql)
             .replace("{parse_ts(v[4])}", _parse_ts("v[4]")))
    con.register("json_lines", _NO_LINES)
    con.execute(f"CREATE OR REPLACE TEMP TABLE json_fields AS {parse}")
    for lines in _batched(_prefetched(chain.from_iterable(_json_lines(store, i, f) for i, f in json_files))):
        con.register("json_lines", lines)
        con.execute(f"INSERT INTO json_fields {parse}")
    con.unregister("json_lines")


def _batched(tables: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """`tables` concatenated into tables of at least JSON_BLOCK_BYTES (small files together)."""
    batch: list[pa.Table] = []
    for table in tables:
        batch.append(table)
        if sum(t.nbytes for t in batch) >= JSON_BLOCK_BYTES:
            yield pa.concat_tables(batch)
            batch = []
    if batch:
        yield pa.concat_tables(batch)


def _prefetched(items: Iterator[pa.Table]) -> Iterator[pa.Table]:
    """`items`, each next one produced in a thread while the caller uses the current one."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming = pool.submit(next, items, None)
        while (item := upcoming.result()) is not None:
            upcoming = pool.submit(next, items, None)
            yield item


_NO_LINES = pa.table({"file_idx": pa.array([], pa.int32()), "line_no": pa.array([], pa.int64()),
                      "raw": pa.array([], pa.string()), "utf8_ok": pa.array([], pa.bool_())})


def _json_lines(store: Store, file_idx: int, stored: StoredFile) -> Iterator[pa.Table]:
    """The non-blank lines of one JSON-lines file with their line numbers, block by block."""
    first_line = 1
    for block in _line_blocks(store, stored):
        lines, utf8_ok = _split_lines(block)
        keep = pc.not_equal(pc.utf8_trim_whitespace(lines), "")
        yield pa.table(
            {
                "file_idx": pa.repeat(pa.scalar(file_idx, pa.int32()), len(lines)),
                "line_no": pa.array(np.arange(first_line, first_line + len(lines), dtype=np.int64)),
                "raw": pc.cast(pc.utf8_rtrim(lines, "\r"), pa.string()),
                "utf8_ok": utf8_ok,
            }
        ).filter(keep)
        first_line += len(lines)


def _line_blocks(store: Store, stored: StoredFile) -> Iterator[bytes]:
    """The text of a file (gunzipped where it ends in .gz) in blocks of whole lines, each without
    its last line end."""
    rest = b""
    try:
        with store.fs.open_input_stream(store.path(stored.key), compression=None) as raw:
            stream = igzip.IGzipFile(fileobj=raw) if stored.key.endswith(".gz") else raw
            while block := stream.read(JSON_BLOCK_BYTES):
                rest += block
                end = rest.rfind(b"\n")
                if end >= 0:
                    yield rest[:end]
                    rest = rest[end + 1:]
    except (OSError, EOFError, ValueError, zlib.error) as exc:
        kind = "gzip" if stored.key.endswith(".gz") else "JSON-lines"
        raise LandingError(f"{stored.key}: not a readable {kind} file: {exc}") from exc
    if rest:
        yield rest


def _split_lines(data: bytes) -> tuple[pa.Array, pa.Array]:
    """The lines of `data` and whether each is valid UTF-8 (JSON must be: a line that is not is
    quarantined as malformed, its raw text kept with U+FFFD for the bad bytes)."""
    try:
        text = pa.array([data.decode("utf-8")], pa.large_string())
        lines = pc.list_flatten(pc.split_pattern(text, "\n"))
        return lines, pa.repeat(pa.scalar(True), len(lines))
    except UnicodeDecodeError:
        raw = data.split(b"\n")
        ok = [_is_utf8(line) for line in raw]
        return pa.array([line.decode("utf-8", errors="replace") for line in raw], pa.large_string()), pa.array(ok)


def _is_utf8(line: bytes) -> bool:
    try:
        line.decode("utf-8")
        return True
    except UnicodeDecodeError:
        return False


def _parquet_source(con: duckdb.DuckDBPyConnection, store: Store, file_idx: int, stored: StoredFile) -> tuple[str, pa.Schema]:
    """A DuckDB source over one Parquet file with its 0-based `file_row_number`."""
    try:
        if store.is_s3:
            table = pq.read_table(store.path(stored.key), filesystem=store.fs)
            name = f"parquet_{file_idx}"
            con.register(name, table.append_column("file_row_number", pa.array(range(table.num_rows), pa.int64())))
            return name, table.schema
        schema = pq.read_schema(store.path(stored.key))
    except (OSError, pa.ArrowException) as exc:
        raise LandingError(f"{stored.key}: not a readable Parquet file: {exc}") from exc
    return read_parquet_sql(store.path(stored.key)), schema


def _kind(arrow_type: pa.DataType) -> str:
    """The type name classify.sql expects, as JSON would report it."""
    if pa.types.is_integer(arrow_type):
        return "BIGINT"
    if pa.types.is_string(arrow_type) or pa.types.is_large_string(arrow_type) or pa.types.is_string_view(arrow_type):
        return "VARCHAR"
    if pa.types.is_timestamp(arrow_type):
        return "TIMESTAMPTZ" if arrow_type.tz else "TIMESTAMP"
    if pa.types.is_floating(arrow_type):
        return "DOUBLE"
    if pa.types.is_decimal(arrow_type):
        return "DECIMAL"
    if pa.types.is_boolean(arrow_type):
        return "BOOLEAN"
    return "OTHER"


def parquet_fields_sql(file_idx: int, source: str, schema: pa.Schema) -> str:
    """SELECT producing the `fields` columns (see jsonl_fields.sql) from one Parquet `source` with
    `schema`. The column types are known here, so a type check is a constant DuckDB folds away."""
    columns = [f"{file_idx} AS file_idx", "file_row_number + 1 AS line_no", "false AS malformed"]
    for name in EVENT_FIELDS:
        if name not in schema.names:
            columns += [f"{_null_value(name)} AS {name}", f"{name != 'cost_usd'} AS {name}__missing", f"false AS {name}__bad"]
            continue
        kind, col = _kind(schema.field(name).type), f'"{name}"'
        columns += [f"{_parquet_value(name, col, kind)} AS {name}", f"{col} IS NULL AS {name}__missing"]
        if name == "cost_usd":
            columns.append(f"{col} IS NOT NULL AND try_cast(CAST({col} AS VARCHAR) AS DECIMAL(38, 12)) IS NULL AS {name}__bad"
                           if kind in _COST_KINDS else f"{col} IS NOT NULL AS {name}__bad")
        else:
            columns.append(f"{kind not in _GOOD_KINDS[name]} AS {name}__bad")
    return f"SELECT {', '.join(columns)} FROM {source}"


def read_parquet_sql(path: str) -> str:
    """A DuckDB source over one local Parquet file with its 0-based `file_row_number`."""
    quoted = path.replace("'", "''")
    return f"read_parquet('{quoted}', file_row_number = true, hive_partitioning = false)"


def _null_value(name: str) -> str:
    if name == "ts":
        return "NULL::TIMESTAMP"
    return "NULL::BIGINT" if name in _INTEGER_FIELDS else "NULL::VARCHAR"


def _parquet_value(name: str, col: str, kind: str) -> str:
    if name == "ts":
        if kind == "TIMESTAMPTZ":
            return _utc(col)
        return _parse_ts(f"CAST({col} AS VARCHAR)") if kind == "VARCHAR" else "NULL::TIMESTAMP"
    if name in _INTEGER_FIELDS:
        return f"try_cast({col} AS BIGINT)"
    return f"CAST({col} AS VARCHAR)"


def load_quarantined_raw(con: duckdb.DuckDBPyConnection, store: Store, files: list[StoredFile]) -> None:
    """Table `quarantined_raw(file_idx, line_no, raw)`: the text of every quarantined row, its JSON
    line as landed (json_fields) or its Parquet row rendered as JSON. Needs `classified`."""
    con.execute("CREATE OR REPLACE TEMP TABLE quarantined_raw AS SELECT j.file_idx, j.line_no, j.raw FROM json_fields j "
                "SEMI JOIN classified c ON c.file_idx = j.file_idx AND c.line_no = j.line_no AND c.reason IS NOT NULL")
    wanted = con.execute("SELECT DISTINCT file_idx FROM classified WHERE reason IS NOT NULL ORDER BY 1").fetchall()
    for i in [i for (i,) in wanted if files[i].key.endswith(".parquet")]:
        source, schema = _parquet_source(con, store, i, files[i])
        row = ", ".join(f'"{n}" := t."{n}"' for n in schema.names if n != "file_row_number")
        con.execute(f"INSERT INTO quarantined_raw SELECT {i}, t.file_row_number + 1, to_json(struct_pack({row}))::VARCHAR "
                    f"FROM {source} t WHERE t.file_row_number + 1 IN "
                    f"(SELECT line_no FROM classified WHERE file_idx = {i} AND reason IS NOT NULL)")
