"""Which months to close: a month closes from the month before, so closing month M first closes,
in order, every earlier month whose close is missing or out of date.

A month's close is current when its collection still matches the billed usage of its landing
dates and the collection of the month before, each shard's ledger matches that collection, the
shard's previous close and the part of the config its customers see, and its documents match
its shards. These are manifest reads (a few dozen a month), no data is read.
"""

from __future__ import annotations

from datetime import date, timedelta

from billing_pipelines.config import BillingConfig
from billing_pipelines.ingest.landing import partition_name
from billing_pipelines.ingest.pipeline import BILLED
from billing_pipelines.month_close.documents import MONTH_CLOSE
from billing_pipelines.month_close.documents import partition as documents_partition
from billing_pipelines.month_close.ledger import CREDIT_LEDGER, ledger_config_digest, shard_orgs, shard_partition
from billing_pipelines.month_close.usage import MONTH_USAGE
from billing_pipelines.month_close.usage import partition as usage_partition
from billing_pipelines.partitions import month_window
from billing_pipelines.periods import add_months
from billing_pipelines.storage.warehouse import Warehouse, manifest_version


def months_to_close(wh: Warehouse, config: BillingConfig, month: date, shards: int, grace_days: int) -> list[date]:
    """The months from the earliest one whose close is missing or out of date up to `month`."""
    first = min((c.start_date.replace(day=1) for c in config.customers.values()), default=month)
    months, at = [], first
    while at <= month:
        months.append(at)
        at = add_months(at, 1)
    stale = next((m for m in months if not _current(wh, config, m, shards, grace_days)), month)
    return [m for m in months if m >= stale] or [month]


def drafts_are_stale(wh: Warehouse, config: BillingConfig, month: date, shards: int, grace_days: int) -> bool:
    """Whether the month's close, which made its drafts, is out of date (usage, the config or a
    shard's ledger changed since). Documents stored other than by a close (no shards) are not."""
    documents = wh.manifest(MONTH_CLOSE, documents_partition(month))
    return (documents is not None and "shards" in documents["meta"]
            and not _current(wh, config, month, shards, grace_days))


def _current(wh: Warehouse, config: BillingConfig, month: date, shards: int, grace_days: int) -> bool:
    usage = wh.manifest(MONTH_USAGE, usage_partition(month))
    documents = wh.manifest(MONTH_CLOSE, documents_partition(month))
    if usage is None or documents is None:
        return False
    meta = usage["meta"]
    earlier = wh.manifest(MONTH_USAGE, usage_partition(add_months(month, -1)))
    if meta["previous"] != (manifest_version(earlier) if earlier else None):
        return False
    first, end = month_window(month, grace_days)
    for day in (first + timedelta(days=n) for n in range((end - first).days)):
        billed = wh.manifest(BILLED, partition_name(day))
        if (manifest_version(billed) if billed else None) != meta["landing_dates"].get(day.isoformat()):
            return False
    parts = [wh.manifest(CREDIT_LEDGER, shard_partition(month, s, shards)) for s in range(shards)]
    if any(p is None for p in parts) or documents["meta"]["shards"] != [manifest_version(p) for p in parts]:
        return False
    return all(_shard_current(wh, config, month, s, shards, p, manifest_version(usage)) for s, p in enumerate(parts))


def _shard_current(wh: Warehouse, config: BillingConfig, month: date, shard: int, shards: int, part: dict,
                   usage_version: str) -> bool:
    earlier = wh.manifest(CREDIT_LEDGER, shard_partition(add_months(month, -1), shard, shards))
    meta = part["meta"]
    return (meta["month_usage"] == usage_version
            and meta["previous"] == (manifest_version(earlier) if earlier else None)
            and meta["config"] == ledger_config_digest(config, month, shard_orgs(config, shard, shards)))
