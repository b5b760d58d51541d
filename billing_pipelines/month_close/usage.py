"""A billing month's events (SPEC §2), collected once: `month_usage/month=YYYY-MM/`.

The billed events of the landing dates of the month's partition (see partitions.month_window)
and those the month before handed over, in one Parquet file sorted by (billing month, customer
bucket, org_id, ts, request_id): the month's own events, which every later step of the close
reads a customer shard at a time, and the events of the next month that landed before this one
closed (timestamps after its end), which the next month's collection takes over. Nothing is
ingested here: a landing date whose billed usage is missing or older than its files or the
config fails the collection with the command to run.
"""

from __future__ import annotations

import tempfile
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa

from billing_pipelines.config import BillingConfig
from billing_pipelines.ingest.landing import partition_name
from billing_pipelines.ingest.pipeline import BILLED, LandingZone, billed_events_sql, stale_dates
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA
from billing_pipelines.month_close.errors import MonthCloseError
from billing_pipelines.partitions import customer_bucket, month_window
from billing_pipelines.periods import add_months, first_open_month, month_key
from billing_pipelines.storage import duck
from billing_pipelines.storage.warehouse import manifest_version

MONTH_USAGE = "month_usage"
EVENTS = "events"
COLUMNS = (*BILLED_EVENT_SCHEMA, "bucket", "billing_month")


def partition(month: date) -> str:
    return f"month={month_key(month)}"


def collect_month_usage(zone: LandingZone, month: date, grace_days: int) -> dict:
    """Collect and commit the events of billing month `month`; returns the manifest."""
    month = month.replace(day=1)
    wh, config = zone.warehouse, zone.config
    first, end = month_window(month, grace_days)
    days = [first + timedelta(days=n) for n in range((end - first).days)]
    _refuse_stale(zone, month, days)
    billed = [d for d in days if wh.manifest(BILLED, partition_name(d))]
    previous = _previous(zone, month)
    con = duck.connect(zone.settings.scratch_dir())
    try:
        con.register("customer_buckets", _buckets(config))
        with tempfile.TemporaryDirectory(dir=zone.settings.scratch_dir()) as scratch:
            parts = [_write(con, _billed_on(con, zone, day, grace_days), Path(scratch) / f"{day}.parquet")
                     for day in billed]
            if previous is not None:
                handed = wh.relation(con, wh.file_paths(MONTH_USAGE, EVENTS, [partition(add_months(month, -1))]))
                handed_sql = f"SELECT {', '.join(COLUMNS)} FROM {handed} WHERE billing_month = {duck.literal(month)}"
                parts.append(_write(con, handed_sql, Path(scratch) / "handed-over.parquet"))
            events = f"read_parquet({duck.literal_list(parts)})" if parts else f"({no_events_sql()})"
            counts = dict(con.execute(f"SELECT bucket, count(*) FROM {events} WHERE billing_month = $1 GROUP BY 1",
                                      [month]).fetchall())
            [(handover,)] = con.execute(f"SELECT count(*) FROM {events} WHERE billing_month > $1", [month]).fetchall()
            meta = {"month": month_key(month), "previous": previous, "events": sum(counts.values()),
                    "landing_dates": {d.isoformat(): manifest_version(wh.manifest(BILLED, partition_name(d)))
                                      for d in billed},
                    "handed_over": handover, "events_by_bucket": {str(b): n for b, n in sorted(counts.items())}}
            query = f"SELECT * FROM {events} ORDER BY billing_month, bucket, org_id, ts, request_id"
            return wh.commit(MONTH_USAGE, partition(month), con, {EVENTS: query}, meta)
    finally:
        con.close()


def _write(con, query: str, path: Path) -> Path:
    """One landing date's (or the handover's) events as a local Parquet part: the month is sorted
    from the parts, one join at a time, so memory stays within DuckDB's limit whatever its size."""
    con.execute(f"COPY ({query}) TO {duck.literal(path)} (FORMAT parquet)")
    return path



def _refuse_stale(zone: LandingZone, month: date, days: list[date]) -> None:
    stale = stale_dates(zone, [d for d in days if d <= date.today() + timedelta(days=1)])
    if stale:
        listed = " ".join(date_ranges(stale))
        raise MonthCloseError(f"{month_key(month)} takes in landing dates whose billed usage is missing or older "
                              f"than their files or the config: {listed}; run `billing ingest {listed}` first")


def date_ranges(days: list[date]) -> list[str]:
    """Sorted dates as `billing ingest` arguments: FROM..TO for each run of consecutive days."""
    runs: list[list[date]] = []
    for day in sorted(days):
        if runs and day - runs[-1][-1] == timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return [f"{r[0]}..{r[-1]}" if len(r) > 1 else r[0].isoformat() for r in runs]


def _previous(zone: LandingZone, month: date) -> str | None:
    """The version of the previous month's collection, which hands this month its early events;
    an error where a customer was billed before `month` and it is missing."""
    manifest = zone.warehouse.manifest(MONTH_USAGE, partition(add_months(month, -1)))
    if manifest is not None:
        return manifest_version(manifest)
    if any(c.start_date < month for c in zone.config.customers.values()):
        earlier = month_key(add_months(month, -1))
        raise MonthCloseError(f"{month_key(month)} needs {earlier} collected first (its events and the events of "
                              f"{month_key(month)} that landed before {earlier} closed): "
                              f"run `billing close-month {earlier}`")
    return None


def _billed_on(con, zone: LandingZone, day: date, grace_days: int) -> str:
    """The billed events of one landing date with their customer bucket and billing month."""
    open_month = first_open_month(day, grace_days)
    fields = ", ".join(f"e.{c}" for c in BILLED_EVENT_SCHEMA)
    return (f"SELECT {fields}, b.bucket, "
            f"greatest(date_trunc('month', e.ts)::DATE, {duck.literal(open_month)}) AS billing_month "
            f"FROM ({billed_events_sql(con, zone, [day])}) e JOIN customer_buckets b USING (org_id)")


def _buckets(config: BillingConfig) -> pa.Table:
    orgs = sorted(config.customers)
    return pa.table({"org_id": pa.array(orgs, pa.string()),
                     "bucket": pa.array([customer_bucket(o) for o in orgs], pa.int16())})


def no_events_sql() -> str:
    """A query of no collected events, with their columns."""
    casts = {"request_id": "VARCHAR", "org_id": "VARCHAR", "user_id": "VARCHAR", "ts": "TIMESTAMP",
             "landing_date": "DATE", "model": "VARCHAR", "action": "VARCHAR", "input_tokens": "BIGINT",
             "output_tokens": "BIGINT", "latency_ms": "BIGINT", "cost_usd": "DECIMAL(38, 12)", "credits": "BIGINT",
             "bucket": "SMALLINT", "billing_month": "DATE"}
    return "SELECT " + ", ".join(f"NULL::{casts[c]} AS {c}" for c in COLUMNS) + " WHERE false"


def month_events_sql(con, wh, month: date, buckets: list[int] | None = None) -> str:
    """A query of the collected events billed in `month` (of the customer `buckets`)."""
    relation = wh.relation(con, wh.file_paths(MONTH_USAGE, EVENTS, [partition(month)]))
    where = f"billing_month = {duck.literal(month.replace(day=1))}"
    if buckets is not None:
        where += f" AND bucket IN ({', '.join(str(int(b)) for b in buckets) or 'NULL'})"
    return f"SELECT {', '.join(BILLED_EVENT_SCHEMA)} FROM {relation} WHERE {where}"
