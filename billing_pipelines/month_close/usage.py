"""A billing month's events (SPEC §2), collected a customer shard at a time.

First the month's landing dates are pinned (`month_landing/month=YYYY-MM/`, manifest only): the
version of the billed usage of each landing date of the month's partition (see
partitions.month_window). A landing date whose billed usage is missing or older than its files
or the config fails the pin with the command to run: nothing is ingested here. Then each
customer shard collects its events (`month_usage/month=YYYY-MM/shard=S-of-N/`, its own run): the
billed events of its customers on the pinned dates and those its shard of the month before
handed over, in one Parquet file sorted by (billing month, customer bucket, org_id, ts,
request_id): the month's own events, which the shard's ledger reads a batch of buckets at a
time, and the events of the next month that landed before this one closed (timestamps after its
end), which the next month's shard takes over.
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
from billing_pipelines.partitions import customer_bucket, lead_in_month, month_window
from billing_pipelines.periods import add_months, first_open_month, month_key
from billing_pipelines.storage import duck
from billing_pipelines.storage.warehouse import Warehouse, manifest_version

MONTH_LANDING = "month_landing"
MONTH_USAGE = "month_usage"
EVENTS = "events"
COLUMNS = (*BILLED_EVENT_SCHEMA, "bucket", "billing_month")


def partition(month: date) -> str:
    return f"month={month_key(month)}"


def shard_partition(month: date, shard: int, shards: int) -> str:
    """The partition of one customer shard's part of a month (its collection, its ledger)."""
    return f"month={month_key(month)}/shard={shard}-of-{shards}"


def shard_orgs(config: BillingConfig, shard: int, shards: int) -> set[str]:
    """The customers of `shard` of `shards`: those whose bucket b has b % shards == shard."""
    return {o for o in config.customers if customer_bucket(o) % shards == shard}


def window_days(month: date, grace_days: int) -> list[date]:
    """The landing dates of the month's partition (partitions.month_window)."""
    first, end = month_window(month, grace_days)
    return [first + timedelta(days=n) for n in range((end - first).days)]


def landing_dates(wh: Warehouse, month: date, grace_days: int) -> dict[str, str]:
    """The billed usage versions of the month's landing dates, as they are now (dates without one left out)."""
    manifests = {d: wh.manifest(BILLED, partition_name(d)) for d in window_days(month, grace_days)}
    return {d.isoformat(): manifest_version(m) for d, m in manifests.items() if m}


def first_billing_month(wh: Warehouse, config: BillingConfig, grace_days: int) -> date:
    """The first month to close: the lead-in month (partitions.lead_in_month) where landing dates
    of its partition are ingested (events of the first month that landed on its first days),
    else the first customer's start month."""
    lead_in = lead_in_month(config)
    return lead_in if landing_dates(wh, lead_in, grace_days) else add_months(lead_in, 1)


def pin_landing_dates(zone: LandingZone, month: date, grace_days: int) -> dict:
    """Pin the billed usage of the landing dates of billing month `month`; returns the manifest."""
    month = month.replace(day=1)
    _refuse_stale(zone, month, window_days(month, grace_days))
    meta = {"month": month_key(month), "grace_days": grace_days,
            "landing_dates": landing_dates(zone.warehouse, month, grace_days)}
    return zone.warehouse.commit(MONTH_LANDING, partition(month), None, {}, meta)


def collect_month_usage(zone: LandingZone, month: date, shard: int, shards: int) -> dict:
    """Collect and commit the events of billing month `month` of the customers of `shard` of
    `shards` from its pinned landing dates; returns the manifest."""
    month, wh = month.replace(day=1), zone.warehouse
    pinned = _pinned(wh, month)
    orgs = sorted(shard_orgs(zone.config, shard, shards))
    grace_days = pinned["meta"]["grace_days"]
    previous = _previous(zone, month, shard, shards, grace_days)
    con = duck.connect(zone.settings.scratch_dir())
    try:
        con.register("customer_buckets", _buckets(orgs))
        with tempfile.TemporaryDirectory(dir=zone.settings.scratch_dir()) as scratch:
            parts = [_write(con, _billed_on(con, zone, date.fromisoformat(day), grace_days),
                            Path(scratch) / f"{day}.parquet") for day in pinned["meta"]["landing_dates"]]
            if previous is not None:
                before = shard_partition(add_months(month, -1), shard, shards)
                handed = wh.relation(con, wh.file_paths(MONTH_USAGE, EVENTS, [before]))
                handed_sql = f"SELECT {', '.join(COLUMNS)} FROM {handed} WHERE billing_month = {duck.literal(month)}"
                parts.append(_write(con, handed_sql, Path(scratch) / "handed-over.parquet"))
            events = f"read_parquet({duck.literal_list(parts)})" if parts else f"({no_events_sql()})"
            counts = dict(con.execute(f"SELECT bucket, count(*) FROM {events} WHERE billing_month = $1 GROUP BY 1",
                                      [month]).fetchall())
            [(handover,)] = con.execute(f"SELECT count(*) FROM {events} WHERE billing_month > $1", [month]).fetchall()
            meta = {"month": month_key(month), "shard": shard, "shards": shards,
                    "landing": manifest_version(pinned), "previous": previous, "events": sum(counts.values()),
                    "handed_over": handover, "events_by_bucket": {str(b): n for b, n in sorted(counts.items())}}
            query = f"SELECT * FROM {events} ORDER BY billing_month, bucket, org_id, ts, request_id"
            return wh.commit(MONTH_USAGE, shard_partition(month, shard, shards), con, {EVENTS: query}, meta)
    finally:
        con.close()


def _pinned(wh: Warehouse, month: date) -> dict:
    """The month's pinned landing dates; an error where they are not pinned, or changed since."""
    pinned, key = wh.manifest(MONTH_LANDING, partition(month)), month_key(month)
    if pinned is None:
        raise MonthCloseError(f"{key}: its landing dates are not pinned yet (asset month_landing_dates): "
                              f"run `billing close-month {key}`")
    meta = pinned["meta"]
    now = landing_dates(wh, month, meta["grace_days"])
    changed = sorted(d for d in now.keys() | meta["landing_dates"].keys() if now.get(d) != meta["landing_dates"].get(d))
    if changed:
        raise MonthCloseError(f"{key}: the billed usage of {', '.join(changed)} changed since its landing dates "
                              f"were pinned: run `billing close-month {key}`")
    return pinned


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


def _previous(zone: LandingZone, month: date, shard: int, shards: int, grace_days: int) -> str | None:
    """The version of the shard's collection of the month before, which hands this month its early
    events; an error where it is missing, except in the first month to close (first_billing_month)."""
    earlier = add_months(month, -1)
    manifest = zone.warehouse.manifest(MONTH_USAGE, shard_partition(earlier, shard, shards))
    if manifest is not None:
        return manifest_version(manifest)
    if month > first_billing_month(zone.warehouse, zone.config, grace_days):
        raise MonthCloseError(f"{month_key(month)} needs {month_key(earlier)} collected first (its events and the "
                              f"events of {month_key(month)} that landed before {month_key(earlier)} closed): "
                              f"run `billing close-month {month_key(earlier)}`")
    return None


def _billed_on(con, zone: LandingZone, day: date, grace_days: int) -> str:
    """The billed events of one landing date with their customer bucket and billing month."""
    open_month = first_open_month(day, grace_days)
    fields = ", ".join(f"e.{c}" for c in BILLED_EVENT_SCHEMA)
    return (f"SELECT {fields}, b.bucket, "
            f"greatest(date_trunc('month', e.ts)::DATE, {duck.literal(open_month)}) AS billing_month "
            f"FROM ({billed_events_sql(con, zone, [day])}) e JOIN customer_buckets b USING (org_id)")


def _buckets(orgs: list[str]) -> pa.Table:
    return pa.table({"org_id": pa.array(orgs, pa.string()),
                     "bucket": pa.array([customer_bucket(o) for o in orgs], pa.int16())})


def no_events_sql() -> str:
    """A query of no collected events, with their columns."""
    casts = {"request_id": "VARCHAR", "org_id": "VARCHAR", "user_id": "VARCHAR", "ts": "TIMESTAMP",
             "landing_date": "DATE", "model": "VARCHAR", "action": "VARCHAR", "input_tokens": "BIGINT",
             "output_tokens": "BIGINT", "latency_ms": "BIGINT", "cost_usd": "DECIMAL(38, 12)", "credits": "BIGINT",
             "bucket": "SMALLINT", "billing_month": "DATE"}
    return "SELECT " + ", ".join(f"NULL::{casts[c]} AS {c}" for c in COLUMNS) + " WHERE false"


def usage_partitions(month: date, shards: int, buckets: list[int] | None = None) -> list[str]:
    """The shards' collections of `month` that hold the customer `buckets` (default: every shard)."""
    held = range(shards) if buckets is None else sorted({b % shards for b in buckets})
    return [shard_partition(month, s, shards) for s in held]


def month_events_sql(con, wh: Warehouse, month: date, shards: int, buckets: list[int] | None = None) -> str:
    """A query of the collected events billed in `month` (of the customer `buckets`), from the
    collections of its `shards` shards."""
    month = month.replace(day=1)
    relation = wh.relation(con, wh.file_paths(MONTH_USAGE, EVENTS, usage_partitions(month, shards, buckets)))
    where = f"billing_month = {duck.literal(month)}"
    if buckets is not None:
        where += f" AND bucket IN ({', '.join(str(int(b)) for b in buckets) or 'NULL'})"
    return f"SELECT {', '.join(BILLED_EVENT_SCHEMA)} FROM {relation} WHERE {where}"


def events_by_bucket(wh: Warehouse, month: date, shards: int) -> dict[str, int]:
    """The collected events of `month` by customer bucket, over its shards (manifests only)."""
    metas = [wh.manifest(MONTH_USAGE, p) for p in usage_partitions(month, shards)]
    return {b: n for m in metas if m for b, n in m["meta"]["events_by_bucket"].items()}
