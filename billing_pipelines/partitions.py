"""Dagster partitions: landing dates (daily) and billing months (monthly)."""

from __future__ import annotations

import calendar
import os
from datetime import date

import dagster as dg

from billing_pipelines.config import ConfigError, load_config


def first_day() -> date:
    """BILLING_FIRST_DAY, else the first day of the earliest customer's start month."""
    if os.environ.get("BILLING_FIRST_DAY"):
        return date.fromisoformat(os.environ["BILLING_FIRST_DAY"])
    try:
        config = load_config(os.environ.get("BILLING_CONFIG", "config"))
        return min(c.start_date for c in config.customers.values()).replace(day=1)
    except (ConfigError, ValueError):
        return date(2026, 1, 1)


def _days_left_in_month(today: date) -> int:
    return calendar.monthrange(today.year, today.month)[1] - today.day


_START = first_day()
# Landing dates up to the end of the current month, billing months up to the current one, so a
# month can be closed and a test landing zone of this month ingested.
landing_dates = dg.DailyPartitionsDefinition(
    start_date=_START.isoformat(), end_offset=_days_left_in_month(date.today()) + 1
)
billing_months = dg.MonthlyPartitionsDefinition(start_date=_START.replace(day=1).isoformat(), end_offset=1)
