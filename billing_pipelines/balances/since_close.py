"""What a live balance starts from: the last closed month's snapshot of a customer's grants, and
the events billed since (what that month handed over, and the billed usage of every landing date
after its partition), so a micro-batch never reads the whole history."""

from __future__ import annotations

from datetime import date, timedelta

import pyarrow as pa

from billing_pipelines.balances.balances import Snapshot
from billing_pipelines.config import BillingConfig
from billing_pipelines.ingest.landing import partition_name
from billing_pipelines.ingest.pipeline import BILLED, LandingZone, billed_events_sql
from billing_pipelines.ledger.consumption import opening_grants
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA
from billing_pipelines.month_close.documents import MONTH_CLOSE
from billing_pipelines.month_close.documents import partition as close_partition
from billing_pipelines.month_close.ledger import stored_grants
from billing_pipelines.month_close.usage import EVENTS, MONTH_USAGE, no_events_sql, usage_partitions
from billing_pipelines.partitions import close_shard_count, customer_bucket, month_window
from billing_pipelines.periods import add_months
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import duck

LOOK_BACK_MONTHS = 3  # a month closes a few days after it ends: the last close is at most this far back


def last_snapshot(settings: BillingSettings, config: BillingConfig, orgs: set[str], today: date) -> Snapshot:
    """The grants `orgs` closed the latest closed month before `today`'s with (none closed: an
    empty snapshot, and balances start from each customer's start)."""
    wh, month = settings.warehouse(), today.replace(day=1)
    for back in range(1, LOOK_BACK_MONTHS + 1):
        closed = add_months(month, -back)
        manifest = wh.manifest(MONTH_CLOSE, close_partition(closed))
        if manifest is not None:
            grants = [g for g in stored_grants(wh, closed, close_shard_count()) if g.org_id in orgs]
            customers = [o for o in manifest["meta"]["credit_summaries"] if o in orgs]
            return Snapshot(closed, opening_grants(closed, customers, grants))
    return Snapshot(None, {})


def billed_since(con, settings: BillingSettings, config: BillingConfig, snapshot: Snapshot, orgs: set[str]) -> str:
    """A query of the events of `orgs` billed after the snapshot's month (all of them where none
    is closed), in BILLED_EVENT_SCHEMA columns."""
    wh, zone = settings.warehouse(), LandingZone(settings, config)
    con.register("balance_orgs", pa.table({"org_id": pa.array(sorted(orgs), pa.string())}))
    columns = ", ".join(BILLED_EVENT_SCHEMA)
    if snapshot.month is None:
        days = [date.fromisoformat(p[3:]) for p in wh.partitions(BILLED)]
        handed = []
    else:
        first, _ = month_window(add_months(snapshot.month, 1), settings.grace_days)
        days = [d for d in (first + timedelta(days=n) for n in range((date.today() - first).days + 2))
                if wh.manifest(BILLED, partition_name(d))]
        held = usage_partitions(snapshot.month, close_shard_count(), [customer_bucket(o) for o in orgs])
        events = wh.relation(con, wh.file_paths(MONTH_USAGE, EVENTS, held))
        handed = [f"SELECT {columns} FROM {events} WHERE billing_month > {duck.literal(snapshot.month)}"]
    selects = [f"SELECT {columns} FROM ({billed_events_sql(con, zone, [d])})" for d in days] + handed
    if not selects:
        return f"SELECT {columns} FROM ({no_events_sql()})"
    return f"SELECT * FROM ({' UNION ALL '.join(selects)}) SEMI JOIN balance_orgs USING (org_id)"
