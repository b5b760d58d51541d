"""Usage of a billing month, summed once per (customer, model, action tier) so that every report
(invoice usage, margin and its splits) reads small frames: credits and exact COGS of the events,
and the revenue their credits recognized at their grants' unit prices (SPEC §5)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import polars as pl

USAGE_KEYS = ["org_id", "model", "action"]


def usage_summary(events: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """Credits and exact cost_usd of `events` per (org_id, model, action)."""
    totals = events.lazy().group_by(USAGE_KEYS).agg(pl.col("credits").sum(), pl.col("cost_usd").sum())
    return totals.collect()


def revenue_shares(allocations: pl.DataFrame) -> pl.DataFrame:
    """Per (org_id, model, action, unit_price_den): the sum of credits x unit_price_num, so that
    revenue = numerator / unit_price_den exactly."""
    numerator = (pl.col("credits").cast(pl.Int128) * pl.col("unit_price_num")).sum()
    return allocations.group_by(USAGE_KEYS + ["unit_price_den"]).agg(numerator.alias("numerator"))


def usage_totals(summary: pl.DataFrame, by: str | None = None) -> dict[tuple, tuple[int, Decimal]]:
    """{(org_id[, by value]): (credits, exact cost_usd)} from a usage_summary."""
    keys = ["org_id"] + ([by] if by else [])
    totals = summary.group_by(keys).agg(pl.col("credits").sum(), pl.col("cost_usd").sum())
    return {tuple(row[:-2]): (row[-2], row[-1]) for row in totals.iter_rows()}


def recognized_revenue(shares: pl.DataFrame, by: str | None = None) -> dict[tuple, Fraction]:
    """{(org_id[, by value]): exact revenue} from revenue_shares."""
    keys = ["org_id"] + ([by] if by else [])
    grouped = shares.group_by(keys + ["unit_price_den"]).agg(pl.col("numerator").sum())
    revenue: dict[tuple, Fraction] = {}
    for row in grouped.iter_rows():
        key, share = tuple(row[:-2]), Fraction(row[-1], row[-2])
        revenue[key] = revenue[key] + share if key in revenue else share
    return revenue
