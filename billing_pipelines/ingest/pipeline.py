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
import tempfile
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from itertools import accumulate
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from billing_pipelines.config import RATE_PLACES, BillingConfig
from billing_pipelines.ingest.landing import (
    DateFiles,
    date_files,
    files_fingerprint,
    landed_files,
    load_fields,
    load_quarantined_raw,
    parquet_fields_sql,
    partition_name,
    read_fields,
    read_parquet_sql,
)
from billing_pipelines.ingest.request_index import (
    CHUNK,
    KEYS,
    Probe,
    RequestIndex,
    day_of,
    index_lock,
    same_keys,
    symmetric_difference,
)
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import duck
from billing_pipelines.storage.duck import Sql
from billing_pipelines.storage.objects import Store, StoredFile
from billing_pipelines.storage.warehouse import Warehouse, WarehouseError

# Bump when the content of priced_events changes for the same input, to restage everything.
PIPELINE_VERSION = "3"
PRICED = "priced_events"
BILLED = "billed_usage"
FIRST_OCCURRENCES = "first_occurrences"  # priced_events file: the date's run of the request index
_COPY = "landing-"  # manifest names of the copies of landed Parquet files: landing-<file_idx>


@dataclass
class IngestSummary:
    """What `billing ingest --format json` prints for one landing date: the counts, and the files
    not read, where there are any (SPEC §1.1): unreadable ones ({"key", "error"}) and skipped ones
    ({"key", "reason"})."""

    landing_date: str
    rows_read: int
    billed: int
    duplicates: int
    quarantined: dict[str, int] = field(default_factory=dict)
    unreadable_files: list[dict[str, str]] = field(default_factory=list)
    skipped_files: list[dict[str, str]] = field(default_factory=list)

    def to_json(self) -> dict:
        files = {"unreadable_files": self.unreadable_files, "skipped_files": self.skipped_files}
        return {
            "landing_date": self.landing_date,
            "rows_read": self.rows_read,
            "billed": self.billed,
            "duplicates": self.duplicates,
            "quarantined": dict(sorted(self.quarantined.items())),
            **{name: listed for name, listed in files.items() if listed},
        }

    @classmethod
    def from_json(cls, summary: dict) -> IngestSummary:
        """The summary as to_json wrote it (manifests store keys sorted: files list key first)."""
        unreadable = [{"key": f["key"], "error": f["error"]} for f in summary.get("unreadable_files", [])]
        skipped = [{"key": f["key"], "reason": f["reason"]} for f in summary.get("skipped_files", [])]
        return cls(summary["landing_date"], summary["rows_read"], summary["billed"], summary["duplicates"],
                   summary["quarantined"], unreadable, skipped)


class LandingZone:
    """The landing zone, the config and the warehouse of one run. A date's files are listed when
    that date is needed (never the whole landing zone: its listing grows with history)."""

    def __init__(self, settings: BillingSettings, config: BillingConfig | None = None):
        self.settings = settings
        self.config = config or settings.billing_config()
        self.store = settings.landing_store()
        self.warehouse = settings.warehouse()
        self._files: dict[date, list[StoredFile]] = {}

    def files_of(self, day: date) -> list[StoredFile]:
        if day not in self._files:
            self._files[day] = landed_files(self.store, day)
        return self._files[day]

    def stage_fingerprint(self, day: date, scope: dict) -> str:
        """What the priced events of `day` are a function of: its files, the pipeline and the
        part of the config its rows can reach (`scope`, see config_scope)."""
        return _sha(PIPELINE_VERSION, hash_probe(), scoped_config_digest(self.config, scope, day),
                    files_fingerprint(self.files_of(day)))

    def staged(self, day: date) -> dict | None:
        """The committed priced events of `day` where they are current, else None."""
        manifest = self.warehouse.manifest(PRICED, partition_name(day))
        if manifest and manifest["meta"]["fingerprint"] == self.stage_fingerprint(day, manifest["meta"]["scope"]):
            return manifest
        return None

    def is_staged(self, day: date) -> bool:
        return self.staged(day) is not None


def _sha(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def stage(zone: LandingZone, day: date) -> dict:
    """Validate, quarantine and price every row landed on `day`; no-op when already current. The
    manifest's meta lists the event files (`files`, by file_idx), the skipped files and the
    unreadable files, whose rows are not read."""
    if (current := zone.staged(day)) is not None:
        return current
    con = duck.connect(zone.settings.scratch_dir())
    try:
        landed = classify_files(con, zone.config, zone.store, zone.files_of(day), day)
        scope = config_scope(con)
        meta = {"fingerprint": zone.stage_fingerprint(day, scope), "landing_date": day.isoformat(),
                "files": [f.key for f in landed.events], "scope": scope, **_stage_counts(con),
                "skipped_files": landed.skipped, "unreadable_files": landed.unreadable_files()}
        queries = {
            "priced_events": priced_events_sql(),
            "quarantine": duck.render("ingest/quarantine.sql", landing_date=day),
        }
        if landed.json_files():
            valid_json = ("(SELECT j.* FROM json_fields j SEMI JOIN classified c "
                          "ON c.file_idx = j.file_idx AND c.line_no = j.line_no AND c.reason IS NULL)")
            queries["json_events"] = event_sources_sql(valid_json, "files") + " ORDER BY f.file_idx, f.line_no"
        copies = {_copy_name(i): (zone.store, landed.events[i].stored) for i in sorted(landed.parquet)}
        with tempfile.TemporaryDirectory(dir=zone.settings.scratch_dir()) as scratch:
            arrays = {FIRST_OCCURRENCES: first_occurrences(con, Path(scratch) / "first.npy")}
            return zone.warehouse.commit(PRICED, partition_name(day), con, queries, meta, copies, arrays)
    finally:
        con.close()


def first_occurrences(con: duckdb.DuckDBPyConnection, path: Path) -> np.ndarray:
    """The request hashes of the date's first occurrences (valid, first in date), sorted by DuckDB
    (beyond memory where need be) into a memory-mapped file at `path`: the date's run of the
    request index."""
    [(count,)] = con.execute("SELECT count(*) FROM classified WHERE first_in_date").fetchall()
    keys = np.lib.format.open_memmap(path, "w+", KEYS, (count,))
    ordered = con.sql("SELECT h1, h2 FROM classified WHERE first_in_date ORDER BY h1, h2, file_idx, line_no")
    at = 0
    with ordered.to_arrow_reader(CHUNK) as batches:
        for batch in batches:
            keys["h1"][at:at + batch.num_rows] = batch.column(0).to_numpy()
            keys["h2"][at:at + batch.num_rows] = batch.column(1).to_numpy()
            at += batch.num_rows
    keys.flush()
    return keys


def config_scope(con: duckdb.DuckDBPyConnection) -> dict:
    """The customers, models and actions the date's rows name (known ones; `all_*` where some
    row names an unknown one, so that adding any of that kind can change the date)."""
    orgs, models, actions, *unknown = con.execute(
        "SELECT list(DISTINCT org_code), list(DISTINCT model_code), list(DISTINCT action_no), "
        "bool_or(reason = 'unknown_org'), bool_or(reason = 'unknown_model'), bool_or(reason = 'unknown_action') "
        "FROM classified").fetchone()
    names = {enum: con.execute(f"SELECT enum_range(NULL::{enum})").fetchone()[0] or []
             for enum in ("org_key", "model_key", "action_key")}
    return {
        "orgs": sorted(names["org_key"][c] for c in orgs or [] if c is not None),
        "models": sorted(names["model_key"][c] for c in models or [] if c is not None),
        "actions": sorted(names["action_key"][c - 1] for c in actions or [] if c is not None),
        **{f"all_{kind}": bool(flag) for kind, flag in zip(("orgs", "models", "actions"), unknown)},
    }


def scoped_config_digest(config: BillingConfig, scope: dict, day: date) -> str:
    """The digest of the config as the rows of `day` can see it (SPEC §1.2, §1.4): the start and
    end of the customers they name, the rate rows of their models that can apply (effective by
    the day after: a ts is before 00:00 two days after landing), their actions' credits; the
    whole list of a kind where a row names an unknown one."""
    book, last_rate_day = config.price_book, day + timedelta(days=1)
    orgs = sorted(config.customers) if scope["all_orgs"] else scope["orgs"]
    models = book.model_names if scope["all_models"] else scope["models"]
    actions = [a.action for a in book.actions] if scope["all_actions"] else scope["actions"]
    customers = [(o, str(config.customers[o].start_date), str(config.cancelled_on(o)))
                 for o in orgs if o in config.customers]
    rates = [(r.model, str(r.effective_from), str(r.input_usd_per_1k), str(r.output_usd_per_1k))
             for r in book.models if r.model in models and r.effective_from <= last_rate_day]
    tiers = [(a.action, a.credits, a.tokens_per_credit) for a in book.actions if a.action in actions]
    return _sha(repr((orgs, customers, models, rates, actions, tiers)))


def _copy_name(file_idx: int) -> str:
    """Manifest name of the warehouse's copy of a landed Parquet file (priced events' source)."""
    return f"{_COPY}{file_idx:05d}"


def classify_files(con: duckdb.DuckDBPyConnection, config: BillingConfig, store: Store, files: list[StoredFile],
                   day: date) -> DateFiles:
    """Table `classified`: every row of the event files among the listed `files`, landed on `day`,
    in landing order, with its quarantine reason or its price and whether it is the first of its
    request_id on that date; and `quarantined_raw`, the text of its quarantined rows. Then
    priced_events_sql() selects the valid rows, priced. Returns the date's files: event files,
    skipped files and the unreadable files, none of whose rows is in `classified`."""
    rate_periods = _register_config(con, config)
    landed = date_files(store, files)
    load_fields(con, store, landed)
    classify = duck.render("ingest/classify.sql", fields=Sql("fields"), landing_date=day,
                           request_hash=request_hash_sql("request_id"), **rate_periods)

    def read() -> None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE classified AS {classify}")
        if not _in_landing_order(con):
            con.execute("CREATE OR REPLACE TEMP TABLE classified AS "
                        "SELECT * FROM classified ORDER BY file_idx, line_no")
        con.execute(duck.render("ingest/later_occurrences.sql"))
        load_quarantined_raw(con, landed)

    read_fields(con, landed, read)
    return landed


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


def request_hash_sql(request_id: str) -> Sql:
    """The 128-bit hash (h1, h2) by which landing dates compare their request_ids: two 64-bit
    DuckDB hashes. DuckDB does not promise them across releases, so stage fingerprints include
    hash_probe(): a DuckDB whose hashes differ restages every date."""
    return Sql(f"hash({request_id}) AS h1, hash({request_id} || '#') AS h2")


@functools.cache
def hash_probe() -> str:
    """The request hash of a fixed id with this DuckDB."""
    with duckdb.connect() as con:
        return str(con.execute(f"SELECT {request_hash_sql(duck.literal('billing_pipelines'))}").fetchone())


def priced_events_sql() -> Sql:
    """The valid rows of classify_files, priced, with `first_in_date` (priced_events.sql)."""
    return duck.render("ingest/priced_events.sql")


def event_sources_sql(fields: str, files: str) -> Sql:
    """The fields of events by (key, line_no) from a `fields` relation (event_sources.sql)."""
    return duck.render("ingest/event_sources.sql", fields=Sql(fields), files=Sql(files))


def priced_event_fields_sql(priced: str, sources: str) -> Sql:
    """Priced events with every field of the event, from its `sources` (priced_event_fields.sql)."""
    return duck.render("ingest/priced_event_fields.sql", priced=Sql(priced), sources=Sql(sources))


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
        "rate_periods": len(starts),
        "customers_started": started[0] if not cancelled else
        Sql(f"(CASE WHEN org_code < {staying} THEN {started[0]} ELSE {staying} + {started[1]} END)"),
        "customer_ended": Sql("false") if not cancelled else
        Sql(f"(org_code >= {staying} AND day >= getvariable('customer_end')[org_code - {staying} + 1])"),
    }


def _by_day(con: duckdb.DuckDBPyConnection, variable: str, steps: dict[date, int], before: str) -> str:
    """SQL of the value of `steps` ({from date: value}) in force on `day`, `before` before the
    first date: a list variable with one value a day from the first date to the last (DuckDB
    copies a list variable for every batch of rows, so it is only as long as that span)."""
    if not steps:
        return Sql(before)
    first, last = min(steps), max(steps)
    days = (steps.get(first + timedelta(days=n)) for n in range((last - first).days + 1))
    values = list(accumulate(days, lambda current, new: current if new is None else new))
    _set_list(con, variable, "BIGINT", values)
    first_day, last_day = duck.literal(first), duck.literal(last)
    return Sql(f"(CASE WHEN day >= {last_day} THEN {steps[last]} WHEN day < {first_day} THEN {before} "
               f"ELSE getvariable({duck.literal(variable)})[day - {first_day} + 1] END)")


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


@dataclass
class Billing:
    """What billing one landing date did: its summary and the later dates it rebilled (their
    billed set changed with this date's request_ids)."""

    summary: IngestSummary
    rebilled: list[IngestSummary] = field(default_factory=list)


def bill(zone: LandingZone, day: date) -> Billing:
    """Stage `day`, update its run of the request index and decide its cross-day duplicates,
    then rebill every later date whose billed set that changes. The index and the billed usage
    change under one lock, so every reader sees each date decided against the index it holds."""
    stage(zone, day)
    with index_lock(zone.settings.home, zone.settings.database_url):
        index = RequestIndex(zone.warehouse)
        for earlier in index.pending():  # a bill killed before it rebilled later dates
            _propagate(zone, index, earlier)
        return _bill_locked(zone, index, day)


def _bill_locked(zone: LandingZone, index: RequestIndex, day: date) -> Billing:
    manifest = zone.warehouse.manifest(PRICED, partition_name(day))
    keys = _first_occurrences_of(zone.warehouse, day)
    held, source = index.date_run_keys(day), manifest["meta"]["fingerprint"]
    if held is not None and same_keys(held, keys):
        if index.source(day) != source:
            index.set_source(day, source)
    else:
        index.put_date_run(day, keys, source, keys if held is None else symmetric_difference(held, keys))
    billing = Billing(_decide(zone, index, day))
    if day in index.pending():
        billing.rebilled = _propagate(zone, index, day)
    return billing


def _propagate(zone: LandingZone, index: RequestIndex, day: date) -> list[IngestSummary]:
    """Rebill the later dates that hold a request_id `day` gained or lost, then mark it done."""
    delta, rebilled = index.delta(day), []
    later = sorted({day_of(d) for run in index.runs_after(day) for d in run.lookup(Probe.of(delta))[1]})
    for other in later:
        if other > day and zone.warehouse.manifest(BILLED, partition_name(other)):
            billing = _bill_locked(zone, index, other)
            rebilled += [billing.summary, *billing.rebilled]
    index.mark_propagated(day)
    return rebilled


def _first_occurrences_of(wh: Warehouse, day: date) -> np.ndarray:
    [path] = wh.local_paths(wh.file_paths(PRICED, FIRST_OCCURRENCES, [partition_name(day)]))
    return np.load(path, mmap_mode="r")


def _decide(zone: LandingZone, index: RequestIndex, day: date) -> IngestSummary:
    """The cross-day duplicates of `day`: its first occurrences whose request hash an earlier
    date's run holds, with the earliest such date; committed as billed usage."""
    wh, part = zone.warehouse, partition_name(day)
    keys = _first_occurrences_of(wh, day)
    found, first = index.found_in(keys, index.runs_before(day, build=True))
    seen = pa.table({"h1": keys["h1"][found], "h2": keys["h2"][found],
                     "original_landing_date": pa.array(first, pa.int32()).cast(pa.date32())})
    con = duck.connect(zone.settings.scratch_dir())
    try:
        con.register("seen_before", seen)
        today = _priced_relation(con, wh, [part])
        con.execute(f"CREATE TEMP TABLE cross_day AS SELECT e.key, e.line_no, min(o.original_landing_date) AS "
                    f"original_landing_date FROM {today} e JOIN seen_before o USING (h1, h2) "
                    f"WHERE e.first_in_date GROUP BY ALL")
        cross = con.execute("SELECT count(*) FROM cross_day").fetchone()[0]
        sources = (f"({_stored_sources_sql(con, wh, [part])})" if cross  # request_ids for the audit
                   else "(SELECT NULL::VARCHAR AS request_id, NULL::VARCHAR AS key, NULL::BIGINT AS line_no)")
        query = ("SELECT s.request_id, d.* FROM cross_day d "
                 f"LEFT JOIN {sources} s ON s.key = d.key AND s.line_no = d.line_no ORDER BY d.key, d.line_no")
        meta = wh.manifest(PRICED, part)["meta"]
        billed = meta["first_in_date"] - cross
        summary = IngestSummary(
            day.isoformat(), meta["rows_read"], billed, meta["valid"] - billed, meta["quarantined"],
            meta["unreadable_files"], meta["skipped_files"],
        )
        wh.commit(BILLED, part, con, {"cross_day_duplicates": query},
                  {"stage": meta["fingerprint"], **summary.to_json()})
        return summary
    finally:
        con.close()


def ingest(settings: BillingSettings, days: list[date]) -> list[IngestSummary]:
    """Bill `days` (any order); each also rebills the later dates whose billed set it changes."""
    zone = LandingZone(settings)
    summaries = {day: bill(zone, day).summary for day in sorted(set(days))}
    return [summaries[d] for d in days]


def stale_dates(zone: LandingZone, days: list[date]) -> list[date]:
    """The dates among `days` whose billed usage is missing or older than their landed files or
    the config: what to ingest before anything reads them."""
    stale = []
    for day in days:
        staged, billed = zone.staged(day), zone.warehouse.manifest(BILLED, partition_name(day))
        landed = bool(zone.files_of(day))
        outdated = staged is None or billed is None or billed["meta"]["stage"] != staged["meta"]["fingerprint"]
        if (landed or billed) and outdated:
            stale.append(day)
    return stale


def summary_of(settings: BillingSettings, day: date) -> IngestSummary | None:
    """The stored ingest counts of `day`, or None where it was never ingested."""
    manifest = settings.warehouse().manifest(BILLED, partition_name(day))
    if manifest is None:
        return None
    return IngestSummary.from_json(manifest["meta"])


def billed_events_sql(con: duckdb.DuckDBPyConnection, zone: LandingZone, days: list[date]) -> str:
    """A query of the billed events (valid, first occurrence ever) that landed on `days`."""
    wh = zone.warehouse
    parts = [partition_name(d) for d in days]
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
        day = duck.literal(date.fromisoformat(manifest["meta"]["landing_date"]))
        priced = wh.relation(con, wh.file_paths(PRICED, "priced_events", [part]))
        selects.append(f"SELECT {day} AS landing_date, * FROM {priced}")
        files += [f"({day}, {i}, {duck.literal(key)})" for i, key in enumerate(manifest["meta"]["files"])]
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
                selects.append(event_sources_sql(f"({fields})",
                                                 f"(SELECT {file_idx} AS file_idx, {duck.literal(key)} AS key)"))
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
