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

import duckdb

from billing_pipelines import paths
from billing_pipelines.money import money

PERCENTILES = ("median", "p90", "p99")  # the nearest ranks of 1/2, 9/10 and 99/100 (tier_stats.sql)
PLACES = 6


def tier_advice(
    con: duckdb.DuckDBPyConnection, events: str, usage_revenue: Fraction, target_ratio: Decimal,
    tier_credits: dict[str, int],
) -> dict:
    """{"revenue_per_credit", "by_action": [...], "by_model": [...]} for the month's events (the
    DuckDB query `events`, all customers) whose credits recognized `usage_revenue` in total."""
    consumed = con.execute(f"SELECT coalesce(sum(credits), 0) FROM ({events})").fetchone()[0]
    per_credit = usage_revenue / consumed if consumed else None
    stats = con.execute(paths.sql("margin/tier_stats.sql").format(events=events))
    columns = [c[0] for c in stats.description]
    actions = stats.fetchall()
    models = con.execute(f"SELECT model, sum(credits), sum(cost_usd) FROM ({events}) GROUP BY 1 ORDER BY 1").fetchall()
    return {
        "revenue_per_credit": money(per_credit, PLACES) if per_credit is not None else None,
        "by_action": [
            _action_row(dict(zip(columns, row)), per_credit, Fraction(target_ratio), tier_credits.get(row[0]))
            for row in actions
        ],
        "by_model": [
            {
                "model": model,
                "credits": int(credits),
                "cogs_usd": money(cost, 4),
                "cost_per_credit": money(Fraction(cost) / int(credits), PLACES) if credits else None,
            }
            for model, credits, cost in models
        ],
    }


def _action_row(stats: dict, per_credit: Fraction | None, target: Fraction, credits_now: int | None) -> dict:
    cost = Fraction(stats["cost_usd"])
    needed = None
    if per_credit:
        needed = max(1, math.ceil(target * cost / stats["events"] / per_credit))
    row = {
        "action": stats["action"],
        "events": int(stats["events"]),
        "credits": int(stats["credits"]),
        "cogs_usd": money(cost, 4),
        "tier_credits": credits_now,
        "credits_needed_for_target": needed,
    }
    for name in PERCENTILES:
        row[f"cost_per_credit_{name}"] = money(
            Fraction(stats[f"{name}_cost"]) / stats[f"{name}_credits"], PLACES
        )
    return row
