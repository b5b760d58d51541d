"""Usage of a billing month summed per customer and per model or action tier: credits, exact COGS,
and the revenue its credits recognized at their grants' unit prices (SPEC §5)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import polars as pl


def usage_totals(events: pl.DataFrame, by: str | None = None) -> dict[tuple, tuple[int, Decimal]]:
    """{(org_id[, by value]): (credits, exact cost_usd)} of `events`."""
    keys = ["org_id"] + ([by] if by else [])
    totals = events.group_by(keys).agg(pl.col("credits").sum(), pl.col("cost_usd").sum())
    return {tuple(row[:-2]): (row[-2], row[-1]) for row in totals.iter_rows()}


def recognized_revenue(allocations: pl.DataFrame, by: str | None = None) -> dict[tuple, Fraction]:
    """{(org_id[, by value]): exact revenue} of the allocations, each credit at its unit price."""
    keys = ["org_id"] + ([by] if by else [])
    shares = allocations.group_by(keys + ["unit_price_num", "unit_price_den"]).agg(
        pl.col("credits").sum()
    )
    revenue: dict[tuple, Fraction] = {}
    for row in shares.iter_rows():
        key, (num, den, credits) = tuple(row[:-3]), row[-3:]
        revenue[key] = revenue.get(key, Fraction(0)) + Fraction(credits * num, den)
    return revenue
