"""The month close without Dagster: what its assets run, in order (tests, benchmarks)."""

from __future__ import annotations

from datetime import date

from billing_pipelines.ingest.pipeline import LandingZone
from billing_pipelines.month_close.chain import months_to_close
from billing_pipelines.month_close.documents import ClosedMonth, close_documents, stored_month_close
from billing_pipelines.month_close.ledger import close_ledger_shard
from billing_pipelines.month_close.usage import collect_month_usage, pin_landing_dates
from billing_pipelines.partitions import close_shard_count
from billing_pipelines.resources import BillingSettings


def close_months(settings: BillingSettings, month: date, shards: int | None = None) -> ClosedMonth:
    """Close `month`, after every earlier month whose close is missing or out of date, in order;
    returns the documents of `month` (as stored where its close was up to date already)."""
    config, shards = settings.billing_config(), shards or close_shard_count()
    for each in months_to_close(settings.warehouse(), config, month.replace(day=1), shards, settings.grace_days):
        zone = LandingZone(settings, config)
        pin_landing_dates(zone, each, settings.grace_days)
        for shard in range(shards):
            collect_month_usage(zone, each, shard, shards)
            close_ledger_shard(settings, config, each, shard, shards)
        close_documents(settings, config, each, shards)
    return ClosedMonth.from_json(stored_month_close(settings.warehouse(), month))
