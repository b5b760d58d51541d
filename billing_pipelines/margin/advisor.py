"""Credit-tier advisor (issue 5): is each action tier's credit count aligned with its cost?

Per action tier: the distribution of cost per credit over its events (median, p90, p99 by nearest
rank) and the credits one event of the tier would need so that, at the month's average revenue
per consumed credit, its average event meets the target credit-to-cost ratio. Per model: cost
per credit. Exact values, rounded only in the output (6 places for cost per credit).
"""

from __future__ import annotations

import math
from decimal import Decimal
from fractions import Fraction

import polars as pl

from billing_pipelines.money import money

PERCENTILES = {"median": Fraction(1, 2), "p90": Fraction(9, 10), "p99": Fraction(99, 100)}
PLACES = 6


def tier_advice(
    events: pl.DataFrame, usage_revenue: Fraction, target_ratio: Decimal, tier_credits: dict[str, int]
) -> dict:
    """{"revenue_per_credit", "by_action": [...], "by_model": [...]} for the month's `events`
    (all customers) whose credits recognized `usage_revenue` in total."""
    consumed = int(events["credits"].sum() or 0)
    per_credit = usage_revenue / consumed if consumed else None
    return {
        "revenue_per_credit": money(per_credit, PLACES) if per_credit is not None else None,
        "by_action": [
            _action_row(row, per_credit, Fraction(target_ratio), tier_credits.get(row["action"]))
            for row in _action_stats(events)
        ],
        "by_model": [
            {
                "model": model,
                "credits": credits,
                "cogs_usd": money(cost, 4),
                "cost_per_credit": money(Fraction(cost) / credits, PLACES) if credits else None,
            }
            for model, credits, cost in events.group_by("model")
            .agg(pl.col("credits").sum(), pl.col("cost_usd").sum())
            .sort("model")
            .iter_rows()
        ],
    }


def _action_stats(events: pl.DataFrame) -> list[dict]:
    """Per action: events, credits, COGS and the (cost, credits) of the percentile events."""
    ranked = events.filter(pl.col("credits") > 0).with_columns(
        per_credit=pl.col("cost_usd").cast(pl.Decimal(38, 20)) / pl.col("credits")
    )
    picks = []
    for name, share in PERCENTILES.items():
        count = pl.len().cast(pl.Int64)
        index = (count * share.numerator + share.denominator - 1) // share.denominator - 1
        picks += [
            pl.col("cost_usd").sort_by("per_credit").get(index).alias(f"{name}_cost"),
            pl.col("credits").sort_by("per_credit").get(index).alias(f"{name}_credits"),
        ]
    stats = ranked.group_by("action").agg(
        pl.len().alias("events"), pl.col("credits").sum(), pl.col("cost_usd").sum(), *picks
    )
    return stats.sort("action").to_dicts()


def _action_row(stats: dict, per_credit: Fraction | None, target: Fraction, credits_now: int | None) -> dict:
    cost = Fraction(stats["cost_usd"])
    needed = None
    if per_credit:
        needed = max(1, math.ceil(target * cost / stats["events"] / per_credit))
    row = {
        "action": stats["action"],
        "events": stats["events"],
        "credits": stats["credits"],
        "cogs_usd": money(cost, 4),
        "tier_credits": credits_now,
        "credits_needed_for_target": needed,
    }
    for name in PERCENTILES:
        row[f"cost_per_credit_{name}"] = money(
            Fraction(stats[f"{name}_cost"]) / stats[f"{name}_credits"], PLACES
        )
    return row
