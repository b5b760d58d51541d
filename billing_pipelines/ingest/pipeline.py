"""Ingest, quarantine, deduplicate and price landed events (SPEC §1), one landing date at a time.

Two datasets per landing date:
- `priced_events`: a pure function of that date's files and the config: what was decided for
  every valid row (its price, `first_in_date`, the hash of its request_id), the quarantine with
  reasons, and the rows' own fields: copies of the landed Parquet files (hard links where they
  can be) and the parsed JSON lines, joined back by billed_events_sql.
- `billed_usage`: the final duplicate decision, which needs every earlier date: first occurrences
  whose request_id an earlier date already had are cross-day duplicates.
Each records the fingerprint of what it was computed from, so any date can be (re)ingested in any
order: stale earlier dates are restaged first and later dates whose inputs changed are rebilled,
and the outputs are the same as processing every date once in order.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from itertools import accumulate

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from billing_pipelines import duck, paths
from billing_pipelines.config import RATE_PLACES, BillingConfig
from billing_pipelines.ingest.landing import (
    files_fingerprint, landing_dates, load_fields, load_quarantined_raw, parquet_fields_sql, partition_name, read_parquet_sql,
)
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import Store, StoredFile
from billing_pipelines.warehouse import Warehouse, WarehouseError

# Bump when the content of priced_events changes for the same input, to restage everything.
PIPELINE_VERSION = "2"
PRICED = "priced_events"
BILLED = "billed_usage"
_COPY = "landing-"  # manifest names of the copies of landed Parquet files: landing-<file_idx>


@dataclass
class IngestSummary:
    """What `billing ingest --format json` prints for one landing date."""

    landing_date: str
    rows_read: int
    billed: int
    duplicates: int
    quarantined: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "landing_date": self.landing_date,
            "rows_read": self.rows_read,
            "billed": self.billed,
            "duplicates": self.duplicates,
            "quarantined": dict(sorted(self.quarantined.items())),
        }


class LandingZone:
    """One listing of the landing zone and the fingerprints that follow from it."""

    def __init__(self, settings: BillingSettings, config: BillingConfig | None = None):
        self.settings = settings
        self.config = config or settings.billing_config()
        self.store = settings.landing_store()
        self.warehouse = settings.warehouse()
        self.files = landing_dates(self.store)
        committed = {date.fromisoformat(p[3:]) for p in self.warehouse.partitions(PRICED)}
        self.dates = sorted(set(self.files) | committed)

    def files_of(self, day: date) -> list[StoredFile]:
        return self.files.get(day, [])

    def stage_fingerprint(self, day: date) -> str:
        return _sha(PIPELINE_VERSION, hash_probe(), self.config.fingerprint, files_fingerprint(self.files_of(day)))

    def upstream_fingerprint(self, day: date) -> str:
        """Fingerprint of every stage the billing of `day` depends on (all dates <= day)."""
        return _sha(*(f"{d}:{self.stage_fingerprint(d)}" for d in self.dates if d <= day))

    def is_staged(self, day: date) -> bool:
        manifest = self.warehouse.manifest(PRICED, partition_name(day))
        return bool(manifest) and manifest["meta"]["fingerprint"] == self.stage_fingerprint(day)

    def is_billed(self, day: date) -> bool:
        manifest = self.warehouse.manifest(BILLED, partition_name(day))
        return bool(manifest) and manifest["meta"]["upstream"] == self.upstream_fingerprint(day)


def _sha(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def stage(zone: LandingZone, day: date) -> dict:
    """Validate, quarantine and price every row landed on `day`; no-op when already current."""
    if day not in zone.dates:
        zone.dates = sorted({*zone.dates, day})
    if zone.is_staged(day):
        return zone.warehouse.manifest(PRICED, partition_name(day))
    files = zone.files_of(day)
    con = duck.connect(zone.settings.scratch_dir())
    try:
        classify_files(con, zone.config, zone.store, files, day)
        load_quarantined_raw(con, zone.store, files)
        counts = _stage_counts(con)
        meta = {"fingerprint": zone.stage_fingerprint(day), "landing_date": day.isoformat(),
                "files": [f.key for f in files], **counts}
        queries = {
            "priced_events": priced_events_sql(day),
            "quarantine": paths.sql("ingest/quarantine.sql").replace("{landing_date}", day.isoformat()),
        }
        if any(not f.key.endswith(".parquet") for f in files):
            valid_json = ("(SELECT j.* FROM json_fields j SEMI JOIN classified c "
                          "ON c.file_idx = j.file_idx AND c.line_no = j.line_no AND c.reason IS NULL)")
            queries["json_events"] = event_sources_sql(valid_json, "files") + " ORDER BY f.file_idx, f.line_no"
        copies = {_copy_name(i): (zone.store, f) for i, f in enumerate(files) if f.key.endswith(".parquet")}
        return zone.warehouse.commit(PRICED, partition_name(day), con, queries, meta, copies)
    finally:
        con.close()


def _copy_name(file_idx: int) -> str:
    """Manifest name of the warehouse's copy of a landed Parquet file (priced events' source)."""
    return f"{_COPY}{file_idx:05d}"


def classify_files(con: duckdb.DuckDBPyConnection, config: BillingConfig, store: Store, files: list[StoredFile],
                   day: date) -> None:
    """Table `classified`: every row of `files`, landed on `day`, in landing order, with its
    quarantine reason or its price and whether it is the first of its request_id on that date;
    then priced_events_sql(day) selects the valid rows, priced."""
    rate_periods = _register_config(con, config)
    load_fields(con, store, files)
    classify = paths.sql("ingest/classify.sql").format(
        fields="fields", landing_date=day.isoformat(), request_hash=request_hash_sql("request_id"), **rate_periods)
    con.execute(f"CREATE TEMP TABLE classified AS {classify}")
    if not _in_landing_order(con):
        con.execute("CREATE OR REPLACE TEMP TABLE classified AS SELECT * FROM classified ORDER BY file_idx, line_no")
    con.execute(paths.sql("ingest/later_occurrences.sql"))


def _in_landing_order(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether `classified` came out in landing order. classify.sql uses no join, so DuckDB keeps
    the order of its input; this check makes the outputs' bytes independent of that promise."""
    last = -1
    with con.sql("SELECT file_idx::BIGINT << 40 | line_no FROM classified").to_arrow_reader(1 << 20) as batches:
        for batch in batches:
            order = batch.column(0).to_numpy()
            if len(order) and (order[0] <= last or np.any(order[1:] <= order[:-1])):
                return False
            last = order[-1] if len(order) else last
    return True


def request_hash_sql(request_id: str) -> str:
    """The 128-bit hash (h1, h2) by which landing dates compare their request_ids: two 64-bit
    DuckDB hashes. DuckDB does not promise them across releases, so stage fingerprints include
    hash_probe(): a DuckDB whose hashes differ restages every date."""
    return f"hash({request_id}) AS h1, hash({request_id} || '#') AS h2"


@functools.cache
def hash_probe() -> str:
    """The request hash of a fixed id with this DuckDB."""
    with duckdb.connect() as con:
        return str(con.execute(f"SELECT {request_hash_sql(repr('billing_pipelines'))}").fetchone())


def priced_events_sql(day: date) -> str:
    """The valid rows of classify_files, priced, with `first_in_date` (priced_events.sql)."""
    return paths.sql("ingest/priced_events.sql").replace("{landing_date}", day.isoformat())


def event_sources_sql(fields: str, files: str) -> str:
    """The fields of events by (key, line_no) from a `fields` relation (event_sources.sql)."""
    return paths.sql("ingest/event_sources.sql").format(fields=fields, files=files)


def priced_event_fields_sql(priced: str, sources: str) -> str:
    """Priced events with every field of the event, from its `sources` (priced_event_fields.sql)."""
    return paths.sql("ingest/priced_event_fields.sql").format(priced=priced, sources=sources)


def _stage_counts(con: duckdb.DuckDBPyConnection) -> dict:
    rows_read, valid, first = con.execute(
        "SELECT count(*), count(*) FILTER (reason IS NULL), "
        "count(*) FILTER (first_in_date) FROM classified"
    ).fetchone()
    quarantined = dict(
        con.execute("SELECT reason, count(*) FROM classified WHERE reason IS NOT NULL GROUP BY 1 ORDER BY 1").fetchall()
    )
    return {"rows_read": rows_read, "valid": valid, "first_in_date": first, "quarantined": quarantined}


def _register_config(con: duckdb.DuckDBPyConnection, config: BillingConfig) -> dict[str, str]:
    """The config as classify.sql looks it up: ENUM types and list variables; returns the SQL of
    its placeholders over `day` (see classify.sql). Customers who cancel (SPEC §7) come after the
    others in the org ENUM, each group in order of start date, so that only their rows look up
    their cancellation date (a list variable costs every row that reads it, by its length)."""
    book = config.price_book
    cancelled = {c.org_id: c.effective_from for c in config.plan_changes if c.plan is None}
    customers = sorted(config.customers.values(), key=lambda c: (c.org_id in cancelled, c.start_date, c.org_id))
    if _lookup(con, "org_key", [c.org_id for c in customers]) != [c.org_id for c in customers]:
        raise RuntimeError("DuckDB did not keep the order of the customers' ENUM")
    staying = len(customers) - len(cancelled)  # the code of the first customer who cancels
    groups = (customers[:staying], customers[staying:])
    started = [_by_day(con, f"customers_started_{n}", {c.start_date: i + 1 for i, c in enumerate(group)}, "0")
               for n, group in enumerate(groups)]  # customers of each group started by each start date
    _set_list(con, "customer_end", "DATE", [cancelled[c.org_id] for c in groups[1]])
    _lookup(con, "action_key", [a.action for a in book.actions],
            action_credits=("BIGINT", [a.credits for a in book.actions]),
            action_tokens_per_credit=("BIGINT", [a.tokens_per_credit for a in book.actions]))
    models = _lookup(con, "model_key", book.model_names)
    starts = sorted({r.effective_from for r in book.models})
    scale = Decimal(10) ** RATE_PLACES
    rates = [book.rate_at(m, start) for m in models for start in starts]
    _set_list(con, "rate_input_e9", "BIGINT", [r and int(r.input_usd_per_1k * scale) for r in rates])
    _set_list(con, "rate_output_e9", "BIGINT", [r and int(r.output_usd_per_1k * scale) for r in rates])
    return {
        "rate_period": _by_day(con, "rate_period", dict(zip(starts, range(len(starts)))), "NULL::BIGINT"),
        "rate_periods": str(len(starts)),
        "customers_started": started[0] if not cancelled else
        f"(CASE WHEN org_code < {staying} THEN {started[0]} ELSE {staying} + {started[1]} END)",
        "customer_ended": "false" if not cancelled else
        f"(org_code >= {staying} AND day >= getvariable('customer_end')[org_code - {staying} + 1])",
    }


def _by_day(con: duckdb.DuckDBPyConnection, variable: str, steps: dict[date, int], before: str) -> str:
    """SQL of the value of `steps` ({from date: value}) in force on `day`, `before` before the
    first date: a list variable with one value a day from the first date to the last (DuckDB
    copies a list variable for every batch of rows, so it is only as long as that span)."""
    if not steps:
        return before
    first, last = min(steps), max(steps)
    days = (steps.get(first + timedelta(days=n)) for n in range((last - first).days + 1))
    values = list(accumulate(days, lambda current, new: current if new is None else new))
    _set_list(con, variable, "BIGINT", values)
    return (f"(CASE WHEN day >= DATE '{last}' THEN {steps[last]} WHEN day < DATE '{first}' THEN {before} "
            f"ELSE getvariable('{variable}')[day - DATE '{first}' + 1] END)")


def _lookup(con: duckdb.DuckDBPyConnection, enum: str, keys: list[str], **values: tuple[str, list]) -> list[str]:
    """ENUM type `enum` of `keys` and, for each of `values` ({variable: (type, one per key)}), a
    list variable indexed by the key's code + 1; returns the keys in code order."""
    con.register("lookup_keys", pa.table({"key": pa.array(keys, pa.string())}))
    con.execute(f"DROP TYPE IF EXISTS {enum}")
    con.execute(f"CREATE TYPE {enum} AS ENUM (SELECT key FROM lookup_keys)")
    con.unregister("lookup_keys")
    [(ordered,)] = con.execute(f"SELECT enum_range(NULL::{enum})").fetchall()
    ordered = ordered or []
    position = {key: i for i, key in enumerate(keys)}
    for variable, (sql_type, column) in values.items():
        _set_list(con, variable, sql_type, [column[position[k]] for k in ordered])
    return ordered


def _set_list(con: duckdb.DuckDBPyConnection, variable: str, sql_type: str, values: list) -> None:
    """The DuckDB variable `variable`: `values` as a list of `sql_type` (None: NULL)."""
    con.execute(f"SET VARIABLE {variable} = CAST($1 AS {sql_type}[])", [values])


def bill(zone: LandingZone, day: date) -> IngestSummary:
    """Stage `day` and every earlier date that needs it, then decide its cross-day duplicates."""
    for earlier in [d for d in zone.dates if d < day]:
        stage(zone, earlier)
    manifest = stage(zone, day)
    con = duck.connect(zone.settings.scratch_dir())
    try:
        wh = zone.warehouse
        today = _priced_relation(con, wh, [partition_name(day)])
        earlier = _priced_relation(con, wh, [partition_name(d) for d in zone.dates if d < day], keys=False)
        positions = paths.sql("ingest/cross_day_duplicates.sql").format(today=today, earlier=earlier)
        con.execute(f"CREATE TEMP TABLE cross_day AS {positions}")
        cross = con.execute("SELECT count(*) FROM cross_day").fetchone()[0]
        sources = (f"({_stored_sources_sql(con, wh, [partition_name(day)])})" if cross  # request_ids for the audit
                   else "(SELECT NULL::VARCHAR AS request_id, NULL::VARCHAR AS key, NULL::BIGINT AS line_no)")
        query = ("SELECT s.request_id, d.* FROM cross_day d "
                 f"LEFT JOIN {sources} s ON s.key = d.key AND s.line_no = d.line_no ORDER BY d.key, d.line_no")
        meta = manifest["meta"]
        billed = meta["first_in_date"] - cross
        summary = IngestSummary(
            day.isoformat(), meta["rows_read"], billed, meta["valid"] - billed, meta["quarantined"]
        )
        wh.commit(BILLED, partition_name(day), con, {"cross_day_duplicates": query},
                  {"upstream": zone.upstream_fingerprint(day), **summary.to_json()})
        return summary
    finally:
        con.close()


def ingest(settings: BillingSettings, days: list[date]) -> list[IngestSummary]:
    """Bill `days` (any order), then rebill later dates whose earlier inputs changed."""
    zone = LandingZone(settings)
    summaries = {day: bill(zone, day) for day in sorted(set(days))}
    for later in [d for d in zone.dates if d > min(days, default=date.max)]:
        if later not in summaries and zone.warehouse.manifest(BILLED, partition_name(later)) and not zone.is_billed(later):
            bill(zone, later)
    return [summaries[d] for d in days]


def refresh_all(settings: BillingSettings) -> LandingZone:
    """Make every landing date's billed usage current (what a monthly close reads)."""
    zone = LandingZone(settings)
    for day in zone.dates:
        if not zone.is_billed(day):
            bill(zone, day)
    return zone


def summary_of(settings: BillingSettings, day: date) -> IngestSummary | None:
    """The stored ingest counts of `day`, or None where it was never ingested."""
    manifest = settings.warehouse().manifest(BILLED, partition_name(day))
    if manifest is None:
        return None
    meta = manifest["meta"]
    return IngestSummary(meta["landing_date"], meta["rows_read"], meta["billed"], meta["duplicates"], meta["quarantined"])


def billed_events_sql(con: duckdb.DuckDBPyConnection, zone: LandingZone, days: list[date] | None = None) -> str:
    """A query of the billed events (valid, first occurrence ever) of `days` (default: all)."""
    wh = zone.warehouse
    parts = [partition_name(d) for d in (zone.dates if days is None else days)]
    if not wh.file_paths(PRICED, "priced_events", parts):
        raise LookupError("no priced events: ingest some landing dates first")
    priced = f"SELECT e.* FROM {_priced_relation(con, wh, parts)} e"
    dup_paths = wh.file_paths(BILLED, "cross_day_duplicates", parts)
    if dup_paths:
        priced += f" ANTI JOIN {wh.relation(con, dup_paths)} d ON d.key = e.key AND d.line_no = e.line_no"
    return priced_event_fields_sql(f"({priced} WHERE e.first_in_date)", f"({_stored_sources_sql(con, wh, parts)})")


def _priced_relation(con: duckdb.DuckDBPyConnection, wh: Warehouse, parts: list[str], keys: bool = True) -> str:
    """The stored priced events of `parts` with their landing date and (where `keys`) the key of
    their file, which priced_events.sql leaves to the manifest."""
    selects, files = [], []
    for part in parts:
        manifest = wh.manifest(PRICED, part)
        if manifest is None:
            continue
        day = manifest["meta"]["landing_date"]
        priced = wh.relation(con, wh.file_paths(PRICED, "priced_events", [part]))
        selects.append(f"SELECT DATE '{day}' AS landing_date, * FROM {priced}")
        files += [f"(DATE '{day}', {i}, '{_quote(key)}')" for i, key in enumerate(manifest["meta"]["files"])]
    if not selects:
        selects = ["SELECT NULL::DATE AS landing_date, NULL::INTEGER AS file_idx, NULL::BIGINT AS line_no, "
                   "NULL::UBIGINT AS h1, NULL::UBIGINT AS h2, NULL::DECIMAL(38, 12) AS cost_usd, "
                   "NULL::BIGINT AS credits, NULL::BOOLEAN AS first_in_date WHERE false"]
    priced = "\nUNION ALL\n".join(selects)
    if not keys:
        return f"({priced})"
    files = files or ["(NULL::DATE, NULL::INTEGER, NULL::VARCHAR)"]
    return (f"(SELECT p.landing_date, k.key, p.* EXCLUDE (landing_date) FROM ({priced}) p "
            f"JOIN (VALUES {', '.join(files)}) k(landing_date, file_idx, key) USING (landing_date, file_idx))")


def _stored_sources_sql(con: duckdb.DuckDBPyConnection, wh: Warehouse, parts: list[str]) -> str:
    """event_sources.sql over what the warehouse keeps of `parts`: the copies of the landed Parquet
    files and the valid JSON lines, parsed (json_events)."""
    selects = []
    for part in parts:
        manifest = wh.manifest(PRICED, part)
        if manifest is None:
            continue
        for name in sorted(manifest["files"]):
            if name == "json_events":
                selects.append(f"SELECT * FROM {wh.relation(con, wh.file_paths(PRICED, name, [part]))}")
            elif name.startswith(_COPY):
                file_idx = int(name.removeprefix(_COPY))
                key = manifest["meta"]["files"][file_idx]
                path = _landed_copy(wh, part, name, key)
                fields = parquet_fields_sql(file_idx, read_parquet_sql(path), pq.read_schema(path))
                selects.append(event_sources_sql(f"({fields})", f"(SELECT {file_idx} AS file_idx, '{_quote(key)}' AS key)"))
    if not selects:  # no events at all: the same columns, no rows
        empty = parquet_fields_sql(0, "(SELECT 0 AS file_row_number WHERE false)", pa.schema([]))
        selects.append(event_sources_sql(f"({empty})", "(SELECT 0 AS file_idx, '' AS key)"))
    return "\nUNION ALL\n".join(selects)


def _landed_copy(wh: Warehouse, part: str, name: str, key: str) -> str:
    """Local path of the warehouse's copy of the landed Parquet file `key` of partition `part`."""
    try:
        return wh.copy_path(PRICED, part, name)
    except WarehouseError as exc:
        raise WarehouseError(f"{exc}: its landed file {key} was rewritten in place after it was ingested; "
                             f"run `billing ingest {part[3:]}` to bill it as it is now") from exc


def _quote(text: str) -> str:
    return text.replace("'", "''")
