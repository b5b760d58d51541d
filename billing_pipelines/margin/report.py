"""Margin per customer and month (SPEC §5), exact until the final rounding, as typed rows
(`MarginRow`) whose `to_json()` is the SPEC §6 object."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction
from typing import Annotated

import polars as pl
from pydantic import BaseModel, Strict, TypeAdapter

from billing_pipelines.config import BillingConfig
from billing_pipelines.ledger.consumption import expiry_month
from billing_pipelines.ledger.grants import Grant
from billing_pipelines.ledger.usage import recognized_revenue, usage_totals
from billing_pipelines.money import DOCUMENT, Cost, Count, Money, MonthKey, Name, money, round_half_up
from billing_pipelines.periods import month_key


class ModelMargin(BaseModel):
    """A customer's credits, usage revenue and COGS on one model."""

    model_config = DOCUMENT
    model: Name
    credits: Count
    revenue: Money
    cogs_usd: Cost


class ActionMargin(BaseModel):
    """A customer's credits, usage revenue and COGS on one action tier."""

    model_config = DOCUMENT
    action: Name
    credits: Count
    revenue: Money
    cogs_usd: Cost


class MarginRow(BaseModel):
    """One customer's margin of a month (SPEC §5-6); by_model and by_action sorted by name."""

    model_config = DOCUMENT
    org_id: Name
    month: MonthKey
    revenue: Money
    breakage: Money
    cogs_usd: Cost
    gross_margin: Money
    margin_pct: Money | None
    credit_to_cost_ratio: Money | None
    below_target: Annotated[bool, Strict()]
    by_model: list[ModelMargin] = []
    by_action: list[ActionMargin] = []

    def to_json(self) -> dict:
        """The SPEC §6 margin object."""
        return self.model_dump(mode="json")


DOCUMENTS = TypeAdapter(list[MarginRow])


def stored_margin(rows: list[dict]) -> list[MarginRow]:
    """Margin rows as stored (a month close's document), validated."""
    return DOCUMENTS.validate_python(rows)


def breakage_by_org(grants: list[Grant], month: date) -> dict[str, Fraction]:
    """Expired credits x their grant's unit price, for grants whose expiry falls in `month`."""
    breakage: dict[str, Fraction] = {}
    for grant in grants:
        if grant.expired and expiry_month(grant.expiry) == month:
            breakage[grant.org_id] = breakage.get(grant.org_id, Fraction(0)) + grant.expired * grant.unit_price
    return breakage


def customer_margin(
    org_id: str, month: date, usage_revenue: Fraction, breakage: Fraction, cogs: Decimal,
    target_ratio: Decimal, by_model: list[ModelMargin] = (), by_action: list[ActionMargin] = (),
) -> MarginRow:
    """The margin of one customer (SPEC §5-6), with its by_model and by_action splits."""
    revenue, cost = usage_revenue + breakage, Fraction(cogs)
    ratio = revenue / cost if cost else None
    return MarginRow(
        org_id=org_id,
        month=month_key(month),
        revenue=round_half_up(revenue, 2),
        breakage=round_half_up(breakage, 2),
        cogs_usd=round_half_up(cost, 4),
        gross_margin=round_half_up(revenue - cost, 2),
        margin_pct=round_half_up((revenue - cost) * 100 / revenue, 2) if revenue else None,
        credit_to_cost_ratio=round_half_up(ratio, 2) if ratio is not None else None,
        below_target=ratio is not None and ratio < Fraction(target_ratio),
        by_model=list(by_model),
        by_action=list(by_action),
    )


def margin_report(
    org_ids: list[str], month: date, usage: pl.DataFrame, shares: pl.DataFrame,
    grants: list[Grant], target_ratio: Decimal,
) -> list[MarginRow]:
    """Margin rows sorted by org_id, from the month's usage_summary and revenue_shares and the
    grants as of the month's close."""
    revenue, cogs = recognized_revenue(shares), usage_totals(usage)
    breakage = breakage_by_org(grants, month)
    by_model, by_action = _split(usage, shares, "model", ModelMargin), _split(usage, shares, "action", ActionMargin)
    return [customer_margin(org_id, month, revenue.get((org_id,), Fraction(0)), breakage.get(org_id, Fraction(0)),
                            cogs.get((org_id,), (0, Decimal(0)))[1], target_ratio,
                            by_model.get(org_id, []), by_action.get(org_id, []))
            for org_id in sorted(org_ids)]


def _split(usage: pl.DataFrame, shares: pl.DataFrame, field: str, row: type[BaseModel]) -> dict[str, list]:
    """Per customer, one `row` per `field` value sorted by name: credits, usage revenue, COGS."""
    revenue = recognized_revenue(shares, field)
    rows: dict[str, list] = {}
    for (org_id, name), (credits, cost) in sorted(usage_totals(usage, field).items()):
        rows.setdefault(org_id, []).append(row(**{field: name}, credits=credits, cogs_usd=round_half_up(cost, 4),
                                               revenue=round_half_up(revenue.get((org_id, name), Fraction(0)), 2)))
    return rows


@dataclass(frozen=True)
class MonthPlanChange:
    """One plan change of the month, against the plan of the day before it (`to` None: a
    cancellation, moving to a fee of 0)."""

    org_id: str
    effective_from: date
    before: str
    to: str | None
    fee_difference: Decimal


@dataclass(frozen=True)
class PlanChanges:
    """A month's plan changes (SPEC §7) in (effective_from, org_id) order: the customers who moved
    to a plan with a higher or a lower monthly_fee or cancelled, and the fees' net difference."""

    changes: tuple[MonthPlanChange, ...]

    def _customers(self, moved) -> tuple[str, ...]:
        return tuple(sorted({c.org_id for c in self.changes if moved(c)}))

    @property
    def upgraded(self) -> tuple[str, ...]:
        return self._customers(lambda c: c.to is not None and c.fee_difference > 0)

    @property
    def downgraded(self) -> tuple[str, ...]:
        return self._customers(lambda c: c.to is not None and c.fee_difference < 0)

    @property
    def cancelled(self) -> tuple[str, ...]:
        return self._customers(lambda c: c.to is None)

    @property
    def fee_difference(self) -> Decimal:
        return sum((c.fee_difference for c in self.changes), Decimal(0))

    def as_metadata(self) -> dict[str, int | str]:
        """Counts of customers and the net fee difference, for the Dagster UI."""
        return {"customers_upgraded": len(self.upgraded), "customers_downgraded": len(self.downgraded),
                "customers_cancelled": len(self.cancelled), "monthly_fee_difference": money(self.fee_difference)}


def plan_changes_in(config: BillingConfig, month: date) -> PlanChanges:
    """The plan changes effective in `month`."""
    rows = []
    for change in sorted(config.plan_changes, key=lambda c: (c.effective_from, c.org_id)):
        if change.effective_from.replace(day=1) != month.replace(day=1):
            continue
        before = config.plan_on(change.org_id, change.effective_from - timedelta(days=1))
        after = Decimal(0) if change.plan is None else config.plans[change.plan].monthly_fee
        rows.append(MonthPlanChange(change.org_id, change.effective_from, before.plan, change.plan,
                                    after - before.monthly_fee))
    return PlanChanges(tuple(rows))
