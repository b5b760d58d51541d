"""Billing calendar: months, calendar-month arithmetic and the billing-month rule (SPEC §2)."""

from __future__ import annotations

import calendar
from datetime import UTC, date, datetime, time, timedelta


def month_key(day: date) -> str:
    """'YYYY-MM' of a date or datetime."""
    return f"{day.year:04d}-{day.month:02d}"


def parse_month(key: str) -> date:
    """First day of the month 'YYYY-MM'; a clear ValueError otherwise."""
    try:
        year, month = key.split("-")
        return date(int(year), int(month), 1)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a month (YYYY-MM): {key!r}") from exc


def add_months(moment: datetime | date, months: int) -> datetime | date:
    """Same day and time `months` calendar months later, clamped to the month's last day."""
    index = moment.year * 12 + moment.month - 1 + months
    year, month = divmod(index, 12)
    day = min(moment.day, calendar.monthrange(year, month + 1)[1])
    return moment.replace(year=year, month=month + 1, day=day)


def month_start(month: date) -> datetime:
    """The first instant (UTC) of the month containing `month`."""
    return datetime.combine(month.replace(day=1), time(), tzinfo=UTC)


def first_open_month(landing_date: date, grace_days: int) -> date:
    """First month not yet closed on `landing_date`: month M closes at the end of day
    `grace_days` of M+1."""
    this_month = landing_date.replace(day=1)
    return add_months(this_month, -1) if landing_date.day <= grace_days else this_month


def billing_month(ts: datetime, landing_date: date, grace_days: int) -> date:
    """SPEC §2: the later of the event's own month and the first open month at landing."""
    return max(ts.date().replace(day=1), first_open_month(landing_date, grace_days))


def parse_date_ranges(specs: list[str]) -> list[date]:
    """`2026-11-03` and `2026-11-01..2026-11-30` into a sorted list of distinct dates; a clear
    ValueError for anything else."""
    days: set[date] = set()
    for spec in (s.strip() for s in specs):
        try:
            first, _, last = spec.partition("..")
            start, end = date.fromisoformat(first), date.fromisoformat(last or first)
        except ValueError as exc:
            raise ValueError(f"not a date or FROM..TO range: {spec!r}") from exc
        if end < start:
            raise ValueError(f"empty range {spec!r} (TO is before FROM)")
        days.update(start + timedelta(n) for n in range((end - start).days + 1))
    return sorted(days)
