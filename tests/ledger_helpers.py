"""Small hand-made configs and billed events for the ledger, invoice and margin tests."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import polars as pl

from billing_pipelines.config import (
    ActionTier,
    BillingConfig,
    CreditPurchase,
    Customer,
    ModelRate,
    Plan,
    PlanChange,
    PriceBook,
    RateLimits,
)
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA
from billing_pipelines.month_close.checks import conservation_problems, invoice_total_problems, negative_grant_problems

PRICE_BOOK = PriceBook(
    currency="USD",
    target_credit_to_cost_ratio=Decimal("3.0"),
    models=(
        ModelRate("big", date(2026, 1, 1), Decimal("0.003"), Decimal("0.015")),
        ModelRate("small", date(2026, 1, 1), Decimal("0.0001"), Decimal("0.0004")),
    ),
    actions=(ActionTier("simple", 1), ActionTier("complex", 5)),
)
LIMITS = RateLimits(10, 100, Decimal(2), 60)


def plan(name="pro", fee="49.00", included=5000, overage="0.0120", rollover_max=0, rollover_months=1) -> Plan:
    return Plan(
        plan=name,
        monthly_fee=Decimal(fee),
        included_credits=included,
        overage_credit_price=None if overage is None else Decimal(overage),
        rollover_max_credits=rollover_max,
        rollover_expires_after_months=rollover_months,
        rate_limits=LIMITS,
    )


def purchase(purchase_id, at, credits, price, months=12, org_id="acme") -> CreditPurchase:
    return CreditPurchase(purchase_id, org_id, utc(at), credits, Decimal(price), months)


def config(
    the_plan: Plan, start="2026-10-01", tax="0", purchases=(), extra_customers=(), other_plans=(), changes=(),
) -> BillingConfig:
    """acme on `the_plan` from `start`, with `extra_customers`, `other_plans` to change to and
    `changes` (PlanChange entries, see change())."""
    customers = [Customer("acme", "Acme", the_plan.plan, date.fromisoformat(start), Decimal(tax))]
    customers += list(extra_customers)
    return BillingConfig(
        price_book=PRICE_BOOK,
        plans={p.plan: p for p in (the_plan, *other_plans)},
        customers={c.org_id: c for c in customers},
        purchases=tuple(purchases),
        plan_changes=tuple(changes),
    )


def change(day: str, plan_name: str | None, org_id: str = "acme") -> PlanChange:
    """A change to `plan_name` (None: a cancellation) from 00:00 UTC of `day`."""
    return PlanChange(org_id, date.fromisoformat(day), plan_name)


def utc(text: str) -> datetime:
    """'2026-10-05T10:00' (UTC) as an aware datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def events(*rows) -> pl.DataFrame:
    """Billed events from (request_id, ts, credits[, landing_date[, cost[, model[, action[, org]]]]]);
    the landing date defaults to the ts date, cost to 0.001 USD, model big, action simple."""
    records = []
    for row in rows:
        rid, ts, credits, landing, cost, model, action, org = (
            list(row) + [None, "0.001", "big", "simple", "acme"][len(row) - 3:]
        )
        moment = datetime.fromisoformat(ts)
        records.append({
            "request_id": rid, "org_id": org, "user_id": "u1", "ts": moment,
            "landing_date": date.fromisoformat(landing) if landing else moment.date(),
            "model": model, "action": action, "input_tokens": 10, "output_tokens": 10,
            "latency_ms": 100, "cost_usd": Decimal(cost), "credits": credits,
        })
    return pl.DataFrame(records, schema=BILLED_EVENT_SCHEMA, orient="row")


def credits_of(close, org_id="acme") -> dict:
    return close.credit_summaries[org_id].as_dict()


def shares(close, request_id) -> list[tuple[str, str, int]]:
    """(grant_kind, grant_id, credits) of one event's allocations, in consumption order."""
    rows = close.allocations.filter(pl.col("request_id") == request_id)
    return list(rows.select("grant_kind", "grant_id", "credits").iter_rows())


def lines(close, org_id="acme") -> list[tuple[str, str]]:
    invoice = next(i.to_json() for i in close.invoices if i.org_id == org_id)
    return [(line["kind"], line["amount"]) for line in invoice["lines"]]


def assert_consistent(close) -> None:
    assert conservation_problems(close.credit_summaries) == []
    assert invoice_total_problems(close.invoices) == []
    assert negative_grant_problems(close.grants) == []
