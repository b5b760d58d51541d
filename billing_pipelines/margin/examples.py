"""Synthetic stored month closes of any size, for the margin report's benchmark and tests of a
large customer base. Figures are internally consistent (SPEC §5-6 via `customer_margin`)."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal
from fractions import Fraction

from billing_pipelines.config import BillingConfig, Customer, Plan, PriceBook, RateLimits
from billing_pipelines.margin.report import ModelMargin, customer_margin
from billing_pipelines.money import round_half_up
from billing_pipelines.periods import add_months, month_key

TARGET = Decimal("3.0")
PLANS = {"free": Fraction(0), "pro": Fraction(4900), "enterprise": Fraction(200000)}  # fee in cents
MODELS = ("balanced-medium", "embed-v3", "frontier-large", "small-fast")
ACTIONS = {"complex": 5, "document": 1, "embedding": 1, "simple": 1}


def example_config(customers: int) -> BillingConfig:
    """A price book with the 3.0 target, the plans of PLANS and `customers` customers org-0000,
    org-0001, ..."""
    plans = list(PLANS)
    limits = RateLimits(1, 1, Decimal(1), 0)
    return BillingConfig(
        price_book=PriceBook("USD", TARGET, (), ()),
        plans={name: Plan(name, Decimal(int(fee)).scaleb(-2), 0, None, 0, 1, limits) for name, fee in PLANS.items()},
        customers={
            f"org-{i:04d}": Customer(f"org-{i:04d}", f"Customer {i:04d} Ltd", plans[i % 3], date(2025, 1, 1))
            for i in range(customers)
        },
        purchases=(),
    )


def example_closes(config: BillingConfig, last: date, months: int, seed: int = 7) -> list[dict]:
    """`months` stored month-close documents ending with `last`, oldest first."""
    rng = random.Random(seed)
    return [_close(config, add_months(last, n - months + 1), rng) for n in range(months)]


def _close(config: BillingConfig, month: date, rng: random.Random) -> dict:
    margin, expired = [], {}
    for org_id, customer in sorted(config.customers.items()):
        fee = PLANS[customer.plan] / 100
        usage = fee * Fraction(rng.randint(20, 100), 100)
        breakage = fee - usage if rng.random() < 0.5 else Fraction(0)
        # usage revenue over COGS mostly 2x..20x; free customers cost a little and earn nothing
        ratio = Fraction(rng.randint(20, 200), 10)
        cogs = Decimal(int(usage / ratio * 10_000) or rng.randint(1, 30_000)).scaleb(-4)
        by_model = [ModelMargin(model=m, credits=1, revenue=Decimal("0.00"), cogs_usd=round_half_up(cogs / 4, 4))
                    for m in MODELS]
        margin.append(customer_margin(org_id, month, usage, breakage, cogs, TARGET, by_model).to_json())
        expired[org_id] = {"expired": int(breakage * 100)}
    return {"month": month_key(month), "margin": margin, "invoices": [], "credit_summaries": expired,
            "advisor": _advisor(rng)}


def _advisor(rng: random.Random) -> dict:
    def cost() -> str:
        return f"{Decimal(rng.randint(10, 9000)).scaleb(-6):.6f}"

    tiers = []
    for action, credits in ACTIONS.items():
        low, mid, high = sorted(cost() for _ in range(3))
        events = rng.randint(1000, 90000)
        tiers.append({"action": action, "events": events, "credits": events * credits, "cogs_usd": "10.0000",
                      "tier_credits": credits, "credits_needed_for_target": rng.randint(1, 6),
                      "cost_per_credit_median": low, "cost_per_credit_p90": mid, "cost_per_credit_p99": high})
    models = [{"model": m, "credits": 1000, "cogs_usd": "1.0000", "cost_per_credit": cost()} for m in MODELS]
    return {"revenue_per_credit": "0.008000", "by_action": tiers, "by_model": models}
