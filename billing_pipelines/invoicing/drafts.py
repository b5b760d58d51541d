"""The draft invoice of one customer and month (SPEC §4), typed (invoicing.models), and the
usage by model and action tier of the month."""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from fractions import Fraction

from billing_pipelines.config import BillingConfig, CreditPurchase, Plan, PlanPeriod
from billing_pipelines.invoicing.models import Invoice, InvoiceLine
from billing_pipelines.ledger.consumption import CreditSummary, PeriodOverage
from billing_pipelines.ledger.grants import utc_naive
from billing_pipelines.ledger.subscriptions import month_days, prorated_fee, whole_month
from billing_pipelines.ledger.usage import usage_totals
from billing_pipelines.money import money, rate, round_half_up
from billing_pipelines.periods import month_key


def draft_invoice(
    config: BillingConfig, org_id: str, month: date, credits: CreditSummary, cogs_usd: Decimal,
    purchases: list[CreditPurchase], overage: list[PeriodOverage],
) -> Invoice:
    """The draft invoice (no number); `purchases` are the
    customer's credit purchases (those made in `month` are billed), `overage` the month's
    overage by plan period (the ledger's)."""
    customer = config.customers[org_id]
    lines = [_plan_fee_line(p) for p in config.plan_periods(org_id, month)]
    lines += [_purchase_line(p) for p in purchases if _month_of(p.purchased_at) == month]
    lines += overage_lines(overage)
    subtotal = sum((line.amount for line in lines), Decimal("0.00"))
    tax = round_half_up(Fraction(subtotal) * Fraction(customer.tax_rate), 2)
    return Invoice(
        org_id=org_id, month=month_key(month), status="draft", number=None, currency=config.price_book.currency,
        lines=lines, subtotal=subtotal, tax=tax, total=subtotal + tax, cogs_usd=round_half_up(cogs_usd, 4),
        credits=credits,
    )


def _month_of(moment) -> date:
    return utc_naive(moment).date().replace(day=1)


def _line(kind: str, description: str, quantity: int, unit_price: Decimal, amount: Decimal) -> InvoiceLine:
    return InvoiceLine(kind=kind, description=description, quantity=Decimal(quantity), unit_price=unit_price,
                       amount=round_half_up(amount, 2))


def _plan_fee_line(period: PlanPeriod) -> InvoiceLine:
    """The fee of one plan period: the monthly fee x d / D, rounded to cents (SPEC §7)."""
    amount = round_half_up(prorated_fee(period), 2)
    days = "" if whole_month(period) else f" ({period.days} of {month_days(period.start)} days)"
    description = f"{_plan_name(period.plan)}, {_period_text(period)}{days}"
    return _line("plan_fee", description, 1, amount, amount)


def _plan_name(plan: Plan) -> str:
    return f"{plan.plan.capitalize()} plan"


def _period_text(period: PlanPeriod) -> str:
    """'November 2026' for a whole month, else its days: '1-15 November 2026', '16 November 2026'."""
    if whole_month(period):
        return f"{period.start:%B %Y}"
    last = period.end - timedelta(days=1)
    days = f"{period.start.day}-{last.day}" if last != period.start else f"{last.day}"
    return f"{days} {period.start:%B %Y}"


def _purchase_line(purchase: CreditPurchase) -> InvoiceLine:
    description = f"Credit purchase {purchase.purchase_id}: {purchase.credits:,} credits"
    return _line("credit_purchase", description, 1, round_half_up(purchase.price, 2), purchase.price)


def overage_lines(overage: list[PeriodOverage]) -> list[InvoiceLine]:
    """One overage line per plan period with overage whose plan bills it, in period order, then
    one for overage after the cancellation (SPEC §7)."""
    return [_overage_line(o) for o in overage if o.credits > 0 and o.plan.overage_credit_price is not None]


def _overage_line(overage: PeriodOverage) -> InvoiceLine:
    """Overage credits at the plan's price per credit (shown with the price's own decimals)."""
    price, credits, period = overage.plan.overage_credit_price, overage.credits, overage.period
    if period is None:
        what = f"Overage after the subscription ended ({_plan_name(overage.plan)} price)"
    elif whole_month(period):
        what = "Overage"
    else:
        what = f"Overage, {_plan_name(period.plan)}, {_period_text(period)}"
    amount = round_half_up(credits * price, 2)
    return _line("overage", f"{what}: {credits:,} credits", credits, rate(price), amount)


def invoice_usage(summary) -> dict[str, dict]:
    """Per customer, the month's usage by model and by action tier (credits, cost_usd text),
    sorted by name, for the invoice PDF; `summary` is the month's usage_summary."""
    usage: dict[str, dict] = {}
    for field in ("model", "action"):
        for (org_id, name), (credits, cost) in sorted(usage_totals(summary, field).items()):
            rows = usage.setdefault(org_id, {"by_model": [], "by_action": []})[f"by_{field}"]
            rows.append({field: name, "credits": credits, "cost_usd": money(cost, 4)})
    return usage
