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
from pydantic import BaseModel

from billing_pipelines.money import DOCUMENT, Cost, Count, Name, PerCredit, round_half_up
from billing_pipelines.storage import duck
from billing_pipelines.storage.duck import Sql

PERCENTILES = ("median", "p90", "p99")  # the nearest ranks of 1/2, 9/10 and 99/100 (tier_stats.sql)
PLACES = 6




class TierAdvice(BaseModel):
    """One action tier: its events, credits and COGS, the nearest-rank cost per credit, and the
    credits an event would need to meet the target (None without revenue per credit)."""

    model_config = DOCUMENT
    action: Name
    events: Count
    credits: Count
    cogs_usd: Cost
    tier_credits: Count | None
    credits_needed_for_target: Count | None
    cost_per_credit_median: PerCredit
    cost_per_credit_p90: PerCredit
    cost_per_credit_p99: PerCredit


class ModelCost(BaseModel):
    """One model's credits, COGS and cost per credit over the month."""

    model_config = DOCUMENT
    model: Name
    credits: Count
    cogs_usd: Cost
    cost_per_credit: PerCredit | None


class TierAdvisor(BaseModel):
    """The advisor of a month: revenue per consumed credit, and its tiers and models by name."""

    model_config = DOCUMENT
    revenue_per_credit: PerCredit | None
    by_action: list[TierAdvice]
    by_model: list[ModelCost]

    def to_json(self) -> dict:
        return self.model_dump(mode="json")


def tier_advice(
    con: duckdb.DuckDBPyConnection, events: str, usage_revenue: Fraction, target_ratio: Decimal,
    tier_credits: dict[str, int],
) -> TierAdvisor:
    """The advisor over the month's events (the DuckDB query `events`, all customers) whose
    credits recognized `usage_revenue` in total."""
    consumed = con.execute(f"SELECT coalesce(sum(credits), 0) FROM ({events})").fetchone()[0]
    per_credit = usage_revenue / consumed if consumed else None
    stats = con.execute(duck.render("margin/tier_stats.sql", events=Sql(events)))
    columns = [c[0] for c in stats.description]
    actions = stats.fetchall()
    models = con.execute(f"SELECT model, sum(credits), sum(cost_usd) FROM ({events}) GROUP BY 1 ORDER BY 1").fetchall()
    return TierAdvisor(
        revenue_per_credit=round_half_up(per_credit, PLACES) if per_credit is not None else None,
        by_action=[_action_row(dict(zip(columns, row)), per_credit, Fraction(target_ratio), tier_credits.get(row[0]))
                   for row in actions],
        by_model=[ModelCost(model=model, credits=int(credits), cogs_usd=round_half_up(cost, 4),
                            cost_per_credit=round_half_up(Fraction(cost) / int(credits), PLACES) if credits else None)
                  for model, credits, cost in models],
    )


def _action_row(stats: dict, per_credit: Fraction | None, target: Fraction, credits_now: int | None) -> TierAdvice:
    cost = Fraction(stats["cost_usd"])
    needed = None
    if per_credit:
        needed = max(1, math.ceil(target * cost / stats["events"] / per_credit))
    percentiles = {f"cost_per_credit_{name}": round_half_up(Fraction(stats[f"{name}_cost"]) / stats[f"{name}_credits"],
                                                            PLACES) for name in PERCENTILES}
    return TierAdvice(action=stats["action"], events=int(stats["events"]), credits=int(stats["credits"]),
                      cogs_usd=round_half_up(cost, 4), tier_credits=credits_now, credits_needed_for_target=needed,
                      **percentiles)
