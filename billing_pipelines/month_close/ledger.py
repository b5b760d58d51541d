"""The credit ledger of one customer shard of a month: `credit_ledger/month=YYYY-MM/shard=S-of-N/`.

A shard holds the customers whose bucket b (partitions.customer_bucket) has b % N == S. Its close
starts from the grants the same shard's close of the month before left alive (its snapshot) and
reads only the month's collected events of its buckets, a batch of buckets at a time, so memory
is bounded by the batch (BILLING_CLOSE_BATCH_EVENTS, default 2,000,000 events; a single customer
is never split) whatever the size of the month; each batch's allocations (a row per event) go
to a local file, sorted into the shard's from there. Customers are independent, so every figure is
the same for 1 and for N shards, and whatever the batches.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import replace
from datetime import date
from fractions import Fraction
from pathlib import Path

import pyarrow as pa

from billing_pipelines.config import BillingConfig
from billing_pipelines.ledger.consumption import opening_grants
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA
from billing_pipelines.ledger.grants import Grant
from billing_pipelines.ledger.usage import recognized_revenue
from billing_pipelines.month_close.compute import MonthClose, close_month
from billing_pipelines.month_close.errors import MonthCloseError
from billing_pipelines.month_close.usage import MONTH_USAGE, month_events_sql, shard_orgs, shard_partition
from billing_pipelines.partitions import customer_bucket, shard_buckets
from billing_pipelines.periods import add_months, month_key
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import duck
from billing_pipelines.storage.warehouse import Warehouse, manifest_version

CREDIT_LEDGER = "credit_ledger"


def batch_events() -> int:
    return int(os.environ.get("BILLING_CLOSE_BATCH_EVENTS", "2000000"))


def ledger_config_digest(config: BillingConfig, month: date, orgs: set[str]) -> str:
    """The config as the ledger of `orgs` sees it up to the end of `month`: their customer
    entries, the plans they can be on, their plan changes and purchases before the next month,
    the currency and the margin target."""
    end = add_months(month.replace(day=1), 1)
    customers = [config.customers[o] for o in sorted(orgs)]
    changes = [c for c in config.plan_changes if c.org_id in orgs and c.effective_from <= end]
    plans = {c.plan for c in customers} | {c.plan for c in changes if c.plan}
    purchases = [p for p in config.purchases if p.org_id in orgs and p.purchased_at.date() < end]
    book = config.price_book
    parts = (customers, sorted(changes, key=repr), [config.plans[p] for p in sorted(plans)],
             sorted(purchases, key=lambda p: p.purchase_id), book.currency, book.target_credit_to_cost_ratio,
             [(a.action, a.credits) for a in book.actions])
    return hashlib.sha256(repr(parts).encode()).hexdigest()


def close_ledger_shard(settings: BillingSettings, config: BillingConfig, month: date, shard: int, shards: int) -> dict:
    """Close `month` for the customers of `shard` of `shards` from the shard's collected events
    and commit it; returns the manifest."""
    month, wh = month.replace(day=1), settings.warehouse()
    usage = wh.manifest(MONTH_USAGE, shard_partition(month, shard, shards))
    if usage is None:
        raise MonthCloseError(f"{month_key(month)}: the events of shard {shard} of {shards} are not collected yet "
                              f"(asset month_usage): run `billing close-month {month_key(month)}`")
    orgs = shard_orgs(config, shard, shards)
    opening, previous = _opening(wh, config, month, shard, shards, orgs)
    con = duck.connect(settings.scratch_dir())
    try:
        batches = bucket_batches(shard_buckets(shard, shards), usage["meta"]["events_by_bucket"])
        with tempfile.TemporaryDirectory(dir=settings.scratch_dir()) as scratch:
            closes, parts = [], []
            for n, batch in enumerate(batches):
                close = _close_batch(con, wh, config, month, shards, batch, orgs, opening, settings.grace_days)
                parts.append(Path(scratch) / f"allocations-{n}.parquet")
                close.allocations.write_parquet(parts[-1])
                closes.append(replace(close, allocations=None))  # a row per event: on disk, not in memory
            meta = {"month": month_key(month), "shard": shard, "shards": shards, "customers": sorted(orgs),
                    "month_usage": manifest_version(usage), "previous": previous,
                    "config": ledger_config_digest(config, month, orgs), **_documents(closes)}
            return wh.commit(CREDIT_LEDGER, shard_partition(month, shard, shards), con,
                             _tables(con, closes, parts), meta)
    finally:
        con.close()


def _opening(wh: Warehouse, config: BillingConfig, month: date, shard: int, shards: int, orgs: set[str]):
    """The grants each customer of the shard closed the month before with, and the version of
    that close; an error where a customer started before `month` and it is missing."""
    earlier = add_months(month, -1)
    manifest = wh.manifest(CREDIT_LEDGER, shard_partition(earlier, shard, shards))
    if manifest is None:
        if any(config.customers[o].start_date < month for o in orgs):
            raise MonthCloseError(f"{month_key(month)} starts from the state {month_key(earlier)} closed with, which "
                                  f"is not closed yet: run `billing close-month {month_key(earlier)}`")
        return {}, None
    con = duck.connect()
    try:
        paths = wh.file_paths(CREDIT_LEDGER, "grants", [manifest_partition(manifest)])
        rows = con.sql(f"SELECT * FROM {wh.relation(con, paths)}")
        grants = [_grant(r) for r in rows.pl().iter_rows(named=True)]
    finally:
        con.close()
    return opening_grants(earlier, manifest["meta"]["customers"], grants), manifest_version(manifest)


def manifest_partition(manifest: dict) -> str:
    meta = manifest["meta"]
    return shard_partition(date.fromisoformat(f"{meta['month']}-01"), meta["shard"], meta["shards"])


def _grant(row: dict) -> Grant:
    return Grant(row["grant_id"], row["org_id"], row["kind"], row["start"], row["expiry"], row["credits"],
                 Fraction(row["unit_price"]), row["origin"], row["consumed"], row["expired"], row["rolled_over"])


def bucket_batches(buckets: list[int], counts: dict[str, int]) -> list[list[int]]:
    """`buckets` in batches of up to batch_events() collected events (a bucket is never split)."""
    batches, current, size = [], [], 0
    for bucket in buckets:
        events = counts.get(str(bucket), 0)
        if current and size + events > batch_events():
            batches.append(current)
            current, size = [], 0
        current.append(bucket)
        size += events
    return batches + [current]


def _close_batch(con, wh: Warehouse, config: BillingConfig, month: date, shards: int, buckets: list[int],
                 of_shard: set[str], opening: dict[str, list[Grant]], grace_days: int) -> MonthClose:
    """The close of the customers of `buckets` (of the shard's customers `of_shard`)."""
    orgs = {o for o in of_shard if customer_bucket(o) in set(buckets)}
    events = con.sql(month_events_sql(con, wh, month, shards, buckets)).pl().cast(BILLED_EVENT_SCHEMA)
    return close_month(config.only(orgs), events, month, grace_days,
                       opening={o: g for o, g in opening.items() if o in orgs})


def _documents(closes: list[MonthClose]) -> dict:
    """The shard's JSON documents: every customer's credit summary, invoice, usage and margin,
    and the revenue its consumed credits recognized (exact, for the tier advisor)."""
    revenue = sum((r for c in closes for r in recognized_revenue(c.revenue_shares).values()), Fraction(0))
    return {
        "usage_revenue": str(revenue),
        "credit_summaries": {o: s.as_dict() for c in closes for o, s in sorted(c.credit_summaries.items())},
        "invoices": [i.to_json() for i in sorted((i for c in closes for i in c.invoices), key=lambda i: i.org_id)],
        "invoice_usage": dict(sorted((o, u) for c in closes for o, u in c.invoice_usage.items())),
        "margin": [m.to_json() for m in sorted((m for c in closes for m in c.margin), key=lambda m: m.org_id)],
    }


def _tables(con, closes: list[MonthClose], allocations: list[Path]) -> dict[str, str]:
    """The shard's allocations (from the batches' files) and grants, each in a canonical order
    (the same for any batches)."""
    con.register("grants_frame", pa.concat_tables([grants_table(c.grants) for c in closes]))
    return {"allocations": f"SELECT * FROM read_parquet({duck.literal_list(allocations)}) ORDER BY ALL",
            "grants": "SELECT * FROM grants_frame ORDER BY grant_id"}


def grants_table(grants: list[Grant]) -> pa.Table:
    return pa.table({
        "grant_id": pa.array([g.grant_id for g in grants], pa.string()),
        "org_id": pa.array([g.org_id for g in grants], pa.string()),
        "kind": pa.array([g.kind for g in grants], pa.string()),
        "start": pa.array([g.start for g in grants], pa.timestamp("us")),
        "expiry": pa.array([g.expiry for g in grants], pa.timestamp("us")),
        "credits": pa.array([g.credits for g in grants], pa.int64()),
        "unit_price": pa.array([str(g.unit_price) for g in grants], pa.string()),
        "origin": pa.array([g.origin for g in grants], pa.string()),
        "consumed": pa.array([g.consumed for g in grants], pa.int64()),
        "expired": pa.array([g.expired for g in grants], pa.int64()),
        "rolled_over": pa.array([g.rolled_over for g in grants], pa.int64()),
    })


def stored_grants(wh: Warehouse, month: date, shards: int, only: int | None = None) -> list[Grant]:
    """Every grant of every shard's close of `month` (or of shard `only`)."""
    con = duck.connect()
    try:
        parts = [shard_partition(month, s, shards) for s in range(shards) if only is None or s == only]
        paths = wh.file_paths(CREDIT_LEDGER, "grants", parts)
        rows = con.sql(f"SELECT * FROM {wh.relation(con, paths)} ORDER BY grant_id").pl()
        return [_grant(r) for r in rows.iter_rows(named=True)]
    finally:
        con.close()

