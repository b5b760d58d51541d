"""Current balances from the credit ledger (pure: no I/O).

The balance of a customer at instant `at` is the ledger of `at`'s month (SPEC §3, run by
`run_ledger` from the last closed month's snapshot, month by month, or from the customer's start
where no month is closed, so consumption order, expiry and rollover are the ledger's own):
the credits left in every grant active at `at` (start <= at < expiry), the month's consumption
and overage, and its usage by model and action tier, with the plan in effect at `at` (SPEC §7;
after a cancellation, the last plan, whose price bills late usage). At the first instant of month M+1, the
grants other than M+1's plan grant hold exactly the closing balance of M's invoice.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal

import polars as pl

from billing_pipelines.config import BillingConfig, Plan
from billing_pipelines.invoicing.document import month_name
from billing_pipelines.invoicing.drafts import overage_lines
from billing_pipelines.ledger.consumption import PeriodOverage, opening_grants, run_ledger
from billing_pipelines.ledger.events import with_ledger_time
from billing_pipelines.ledger.grants import Grant, utc_naive
from billing_pipelines.money import money
from billing_pipelines.periods import add_months, month_key, parse_month


@dataclass(frozen=True)
class GrantBalance:
    grant_id: str
    kind: str
    start: datetime
    expiry: datetime
    credits: int
    credits_left: int


@dataclass(frozen=True)
class UsageLine:
    model: str
    action: str
    requests: int
    credits: int


@dataclass(frozen=True)
class DailyUsage:
    day: date
    model: str
    action: str
    requests: int
    credits: int


@dataclass(frozen=True)
class Balance:
    """One customer's balance at `at` (naive UTC), for the month of `at`."""

    org_id: str
    month: str
    plan: str
    currency: str
    grants: list[GrantBalance]
    consumed_credits: int
    overage_credits: int
    overage_amount: str | None
    usage: list[UsageLine]
    as_of: datetime | None
    daily: list[DailyUsage] = field(default_factory=list)  # the months after the snapshot's

    @property
    def credits_left(self) -> int:
        return sum(g.credits_left for g in self.grants)


@dataclass(frozen=True)
class Snapshot:
    """The grants each customer closed `month` with (its opening of the next month); `month`
    None: no month closed yet."""

    month: date | None
    opening: dict[str, list[Grant]]


def current_balances(
    config: BillingConfig, history: pl.DataFrame, orgs: set[str], at: datetime, grace_days: int,
    snapshot: Snapshot = Snapshot(None, {}),
) -> dict[str, Balance]:
    """The balance at `at` of each customer of `orgs` billed by then, from the `snapshot` and
    `history` (the billed events since, BILLED_EVENT_SCHEMA, any customers)."""
    at = utc_naive(at)
    month = at.date().replace(day=1)
    scoped = config.only(orgs)
    events = with_ledger_time(history.filter(pl.col("org_id").is_in(list(scoped.customers))), grace_days)
    ledger = _ledger_at(scoped, events, month, snapshot)
    this_month = events.filter(pl.col("billing_month") == month)
    usage = _usage_lines(this_month)
    daily = _daily_usage(events)
    newest = dict(events.group_by("org_id").agg(pl.col("ts").max()).iter_rows())
    balances = {}
    for org_id, summaries in ledger.summaries.items():
        plan = scoped.plan_on(org_id, at.date()) or scoped.last_plan(org_id)
        summary = summaries[month]
        balances[org_id] = Balance(
            org_id=org_id,
            month=month_key(month),
            plan=plan.plan,
            currency=config.price_book.currency,
            grants=[_grant_balance(g) for g in ledger.grants if g.org_id == org_id and g.start <= at < g.expiry],
            consumed_credits=summary.consumed,
            overage_credits=summary.overage,
            overage_amount=_overage_amount(plan, ledger.overage[org_id]),
            usage=usage.get(org_id, []),
            as_of=newest.get(org_id),
            daily=daily.get(org_id, []),
        )
    return balances


def _ledger_at(config: BillingConfig, events: pl.DataFrame, month: date, snapshot: Snapshot):
    """The ledger of `month`, walked month by month from the snapshot's (or from the start)."""
    if snapshot.month is None:
        return run_ledger(config, events, month)
    opening, at = snapshot.opening, add_months(snapshot.month, 1)
    while at < month:
        walked = run_ledger(config, events, at, opening)
        opening = opening_grants(at, list(walked.summaries), walked.grants)
        at = add_months(at, 1)
    return run_ledger(config, events, month, opening)


def _overage_amount(plan: Plan, overage: list[PeriodOverage]) -> str | None:
    """The month's overage lines summed, as the invoice will bill them (each period at its plan's
    price); None where the plan now bills no overage and no line is billed."""
    lines = overage_lines(overage)
    if not lines and plan.overage_credit_price is None:
        return None
    return money(sum((line.amount for line in lines), Decimal(0)))


def grant_description(kind: str, grant_id: str, start: datetime) -> str:
    """What a grant is, in the customer's words: 'Plan credits of December 2026', 'Rolled over
    from November 2026', 'Credit pack p-1001' (from the ids of ledger.grants)."""
    if kind == "purchase":
        return f"Credit pack {grant_id.removeprefix('purchase:')}"
    if kind == "rollover":
        return f"Rolled over from {month_name(parse_month(grant_id.rsplit(':', 1)[1]))}"
    return f"Plan credits of {month_name(start.date())}"


def _grant_balance(grant) -> GrantBalance:
    """Credits left in a grant still active: the ledger may already have expired it at the end of
    the month, but until its expiry only consumption draws on it."""
    return GrantBalance(grant.grant_id, grant.kind, grant.start, grant.expiry, grant.credits,
                        grant.credits - grant.consumed)


def _daily_usage(events: pl.DataFrame) -> dict[str, list[DailyUsage]]:
    """Usage by the day each event is billed on: its own, or the first day of its billing month
    for a late event billed in a later month than its timestamp's."""
    day = pl.max_horizontal(pl.col("ts").dt.date(), pl.col("billing_month")).alias("day")
    totals = events.group_by("org_id", day, "model", "action").agg(
        requests=pl.len(), credits=pl.col("credits").sum()
    ).sort("org_id", "day", "model", "action")
    daily: dict[str, list[DailyUsage]] = {}
    for org_id, *row in totals.iter_rows():
        daily.setdefault(org_id, []).append(DailyUsage(*row))
    return daily


def _usage_lines(events: pl.DataFrame) -> dict[str, list[UsageLine]]:
    totals = events.group_by("org_id", "model", "action").agg(
        requests=pl.len(), credits=pl.col("credits").sum()
    ).sort("org_id", "model", "action")
    lines: dict[str, list[UsageLine]] = {}
    for org_id, model, action, requests, credits in totals.iter_rows():
        lines.setdefault(org_id, []).append(UsageLine(model, action, requests, credits))
    return lines
