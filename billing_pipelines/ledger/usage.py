"""Usage of a billing month, summed once per (customer, model, action tier) so that every report
(invoice usage, margin and its splits) reads small frames: credits and exact COGS of the events,
and the revenue their credits recognized at their grants' unit prices (SPEC §5)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

import polars as pl


@dataclass(frozen=True)
class UsageCodes:
    """One Int64 code per (customer, model, action tier): the month's sums group on it instead
    of on three text columns, and decode to text on the small result."""

    org_ids: list[str]
    models: list[str]
    actions: list[str]

    def expr(self) -> pl.Expr:
        """The code of each event (an unknown name fails the cast)."""
        org, model, action = (
            pl.col(name).cast(pl.Enum(names)).to_physical().cast(pl.Int64)
            for name, names in (("org_id", self.org_ids), ("model", self.models), ("action", self.actions))
        )
        return (org * len(self.models) + model) * len(self.actions) + action

    def decode(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`frame` with its `usage_code` column replaced by org_id, model and action."""
        code, n_models, n_actions = pl.col("usage_code"), len(self.models), len(self.actions)
        names = {
            "org_id": (code // (n_models * n_actions), self.org_ids),
            "model": (code // n_actions % n_models, self.models),
            "action": (code % n_actions, self.actions),
        }
        return frame.select(
            *(part.replace_strict(dict(enumerate(values)), return_dtype=pl.Utf8).alias(name)
              for name, (part, values) in names.items()),
            pl.exclude("usage_code"),
        )


def usage_summary(events: pl.DataFrame, codes: UsageCodes) -> pl.DataFrame:
    """Credits and exact cost_usd per (org_id, model, action) of events with a `usage_code`."""
    sums = events.group_by("usage_code").agg(pl.col("credits").sum(), pl.col("cost_usd").sum())
    return codes.decode(sums)


def revenue_shares(shares: pl.DataFrame, codes: UsageCodes) -> pl.DataFrame:
    """Per (org_id, model, action, unit_price_den): the sum of credits x unit_price_num, so that
    revenue = numerator / unit_price_den exactly; `shares` have usage_code, credits and prices."""
    numerator = (pl.col("credits").cast(pl.Int128) * pl.col("unit_price_num")).sum()
    return codes.decode(shares.group_by("usage_code", "unit_price_den").agg(numerator.alias("numerator")))


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
