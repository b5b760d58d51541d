"""Dagster partitions: landing dates (daily), billing months and the customer shards of a close.

A billing month's partition is the span of landing dates whose events it takes in (SPEC §2):
from the end of the previous month's grace period to the end of its own. Partition "2026-11"
with 3 grace days covers landing dates 2026-11-04 to 2026-12-03 and ends, at 2026-12-04 00:00
UTC, exactly when November closes; its events billed in December (timestamps of December that
landed before November closed) are handed over to December's partition.

Billing months start with a lead-in month, the month before the first customer's start month:
nobody is billed in it, but its partition takes in the landing dates before the first month's
partition begins (events of the first month that landed on its first days) and hands them
over, so they are billed like every later month's early events. Where none landed then, the
close chain starts at the first customer's month (month_close.usage.first_billing_month).
"""

from __future__ import annotations

import os
import warnings
import zlib
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from billing_pipelines.config import BillingConfig, ConfigError, load_config
from billing_pipelines.periods import add_months
from billing_pipelines.storage.objects import Store

CUSTOMER_BUCKETS = 256  # org_id -> bucket (stable); a shard of N holds the buckets b with b % N == shard


def first_day() -> date:
    """The first landing date: BILLING_FIRST_DAY, else the first date folder of the landing zone
    (one listing of its top level), else the first billing month's first day."""
    if os.environ.get("BILLING_FIRST_DAY"):
        return date.fromisoformat(os.environ["BILLING_FIRST_DAY"])
    return first_landed_date(os.environ.get("BILLING_LANDING", "data/landing")) or first_month()


def first_month() -> date:
    """The first billing month, the lead-in month of the config (lead_in_month); a month closes
    from the one before, back to this one."""
    try:
        return lead_in_month(load_config(os.environ.get("BILLING_CONFIG", "config")))
    except (ConfigError, ValueError):
        return date(2026, 1, 1)


def lead_in_month(config: BillingConfig) -> date:
    """The month before the earliest customer's start month: the first billing month (see above)."""
    return add_months(min(c.start_date for c in config.customers.values()).replace(day=1), -1)


def first_landed_date(landing: str) -> date | None:
    """The earliest `dt=YYYY-MM-DD` folder of the landing zone, None where there is none."""
    try:
        folders = Store(landing).list_dirs()
    except OSError:
        return None
    days = []
    for name in folders:
        try:
            days.append(date.fromisoformat(name.removeprefix("dt=")))
        except ValueError:
            continue
    return min(days, default=None)


def grace_days() -> int:
    return int(os.environ.get("BILLING_GRACE_DAYS", "3"))


def close_shard_count() -> int:
    """BILLING_CLOSE_SHARDS: how many customer shards (Dagster runs) close one month (default 1)."""
    value = os.environ.get("BILLING_CLOSE_SHARDS", "1")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"BILLING_CLOSE_SHARDS must be a whole number >= 1, got {value!r}")
    return int(value)


def customer_bucket(org_id: str) -> int:
    """The customer's bucket, the same on every machine and release (CRC-32 of the org_id)."""
    return zlib.crc32(org_id.encode()) % CUSTOMER_BUCKETS


def shard_buckets(shard: int, shards: int) -> list[int]:
    return [b for b in range(CUSTOMER_BUCKETS) if b % shards == shard]


def month_window(month: date, grace: int) -> tuple[date, date]:
    """[first, last) landing dates of the billing month `month` (its partition's time window)."""
    start = month.replace(day=1) + timedelta(days=grace)
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start, following + timedelta(days=grace)


_FIRST_MONTH = first_month()
# Landing dates from the first one up to today (UTC), billing months up to the one landing dates go
# into now: Dagster evaluates both when asked, so they follow the calendar without a reload.
landing_dates = dg.DailyPartitionsDefinition(start_date=first_day().isoformat(), end_offset=1)
billing_months = dg.MonthlyPartitionsDefinition(
    start_date=datetime(_FIRST_MONTH.year, _FIRST_MONTH.month, 1, tzinfo=UTC) + timedelta(days=grace_days()),
    day_offset=grace_days() + 1, fmt="%Y-%m", end_offset=1,
)
close_shards = dg.StaticPartitionsDefinition([str(i) for i in range(close_shard_count())])
month_shards = dg.MultiPartitionsDefinition({"month": billing_months, "shard": close_shards})


def partition_check(name: str, asset: str, partitions_def: dg.PartitionsDefinition, description: str | None = None,
                    blocking: bool = False) -> dg.AssetCheckSpec:
    """A check of one partition of `asset`: its results are recorded, and shown, by partition."""
    with warnings.catch_warnings():  # partitioned checks are a Dagster preview
        warnings.simplefilter("ignore", dg.PreviewWarning)
        return dg.AssetCheckSpec(name, asset=asset, blocking=blocking, description=description,
                                 partitions_def=partitions_def)
