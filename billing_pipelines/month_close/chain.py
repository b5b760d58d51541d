"""Which months to close: a month closes from the month before, so closing month M first closes,
in order, every earlier month whose close is missing or out of date.

A month's close is current when its pinned landing dates still match their billed usage, each
shard's collection matches that pin and the shard's collection of the month before, each
shard's ledger matches that collection, the shard's previous close and the part of the config
its customers see, and its documents match its shards. These are manifest reads (a few dozen a month), no data is read.
"""

from __future__ import annotations

from datetime import date

from billing_pipelines.config import BillingConfig
from billing_pipelines.month_close.documents import MONTH_CLOSE
from billing_pipelines.month_close.documents import partition as documents_partition
from billing_pipelines.month_close.ledger import CREDIT_LEDGER, ledger_config_digest
from billing_pipelines.month_close.usage import (
    MONTH_LANDING,
    MONTH_USAGE,
    first_billing_month,
    landing_dates,
    shard_orgs,
    shard_partition,
)
from billing_pipelines.month_close.usage import partition as usage_partition
from billing_pipelines.periods import add_months
from billing_pipelines.storage.warehouse import Warehouse, manifest_version


def months_to_close(wh: Warehouse, config: BillingConfig, month: date, shards: int, grace_days: int) -> list[date]:
    """The months from the earliest one whose close is missing or out of date up to `month`."""
    first = first_billing_month(wh, config, grace_days) if config.customers else month
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
    pinned = wh.manifest(MONTH_LANDING, usage_partition(month))
    documents = wh.manifest(MONTH_CLOSE, documents_partition(month))
    if pinned is None or documents is None or pinned["meta"]["landing_dates"] != landing_dates(wh, month, grace_days):
        return False
    parts = [wh.manifest(CREDIT_LEDGER, shard_partition(month, s, shards)) for s in range(shards)]
    if any(p is None for p in parts) or documents["meta"]["shards"] != [manifest_version(p) for p in parts]:
        return False
    return all(_shard_current(wh, config, month, s, shards, p, manifest_version(pinned)) for s, p in enumerate(parts))


def _shard_current(wh: Warehouse, config: BillingConfig, month: date, shard: int, shards: int, part: dict,
                   pinned: str) -> bool:
    """Whether the shard's collection matches the pinned dates and its collection of the month
    before, and its ledger that collection, its close of the month before and its config."""
    usage = wh.manifest(MONTH_USAGE, shard_partition(month, shard, shards))
    earlier = add_months(month, -1)
    usage_before = wh.manifest(MONTH_USAGE, shard_partition(earlier, shard, shards))
    ledger_before = wh.manifest(CREDIT_LEDGER, shard_partition(earlier, shard, shards))
    meta = part["meta"]
    return (usage is not None and usage["meta"]["landing"] == pinned
            and usage["meta"]["previous"] == (manifest_version(usage_before) if usage_before else None)
            and meta["month_usage"] == manifest_version(usage)
            and meta["previous"] == (manifest_version(ledger_before) if ledger_before else None)
            and meta["config"] == ledger_config_digest(config, month, shard_orgs(config, shard, shards)))
