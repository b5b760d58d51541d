"""A customer's plans over time as the ledger and the invoices use them (SPEC §7): the plan periods
of each month with their prorated fee and credits, and the end of the subscription."""

from __future__ import annotations

import calendar
import dataclasses
import functools
from dataclasses import dataclass
from datetime import date, datetime
from fractions import Fraction

from billing_pipelines.config import BillingConfig, Plan, PlanChange, PlanPeriod


def month_days(day: date) -> int:
    """D: the number of days of the month of `day`."""
    return calendar.monthrange(day.year, day.month)[1]


def whole_month(period: PlanPeriod) -> bool:
    return period.days == month_days(period.start)


def prorated_fee(period: PlanPeriod) -> Fraction:
    """monthly_fee x d / D, exact."""
    return _prorated(period.plan, period.days, month_days(period.start))[0]


def prorated_credits(period: PlanPeriod) -> int:
    """round(included_credits x d / D), half up, to an integer."""
    return _prorated(period.plan, period.days, month_days(period.start))[1]


@functools.lru_cache(maxsize=4096)
def _prorated(plan: Plan, days: int, month: int) -> tuple[Fraction, int]:
    """(fee, credits) of `days` of a month of `month` days on `plan` (all of it non-negative);
    cached, as a close asks for the same ones for every customer."""
    return Fraction(plan.monthly_fee) * days / month, (2 * plan.included_credits * days + month) // (2 * month)


@dataclass(frozen=True)
class Subscription:
    """One customer's plan periods by month (for the months a ledger walks), the first instant
    without a subscription (its cancellation, naive UTC, or None) and the plan in effect last."""

    org_id: str
    periods: dict[date, list[PlanPeriod]]
    end: datetime | None
    last_plan: Plan

    def ended_by(self, moment: datetime) -> bool:
        """Whether the subscription has ended at `moment`."""
        return self.end is not None and moment >= self.end

    def period_at(self, moment: datetime) -> PlanPeriod | None:
        """The plan period of `moment`, None after the cancellation."""
        day = moment.date()
        return next((p for p in self.periods[day.replace(day=1)] if p.start <= day < p.end), None)

    def last_day_plan(self, month: date) -> Plan:
        """The plan of `month`'s last day (whose rollover rules apply at the next month's start)."""
        return self.periods[month][-1].plan


def changes_by_org(config: BillingConfig) -> dict[str, tuple[PlanChange, ...]]:
    """The config's plan changes grouped by customer."""
    grouped: dict[str, list[PlanChange]] = {}
    for change in config.plan_changes:
        grouped.setdefault(change.org_id, []).append(change)
    return {org_id: tuple(changes) for org_id, changes in grouped.items()}


def subscription_of(
    config: BillingConfig, org_id: str, months: list[date], changes: tuple[PlanChange, ...]
) -> Subscription:
    """The customer's Subscription over `months` (first days); `changes` are its plan changes
    (changes_by_org), so the config's look-ups scan those alone."""
    own = config if len(changes) == len(config.plan_changes) else dataclasses.replace(config, plan_changes=changes)
    end = own.cancelled_on(org_id)
    return Subscription(
        org_id=org_id,
        periods={month: own.plan_periods(org_id, month) for month in months},
        end=None if end is None else datetime.combine(end, datetime.min.time()),
        last_plan=own.last_plan(org_id),
    )
