"""The draft invoice of one customer and month (SPEC §4) as the JSON object of SPEC §6, and the
usage by model and action tier that its PDF shows."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from fractions import Fraction

from billing_pipelines.config import BillingConfig, CreditPurchase, Plan
from billing_pipelines.ledger.consumption import CreditSummary
from billing_pipelines.ledger.grants import utc_naive
from billing_pipelines.ledger.usage import usage_totals
from billing_pipelines.money import money, rate_text, round_half_up
from billing_pipelines.periods import month_key


def draft_invoice(
    config: BillingConfig, org_id: str, month: date, credits: CreditSummary, cogs_usd: Decimal,
    purchases: list[CreditPurchase],
) -> dict:
    """The invoice JSON object of SPEC §6 (status draft, no number); `purchases` are the
    customer's credit purchases (those made in `month` are billed)."""
    customer, plan = config.customers[org_id], config.plan_of(org_id)
    lines = [_plan_fee_line(plan, month)]
    lines += [_purchase_line(p) for p in purchases if _month_of(p.purchased_at) == month]
    if credits.overage > 0 and plan.overage_credit_price is not None:
        lines.append(_overage_line(credits.overage, plan.overage_credit_price))
    subtotal = sum((Decimal(line["amount"]) for line in lines), Decimal("0.00"))
    tax = round_half_up(Fraction(subtotal) * Fraction(customer.tax_rate), 2)
    return {
        "org_id": org_id,
        "month": month_key(month),
        "status": "draft",
        "number": None,
        "currency": config.price_book.currency,
        "lines": lines,
        "subtotal": money(subtotal),
        "tax": money(tax),
        "total": money(subtotal + tax),
        "cogs_usd": money(cogs_usd, 4),
        "credits": credits.as_dict(),
    }


def _month_of(moment) -> date:
    return utc_naive(moment).date().replace(day=1)


def _line(kind: str, description: str, quantity: int, unit_price: str, amount: Decimal) -> dict:
    return {
        "kind": kind,
        "description": description,
        "quantity": str(quantity),
        "unit_price": unit_price,
        "amount": money(amount),
    }


def _plan_fee_line(plan: Plan, month: date) -> dict:
    description = f"{plan.plan.capitalize()} plan, {month:%B %Y}"
    return _line("plan_fee", description, 1, money(plan.monthly_fee), plan.monthly_fee)


def _purchase_line(purchase: CreditPurchase) -> dict:
    description = f"Credit purchase {purchase.purchase_id}: {purchase.credits:,} credits"
    return _line("credit_purchase", description, 1, money(purchase.price), purchase.price)


def _overage_line(overage: int, price: Decimal) -> dict:
    """Overage credits at the plan's price per credit (shown with the price's own decimals)."""
    amount = round_half_up(overage * price, 2)
    return _line("overage", f"Overage: {overage:,} credits", overage, rate_text(price), amount)


def invoice_usage(summary) -> dict[str, dict]:
    """Per customer, the month's usage by model and by action tier (credits, cost_usd text),
    sorted by name, for the invoice PDF; `summary` is the month's usage_summary."""
    usage: dict[str, dict] = {}
    for field in ("model", "action"):
        for (org_id, name), (credits, cost) in sorted(usage_totals(summary, field).items()):
            rows = usage.setdefault(org_id, {"by_model": [], "by_action": []})[f"by_{field}"]
            rows.append({field: name, "credits": credits, "cost_usd": money(cost, 4)})
    return usage
