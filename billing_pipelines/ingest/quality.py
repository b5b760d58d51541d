"""What a landing date's checks decide: its files landed (a date with none is a missing data drop
unless it is a known gap), and it quarantined no unusual share of its rows."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from billing_pipelines.periods import parse_date_ranges


def known_gaps(text: str) -> set[date]:
    """BILLING_KNOWN_GAPS: dates and FROM..TO ranges, comma-separated, on which no files land."""
    return set(parse_date_ranges([spec for spec in text.split(",") if spec.strip()]))


def quarantine_limit(text: str) -> Decimal:
    """BILLING_QUARANTINE_LIMIT: the share of a date's rows above which its quarantine is unusual."""
    try:
        limit = Decimal(text)
    except ArithmeticError as exc:
        raise ValueError(f"BILLING_QUARANTINE_LIMIT must be a share between 0 and 1, got {text!r}") from exc
    if not Decimal(0) <= limit <= Decimal(1):
        raise ValueError(f"BILLING_QUARANTINE_LIMIT must be a share between 0 and 1, got {text!r}")
    return limit


def missing_drop(day: date, files: int, gaps: set[date]) -> str | None:
    """Why `day` fails for lack of files, None where it has some or is a known gap."""
    if files or day in gaps:
        return None
    return f"no event file landed on {day}; add it to BILLING_KNOWN_GAPS if none is coming"


def quarantined_share(rows_read: int, quarantined: int) -> Decimal:
    return (Decimal(quarantined) / Decimal(rows_read)).quantize(Decimal("0.0001")) if rows_read else Decimal(0)
