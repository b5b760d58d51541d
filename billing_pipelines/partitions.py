"""Dagster partitions: landing dates (daily), billing months and the customer shards of a close.

A billing month's partition is the span of landing dates whose events it takes in (SPEC §2):
from the end of the previous month's grace period to the end of its own. Partition "2026-11"
with 3 grace days covers landing dates 2026-11-04 to 2026-12-03 and ends, at 2026-12-04 00:00
UTC, exactly when November closes; its events billed in December (timestamps of December that
landed before November closed) are handed over to December's partition.
"""

from __future__ import annotations

import calendar
import os
import zlib
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from billing_pipelines.config import ConfigError, load_config

CUSTOMER_BUCKETS = 256  # org_id -> bucket (stable); a shard of N holds the buckets b with b % N == shard


def first_day() -> date:
    """BILLING_FIRST_DAY, else the first day of the earliest customer's start month."""
    if os.environ.get("BILLING_FIRST_DAY"):
        return date.fromisoformat(os.environ["BILLING_FIRST_DAY"])
    try:
        config = load_config(os.environ.get("BILLING_CONFIG", "config"))
        return min(c.start_date for c in config.customers.values()).replace(day=1)
    except (ConfigError, ValueError):
        return date(2026, 1, 1)


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


def _days_left_in_month(today: date) -> int:
    return calendar.monthrange(today.year, today.month)[1] - today.day


def month_window(month: date, grace: int) -> tuple[date, date]:
    """[first, last) landing dates of the billing month `month` (its partition's time window)."""
    start = month.replace(day=1) + timedelta(days=grace)
    following = (month.replace(day=28) + timedelta(days=4)).replace(day=1)
    return start, following + timedelta(days=grace)


_START = first_day()
# Landing dates up to the end of the current month, billing months up to the current one, so a
# month can be closed and a test landing zone of this month ingested.
landing_dates = dg.DailyPartitionsDefinition(
    start_date=_START.isoformat(), end_offset=_days_left_in_month(date.today()) + 1
)
billing_months = dg.MonthlyPartitionsDefinition(
    start_date=datetime(_START.year, _START.month, 1, tzinfo=UTC) + timedelta(days=grace_days()),
    day_offset=grace_days() + 1, fmt="%Y-%m", end_offset=1,
)
close_shards = dg.StaticPartitionsDefinition([str(i) for i in range(close_shard_count())])
month_shards = dg.MultiPartitionsDefinition({"month": billing_months, "shard": close_shards})
