"""Run and store a month close: read the billed events, close the month, keep the results.

The results of month M live in the warehouse as `month_close/month=YYYY-MM/` (allocations and
grants as Parquet, every JSON document in the manifest) and, for the invoices, in the billing
database, where finalization and numbering happen; where a final invoice changed, the close
issues an adjustment or credit note (billing_pipelines.invoicing.adjustments).
"""

from __future__ import annotations

from contextlib import suppress

from datetime import date, timedelta

import polars as pl
import pyarrow as pa

from billing_pipelines import billing_db, duck
from billing_pipelines.close import MonthClose, advise_tiers, close_month
from billing_pipelines.ingest.pipeline import BILLED, LandingZone, billed_events_sql
from billing_pipelines.invoicing.adjustments import issue_adjustments
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA
from billing_pipelines.periods import add_months, month_key
from billing_pipelines.resources import BillingSettings

DATASET = "month_close"


def partition(month: date) -> str:
    return f"month={month_key(month)}"


def billed_history(settings: BillingSettings, month: date) -> pl.DataFrame:
    """Every billed event whose billing month can be `month` or earlier (SPEC §2), with every
    landing date ingested first where it is missing or stale."""
    next_month = add_months(month.replace(day=1), 1)
    return billed_events(settings, before=next_month, landed_before=next_month + timedelta(days=settings.grace_days))


def billed_events(settings: BillingSettings, before: date, landed_before: date | None = None,
                  since: date | None = None) -> pl.DataFrame:
    """Billed events with `since` <= ts < `before` that landed before `landed_before`."""
    zone = LandingZone(settings)
    dates = [date.fromisoformat(p[3:]) for p in zone.warehouse.partitions(BILLED)]
    where = f"ts < TIMESTAMP '{before.isoformat()}'"
    if since is not None:
        where += f" AND ts >= TIMESTAMP '{since.isoformat()}'"
    frames = [pl.DataFrame(schema=BILLED_EVENT_SCHEMA)]
    con = duck.connect(settings.scratch_dir())
    try:
        for day in [d for d in dates if landed_before is None or d < landed_before]:
            # one landing date at a time: joining every event with its fields at once needs memory
            # in proportion to all of history
            with suppress(LookupError):
                query = billed_events_sql(con, zone, [day])
                frames.append(con.sql(f"SELECT {', '.join(BILLED_EVENT_SCHEMA)} FROM ({query}) WHERE {where}").pl())
    finally:
        con.close()
    return pl.concat([f.cast(BILLED_EVENT_SCHEMA) for f in frames]).sort("request_id")


def run_month_close(settings: BillingSettings, month: date) -> MonthClose:
    """Close `month` from the full history and store everything it produced."""
    config = settings.billing_config()
    history = billed_history(settings, month)
    result = close_month(config, history, month, settings.grace_days)
    store_month_close(settings, result, advise_tiers(config, history, result, settings.grace_days))
    engine = billing_db.engine_from_url(settings.database_url)
    billing_db.sync_config(engine, config)
    billing_db.store_grants(engine, month_key(month), result.grants)
    billing_db.store_draft_invoices(engine, month_key(month), result.invoices)
    issue_adjustments(settings, month, result.invoices)
    return result


def store_month_close(settings: BillingSettings, result: MonthClose, advisor: dict) -> None:
    con = duck.connect(settings.scratch_dir())
    try:
        con.register("allocations_arrow", result.allocations.to_arrow())
        con.register("grants_arrow", _grants_table(result))
        settings.warehouse().commit(
            DATASET, partition(result.month), con,
            {"allocations": "SELECT * FROM allocations_arrow ORDER BY ALL", "grants": "SELECT * FROM grants_arrow ORDER BY grant_id"},
            {
                "month": month_key(result.month),
                "credit_summaries": {o: s.as_dict() for o, s in sorted(result.credit_summaries.items())},
                "invoices": result.invoices,
                "invoice_usage": result.invoice_usage,
                "margin": result.margin,
                "advisor": advisor,
            },
        )
    finally:
        con.close()


def _grants_table(result: MonthClose) -> pa.Table:
    rows = result.grants
    return pa.table({
        "grant_id": [g.grant_id for g in rows],
        "org_id": [g.org_id for g in rows],
        "kind": [g.kind for g in rows],
        "start": [g.start for g in rows],
        "expiry": [g.expiry for g in rows],
        "credits": pa.array([g.credits for g in rows], pa.int64()),
        "unit_price": [str(g.unit_price) for g in rows],
        "origin": [g.origin for g in rows],
        "consumed": pa.array([g.consumed for g in rows], pa.int64()),
        "expired": pa.array([g.expired for g in rows], pa.int64()),
        "rolled_over": pa.array([g.rolled_over for g in rows], pa.int64()),
    })


def stored_month_close(settings: BillingSettings, month: date) -> dict:
    """The JSON documents of a closed month; a clear error where it was never closed."""
    manifest = settings.warehouse().manifest(DATASET, partition(month))
    if manifest is None:
        raise LookupError(f"{month_key(month)} is not closed yet: run `billing close-month {month_key(month)}`")
    return manifest["meta"]
