"""The landing zone (SPEC §1.1): `{landing}/dt=YYYY-MM-DD/**`, as gateways and sinks write it.

A landing date's files are sorted into event files, each read as JSON lines, gzipped JSON lines
or Parquet (by its extension, else by its content), and skipped files (sink markers, hidden files,
symbolic links), each with its reason. Event files are read into DuckDB as the fields of SPEC
§1.1, each with its type, so that classify.sql can give every row its quarantine reason or its
price. A file that cannot be read at all (a corrupt gzip or Parquet file) is unreadable: none of
its rows is read, and its error is kept for its landing date. Nothing a file holds reaches SQL as
text: Parquet columns are read by position and their names passed as parameters; a file's path
reaches it only as a quoted string literal (read_parquet_sql), where DuckDB takes no parameter.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from itertools import chain

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from isal import igzip, isal_zlib

from billing_pipelines.storage import duck
from billing_pipelines.storage.duck import Sql
from billing_pipelines.storage.objects import Store, StoredFile

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
FORMATS = {".jsonl": "jsonl", ".jsonl.gz": "jsonl.gz", ".parquet": "parquet"}  # by extension
_GZIP_MAGIC, _PARQUET_MAGIC, _BOM = b"\x1f\x8b", b"PAR1", b"\xef\xbb\xbf"
_CORRUPT_GZIP = (igzip.BadGzipFile, EOFError, isal_zlib.error)
JSON_BLOCK_BYTES = 32 << 20
# RFC 3339 with a mandatory offset (SPEC §1.1): a real time of day, an offset of at most 23:59,
# T and Z in either case. DuckDB's cast alone would take a space for T, 24:00 and +14:60, and
# read a bare local time as UTC.
_RFC3339 = (r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]+)?"
            r"([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])")


class LandingError(RuntimeError):
    """A landed file that cannot be fetched (permissions, storage): its date fails, naming it."""


@dataclass(frozen=True)
class LandedFile:
    """An event file of a landing date and how it is read: "jsonl", "jsonl.gz" or "parquet"."""

    stored: StoredFile
    format: str

    @property
    def key(self) -> str:
        return self.stored.key


@dataclass
class DateFiles:
    """The files of one landing date: its event files in key order (a file's position is its
    file_idx), its skipped files ({"key", "reason"}), the event files found unreadable
    ({file_idx: error}) and the DuckDB source and schema of each readable Parquet file."""

    events: list[LandedFile]
    skipped: list[dict[str, str]]
    unreadable: dict[int, str] = field(default_factory=dict)
    parquet: dict[int, tuple[str, pa.Schema]] = field(default_factory=dict)

    def unreadable_files(self) -> list[dict[str, str]]:
        return [{"key": self.events[i].key, "error": error} for i, error in sorted(self.unreadable.items())]

    def json_files(self) -> list[tuple[int, LandedFile]]:
        return [(i, f) for i, f in enumerate(self.events) if f.format != "parquet"]

    def mark_unreadable(self, file_idx: int, error: str) -> None:
        self.unreadable[file_idx] = error
        self.parquet.pop(file_idx, None)


def partition_name(day: date) -> str:
    return f"dt={day.isoformat()}"


def landed_files(store: Store, day: date) -> list[StoredFile]:
    """All the files of one landing date (event files, markers, links), from a listing of its
    folder only."""
    return landing_dates(store, partition_name(day)).get(day, [])


def landing_dates(store: Store, prefix: str = "") -> dict[date, list[StoredFile]]:
    """Every landing date (under `prefix`) with all its files (event files, markers, links),
    from one listing."""
    by_date: dict[date, list[StoredFile]] = {}
    for stored in store.list(prefix):
        folder, _, rest = stored.key.partition("/")
        if not folder.startswith("dt=") or not rest:
            continue
        try:
            day = date.fromisoformat(folder[3:])
        except ValueError:
            continue
        by_date.setdefault(day, []).append(stored)
    return by_date


def files_fingerprint(files: list[StoredFile]) -> str:
    digest = hashlib.sha256()
    for f in files:
        digest.update(f"{f.key}\0{f.size}\0{f.mtime_ns}\n".encode())
    return digest.hexdigest()


def date_files(store: Store, files: list[StoredFile]) -> DateFiles:
    """The listed `files` of one landing date sorted into event files, each with its format, and
    skipped files with their reason."""
    events, skipped = [], []
    for stored in files:
        if reason := _skip_reason(stored):
            skipped.append({"key": stored.key, "reason": reason})
        else:
            events.append(LandedFile(stored, _format(store, stored)))
    return DateFiles(events, skipped)


def _skip_reason(stored: StoredFile) -> str | None:
    """Why a listed file is not an event file: a symbolic link (never followed, so nothing outside
    the landing zone is read) or what a sink writes beside its data (`_SUCCESS`, `*.crc`, any name
    below the dt= folder beginning with `.` or `_`, such as Spark's `_temporary/`)."""
    if stored.link:
        return "symbolic link: not followed"
    names = stored.key.split("/")[1:]
    if any(name.startswith((".", "_")) for name in names) or names[-1].endswith(".crc"):
        return "sink marker or hidden file"
    return None


def _format(store: Store, stored: StoredFile) -> str:
    """How an event file is read: by its extension, else by its first bytes (gzip magic, Parquet
    `PAR1`, else JSON lines), as Firehose objects have no extension and Spark's end in `.json`."""
    for suffix, fmt in FORMATS.items():
        if stored.key.endswith(suffix):
            return fmt
    try:
        with store.fs.open_input_file(store.path(stored.key)) as handle:
            head = handle.read(len(_PARQUET_MAGIC))
    except OSError as exc:
        raise _cannot_fetch(stored, exc) from exc
    return "jsonl.gz" if head.startswith(_GZIP_MAGIC) else "parquet" if head == _PARQUET_MAGIC else "jsonl"


def _cannot_fetch(stored: StoredFile, exc: Exception) -> LandingError:
    day = stored.key.partition("/")[0].removeprefix("dt=")
    return LandingError(f"{stored.key}: cannot be read ({one_line(exc)}); check its permissions and the storage, "
                        f"then run `billing ingest {day}` again")


def one_line(exc: BaseException) -> str:
    """The first line of an error's message (DuckDB adds lines that point into the SQL)."""
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _parse_ts(expr: str) -> str:
    """SQL of an RFC 3339 text `expr` as a UTC timestamp, fractions truncated to microseconds
    (DuckDB's cast truncates), NULL where it is not RFC 3339 or its year is 0000."""
    instant = f"coalesce(try_cast({expr} AS TIMESTAMPTZ), try_cast(upper({expr}) AS TIMESTAMPTZ))"  # t, z
    return Sql(f"CASE WHEN regexp_full_match({expr}, {duck.literal(_RFC3339)}) AND NOT starts_with({expr}, '0000') "
               f"THEN {_utc(instant)} END")


def _utc(instant: str, nanoseconds: bool = False) -> str:
    """A TIMESTAMPTZ (or TIMESTAMPTZ_NS, truncated) as a UTC TIMESTAMP: the same microseconds,
    without a time-zone lookup per row (`AT TIME ZONE 'UTC'` costs more than reading the column)."""
    if nanoseconds:  # floor division: a time before 1970 is truncated like its text would be
        return f"make_timestamp(epoch_ns({instant}) // 1000 - (epoch_ns({instant}) % 1000 < 0)::BIGINT)"
    return f"make_timestamp(epoch_us({instant}))"


def load_fields(con: duckdb.DuckDBPyConnection, store: Store, landed: DateFiles) -> None:
    """Create `files(file_idx, key)`, the table `json_fields` (the JSON lines of the readable
    files, parsed once) and the DuckDB source of each Parquet file; files found unreadable are
    kept in `landed.unreadable`. Then read_fields creates the view `fields`."""
    con.register("files",
                 pa.table({"file_idx": list(range(len(landed.events))), "key": [f.key for f in landed.events]}))
    _load_json_fields(con, store, landed)
    for i, landed_file in enumerate(landed.events):
        if landed_file.format == "parquet":
            _add_parquet_source(con, store, landed, i)


def read_fields(con: duckdb.DuckDBPyConnection, landed: DateFiles, read: Callable[[], None]) -> None:
    """Create the view `fields` (every row of the readable files, in file order) and run `read`,
    which queries it. Where DuckDB fails, the Parquet files it cannot read in full are unreadable,
    and both run again without them; where it fails on none of them, the date fails."""
    while True:
        try:
            _create_fields_view(con, landed)
            return read()
        except duckdb.Error as exc:
            if not _found_unreadable_parquet(con, landed):
                folder = landed.events[0].key.partition("/")[0] if landed.events else "the landing date"
                raise LandingError(f"{folder}: its files could not be read ({one_line(exc)}); "
                                   f"report this with the date's files") from exc


def _create_fields_view(con: duckdb.DuckDBPyConnection, landed: DateFiles) -> None:
    parts = [parquet_fields_sql(i, *landed.parquet[i]) if i in landed.parquet
             else f"SELECT * FROM json_fields WHERE file_idx = {i}"
             for i in range(len(landed.events)) if i not in landed.unreadable]
    con.execute("CREATE OR REPLACE TEMP VIEW fields AS "
                + "\nUNION ALL BY NAME\n".join(parts or ["SELECT * FROM json_fields"]))


def _found_unreadable_parquet(con: duckdb.DuckDBPyConnection, landed: DateFiles) -> bool:
    """Read every column of every readable Parquet file; mark those DuckDB fails on unreadable."""
    found = False
    for i, (source, _) in list(landed.parquet.items()):
        try:
            with con.execute(f"SELECT * FROM {source}").fetch_record_batch() as batches:
                for _ in batches:
                    pass
        except duckdb.Error as exc:
            landed.mark_unreadable(i, f"not a readable Parquet file: {one_line(exc)}")
            found = True
    return found


def _load_json_fields(con: duckdb.DuckDBPyConnection, store: Store, landed: DateFiles) -> None:
    """Table `json_fields`: the lines of the JSON-lines files parsed (jsonl_fields.sql), a block of
    about JSON_BLOCK_BYTES of text at a time (the next one read meanwhile), so that memory does not
    grow with the size of a file or a date. The rows of a file found unreadable midway are dropped."""
    fields = [f"$.{name}" for name in EVENT_FIELDS]
    parse = duck.render("ingest/jsonl_fields.sql", lines=Sql("json_lines"), paths=duck.literal_list(fields),
                        type_paths=duck.literal_list(["$", *fields]), parse_ts=_parse_ts)
    _register_strict_json(con)
    con.register("json_lines", _NO_LINES)
    con.execute(f"CREATE OR REPLACE TEMP TABLE json_fields AS {parse}")
    json_files = landed.json_files()
    lines = chain.from_iterable(_json_lines(store, i, f, landed.unreadable) for i, f in json_files)
    for block in _batched(_prefetched(lines)):
        con.register("json_lines", block)
        con.execute(f"INSERT INTO json_fields {parse}")
    con.unregister("json_lines")
    broken = [i for i, _ in json_files if i in landed.unreadable]
    if broken:
        con.execute("DELETE FROM json_fields WHERE list_contains($1, file_idx)", [broken])


def strict_json(text: str):
    """`text` as one strict JSON value (RFC 8259, SPEC §1.2); ValueError where it holds NaN or
    Infinity, a trailing comma, a key twice in one object or a string that is not Unicode text
    (an escaped lone surrogate, which DuckDB refuses too)."""
    value = json.loads(text, parse_constant=_refuse_constant, object_pairs_hook=_object_once)
    json.dumps(value, ensure_ascii=False).encode()  # UnicodeEncodeError (a ValueError): a lone surrogate
    return value


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _object_once(pairs: list[tuple[str, object]]) -> dict:
    value = dict(pairs)
    if len(value) < len(pairs):
        raise ValueError("a key twice in one object")
    return value


def _is_strict_json(text: str) -> bool:
    try:
        strict_json(text)
        return True
    except (ValueError, RecursionError):
        return False


def _register_strict_json(con: duckdb.DuckDBPyConnection) -> None:
    """The SQL function strict_json(raw), which jsonl_fields.sql calls only for the lines that
    DuckDB's lenient parser may have read too kindly."""
    try:
        con.remove_function("strict_json")
    except duckdb.InvalidInputException:
        pass  # not registered on this connection yet
    con.create_function("strict_json", _is_strict_json, ["VARCHAR"], "BOOLEAN", side_effects=False)


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


def _json_lines(store: Store, file_idx: int, landed: LandedFile, unreadable: dict[int, str]) -> Iterator[pa.Table]:
    """The non-blank lines of one JSON-lines file with their line numbers, block by block; a
    corrupt gzip file ends early with its error in `unreadable`."""
    first_line = 1
    try:
        for block in _line_blocks(store, landed):
            lines, utf8_ok = _split_lines(block)
            keep = pc.not_equal(pc.utf8_trim(lines, " \t\r"), "")  # blank: only spaces, tabs, CRs
            yield pa.table(
                {
                    "file_idx": pa.repeat(pa.scalar(file_idx, pa.int32()), len(lines)),
                    "line_no": pa.array(np.arange(first_line, first_line + len(lines), dtype=np.int64)),
                    "raw": pc.cast(pc.utf8_rtrim(lines, "\r"), pa.string()),
                    "utf8_ok": utf8_ok,
                }
            ).filter(keep)
            first_line += len(lines)
    except _CORRUPT_GZIP as exc:
        unreadable[file_idx] = f"not a readable gzip file: {one_line(exc)}"


def _line_blocks(store: Store, landed: LandedFile) -> Iterator[bytes]:
    """The text of a file (gunzipped where it is gzip), without a UTF-8 byte order mark at its
    start, in blocks of whole lines, each without its last line end."""
    try:
        with store.fs.open_input_stream(store.path(landed.key), compression=None) as raw:
            stream = igzip.IGzipFile(fileobj=raw) if landed.format == "jsonl.gz" else raw
            rest = stream.read(len(_BOM)).removeprefix(_BOM)
            while block := stream.read(JSON_BLOCK_BYTES):
                rest += block
                end = rest.rfind(b"\n")
                if end >= 0:
                    yield rest[:end]
                    rest = rest[end + 1:]
    except _CORRUPT_GZIP:
        raise  # the file's content: unreadable (see _json_lines)
    except OSError as exc:
        raise _cannot_fetch(landed.stored, exc) from exc
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


class _Unreadable(ValueError):
    """A landed file whose bytes are there but are not what its format needs."""


def _add_parquet_source(con: duckdb.DuckDBPyConnection, store: Store, landed: DateFiles, file_idx: int) -> None:
    """Put the DuckDB source of one Parquet file (columns by position, with its 0-based
    `file_row_number`) and its schema in `landed.parquet`, or its error in `landed.unreadable`."""
    stored = landed.events[file_idx].stored
    try:
        schema, table = _parquet_schema(store, stored)
    except _Unreadable as exc:
        return landed.mark_unreadable(file_idx, f"not a readable Parquet file: {exc}")
    if table is None:
        landed.parquet[file_idx] = read_parquet_sql(store.path(stored.key), schema), schema
        return None
    name = f"parquet_{file_idx}"
    con.register(name, table.rename_columns(_positions(schema)).append_column(
        "file_row_number", pa.array(range(table.num_rows), pa.int64())))
    landed.parquet[file_idx] = name, schema
    return None


def _parquet_schema(store: Store, stored: StoredFile) -> tuple[pa.Schema, pa.Table | None]:
    """The schema of a landed Parquet file and, on S3 (fetched whole, then read), its rows."""
    try:
        data = store.read_bytes(stored.key) if store.is_s3 else None
    except OSError as exc:
        raise _cannot_fetch(stored, exc) from exc
    try:
        table = None if data is None else pq.read_table(pa.BufferReader(data))
        schema = pq.read_schema(store.path(stored.key)) if table is None else table.schema
    except (FileNotFoundError, PermissionError) as exc:
        raise _cannot_fetch(stored, exc) from exc
    except (OSError, pa.ArrowException) as exc:  # pyarrow reports a corrupt footer as either
        raise _Unreadable(one_line(exc)) from exc
    if twice := sorted({name for name in schema.names if schema.names.count(name) > 1}):
        raise _Unreadable(f"column {twice[0]!r} twice")
    return schema, table


def _positions(schema: pa.Schema) -> list[str]:
    """The names Parquet columns are read by: c0, c1, ... by position, whatever they are called."""
    return [f"c{n}" for n in range(len(schema))]


def _kind(arrow_type: pa.DataType) -> str:
    """The type name classify.sql expects, as JSON would report it (integers of any width are
    BIGINT, dictionary-encoded values are their values' kind)."""
    if pa.types.is_dictionary(arrow_type):
        return _kind(arrow_type.value_type)
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
    `schema` (columns by position, see _positions). The column types are known here, so a type
    check is a constant DuckDB folds away."""
    columns = [f"{file_idx} AS file_idx", "file_row_number + 1 AS line_no", "false AS malformed"]
    for name in EVENT_FIELDS:
        position = schema.get_field_index(name)
        if name == "cost_usd":
            kind = _kind(schema.field(position).type) if position >= 0 else None
            columns.append(f"{_cost_value(f'c{position}') if kind in _COST_KINDS else 'NULL::VARCHAR'} AS cost_usd")
        elif position < 0:
            columns += [f"{_null_value(name)} AS {name}", f"true AS {name}__missing", f"false AS {name}__bad"]
        else:
            arrow_type, col = schema.field(position).type, f"c{position}"
            kind = _kind(arrow_type)
            bad = kind not in _GOOD_KINDS[name]
            value = _null_value(name) if bad else _parquet_value(name, col, kind, arrow_type)
            columns += [f"{value} AS {name}", f"{col} IS NULL AS {name}__missing", f"{bad} AS {name}__bad"]
    return f"SELECT {', '.join(columns)} FROM {source}"


def read_parquet_sql(path: str, schema: pa.Schema | None = None) -> str:
    """A DuckDB source over one local Parquet file: its columns by position (see _positions), so
    that no column name reaches SQL, and its 0-based `file_row_number`."""
    names = _positions(pq.read_schema(path) if schema is None else schema)
    aliases = f"({', '.join(names)})" if names else ""
    return (f"(SELECT *, file_row_number FROM read_parquet({duck.literal(path)}, hive_partitioning = false) "
            f"AS p{aliases})")


def _null_value(name: str) -> str:
    if name == "ts":
        return "NULL::TIMESTAMP"
    return "NULL::BIGINT" if name in _INTEGER_FIELDS else "NULL::VARCHAR"


def _parquet_value(name: str, col: str, kind: str, arrow_type: pa.DataType) -> str:
    if name == "ts":
        return _utc(col, arrow_type.unit == "ns") if kind == "TIMESTAMPTZ" else _parse_ts(f"CAST({col} AS VARCHAR)")
    if name in _INTEGER_FIELDS:
        return f"try_cast({col} AS BIGINT)"
    return f"CAST({col} AS VARCHAR)"


def _cost_value(col: str) -> str:
    """The provider's cost as its text where it is a decimal, else NULL: it is only kept for
    reconciliation, never a reason to quarantine (SPEC §1.1)."""
    return f"CASE WHEN try_cast(CAST({col} AS VARCHAR) AS DECIMAL(38, 12)) IS NOT NULL THEN CAST({col} AS VARCHAR) END"


def load_quarantined_raw(con: duckdb.DuckDBPyConnection, landed: DateFiles) -> None:
    """Table `quarantined_raw(file_idx, line_no, raw)`: the text of every quarantined row, its JSON
    line as landed (json_fields) or its Parquet row rendered as JSON, the column names passed as
    parameters. Needs `classified`."""
    con.execute("CREATE OR REPLACE TEMP TABLE quarantined_raw AS SELECT j.file_idx, j.line_no, j.raw "
                "FROM json_fields j SEMI JOIN classified c "
                "ON c.file_idx = j.file_idx AND c.line_no = j.line_no AND c.reason IS NOT NULL")
    wanted = con.execute("SELECT DISTINCT file_idx FROM classified WHERE reason IS NOT NULL ORDER BY 1").fetchall()
    for i in [i for (i,) in wanted if i in landed.parquet]:
        source, schema = landed.parquet[i]
        row = ", ".join(f"${n + 1}, {col}" for n, col in enumerate(_positions(schema)))
        con.execute(f"INSERT INTO quarantined_raw SELECT {i}, file_row_number + 1, json_object({row})::VARCHAR "
                    f"FROM {source} WHERE file_row_number + 1 IN "
                    f"(SELECT line_no FROM classified WHERE file_idx = {i} AND reason IS NOT NULL)", schema.names)
