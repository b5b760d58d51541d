"""Credit grants (SPEC §3): plan, purchase and rollover grants, each with a start, an exclusive
expiry and an exact unit price. Times are naive datetimes meaning UTC, like the events' `ts`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from fractions import Fraction

from billing_pipelines.config import CreditPurchase, Plan, PlanPeriod
from billing_pipelines.ledger.subscriptions import prorated_credits, prorated_fee, whole_month
from billing_pipelines.periods import add_months, month_key

# Consumption order among grants with the same expiry and start (SPEC §3).
KIND_ORDER = {"rollover": 0, "plan": 1, "purchase": 2}


@dataclass
class Grant:
    """One grant and what happened to its credits so far (consumed, expired, rolled over)."""

    grant_id: str
    org_id: str
    kind: str
    start: datetime
    expiry: datetime
    credits: int
    unit_price: Fraction
    origin: str  # plan month (plan, rollover) or purchase_id
    consumed: int = 0
    expired: int = 0
    rolled_over: int = 0

    @property
    def priority(self) -> tuple:
        """Sort key of SPEC §3: earliest expiry, earliest start, kind, id."""
        return (self.expiry, self.start, KIND_ORDER[self.kind], self.grant_id)

    @property
    def left(self) -> int:
        """Credits not consumed, expired or rolled over."""
        return self.credits - self.consumed - self.expired - self.rolled_over


def utc_naive(moment: datetime) -> datetime:
    """An aware time as a naive UTC datetime (naive input is taken as UTC already)."""
    if moment.tzinfo is None:
        return moment
    return moment.astimezone(UTC).replace(tzinfo=None)


def month_instant(month: date) -> datetime:
    """First instant of `month` as a naive UTC datetime."""
    return datetime(month.year, month.month, 1)


def purchases_by_org(purchases: tuple[CreditPurchase, ...]) -> dict[str, list[CreditPurchase]]:
    """Each customer's purchases, in (purchased_at, purchase_id) order."""
    grouped: dict[str, list[CreditPurchase]] = {}
    for p in sorted(purchases, key=lambda p: (p.purchased_at, p.purchase_id)):
        grouped.setdefault(p.org_id, []).append(p)
    return grouped


def plan_grant(org_id: str, period: PlanPeriod) -> Grant:
    """The plan grant of a plan period (SPEC §3, §7): its prorated credits from the period's first
    instant to the next month's, at its prorated fee per credit. Its origin (and id) is the month
    where the period is the whole month, else the period's first day."""
    month = period.start.replace(day=1)
    credits = prorated_credits(period)
    fee = prorated_fee(period)
    origin = month_key(month) if whole_month(period) else period.start.isoformat()
    return Grant(
        grant_id=f"plan:{org_id}:{origin}",
        org_id=org_id,
        kind="plan",
        start=datetime.combine(period.start, datetime.min.time()),
        expiry=add_months(month_instant(month), 1),
        credits=credits,
        unit_price=fee / credits if fee and credits else Fraction(0),
        origin=origin,
    )


def purchase_grant(purchase: CreditPurchase) -> Grant:
    """A purchase grant: its credits from purchased_at for expires_after_months months."""
    start = utc_naive(purchase.purchased_at)
    return Grant(
        grant_id=f"purchase:{purchase.purchase_id}",
        org_id=purchase.org_id,
        kind="purchase",
        start=start,
        expiry=add_months(start, purchase.expires_after_months),
        credits=purchase.credits,
        unit_price=Fraction(purchase.price) / purchase.credits,
        origin=purchase.purchase_id,
    )


def rollover_grant(source: Grant, plan: Plan, credits: int) -> Grant:
    """The rollover of a plan grant's unused credits, starting at the source's expiry, for the
    rollover months of `plan` (the plan of the source month's last day)."""
    return Grant(
        grant_id=f"rollover:{source.org_id}:{source.origin}",
        org_id=source.org_id,
        kind="rollover",
        start=source.expiry,
        expiry=add_months(source.expiry, plan.rollover_expires_after_months),
        credits=credits,
        unit_price=source.unit_price,
        origin=source.origin,
    )

