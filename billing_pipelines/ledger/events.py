"""Billed events on the ledger's clock: billing month and ledger time (SPEC §2)."""

from __future__ import annotations

import polars as pl

BILLED_EVENT_SCHEMA = {
    "request_id": pl.Utf8,
    "org_id": pl.Utf8,
    "user_id": pl.Utf8,
    "ts": pl.Datetime("us"),
    "landing_date": pl.Date,
    "model": pl.Utf8,
    "action": pl.Utf8,
    "input_tokens": pl.Int64,
    "output_tokens": pl.Int64,
    "latency_ms": pl.Int64,
    "cost_usd": pl.Decimal(38, 12),
    "credits": pl.Int64,
}


def check_billed_events(events: pl.DataFrame) -> None:
    """Raise a clear ValueError where `events` does not have the billed-events columns."""
    for name, dtype in BILLED_EVENT_SCHEMA.items():
        if name not in events.schema:
            raise ValueError(f"billed events: column {name!r} is missing")
        if events.schema[name] != dtype:
            raise ValueError(f"billed events: column {name!r} is {events.schema[name]}, expected {dtype}")


def with_ledger_time(events: pl.DataFrame, grace_days: int) -> pl.DataFrame:
    """Add `billing_month` (first day, Date) and `ledger_time`: the later of the ts month and the
    first month not closed on the landing date; late usage happens at its month's first instant."""
    if isinstance(grace_days, bool) or not isinstance(grace_days, int) or not 0 <= grace_days <= 27:
        raise ValueError(f"grace_days must be an integer from 0 to 27, got {grace_days!r}")
    check_billed_events(events)
    landing_month = pl.col("landing_date").dt.month_start()
    first_open = (
        pl.when(pl.col("landing_date").dt.day() <= grace_days)
        .then(landing_month.dt.offset_by("-1mo"))
        .otherwise(landing_month)
    )
    billing_month = pl.max_horizontal(pl.col("ts").dt.date().dt.month_start(), first_open)
    return events.with_columns(billing_month=billing_month).with_columns(
        ledger_time=pl.max_horizontal(pl.col("ts"), pl.col("billing_month").cast(pl.Datetime("us")))
    )
