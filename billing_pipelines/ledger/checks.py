"""Pure checks behind the month-close asset checks: each returns the problems it found, in
billing terms, and an empty list when the check passes."""

from __future__ import annotations

from decimal import Decimal

from billing_pipelines.ledger.consumption import CreditSummary
from billing_pipelines.ledger.grants import Grant


def conservation_problems(summaries: dict[str, CreditSummary]) -> list[str]:
    """opening + granted + purchased - (consumed - overage) - expired = closing, per customer."""
    problems = []
    for org_id, s in sorted(summaries.items()):
        expected = s.opening + s.granted + s.purchased - (s.consumed - s.overage) - s.expired
        if expected != s.closing:
            problems.append(f"{org_id}: credits do not balance: {expected} expected, closing {s.closing}")
    return problems


def invoice_total_problems(invoices: list[dict]) -> list[str]:
    """Lines sum to the subtotal, and subtotal + tax = total, on every invoice."""
    problems = []
    for invoice in invoices:
        name = f"{invoice['org_id']} {invoice['month']}"
        lines = sum((Decimal(line["amount"]) for line in invoice["lines"]), Decimal(0))
        subtotal, tax, total = (Decimal(invoice[k]) for k in ("subtotal", "tax", "total"))
        if lines != subtotal:
            problems.append(f"{name}: lines sum to {lines}, subtotal is {subtotal}")
        if subtotal + tax != total:
            problems.append(f"{name}: subtotal {subtotal} + tax {tax} is not total {total}")
    return problems


def negative_grant_problems(grants: list[Grant]) -> list[str]:
    """No grant gives more credits than it holds, and no figure of a grant is negative."""
    problems = []
    for g in grants:
        figures = {"credits": g.credits, "consumed": g.consumed, "expired": g.expired,
                   "rolled_over": g.rolled_over, "left": g.left}
        negative = [f"{name} {value}" for name, value in figures.items() if value < 0]
        if negative:
            problems.append(f"{g.grant_id}: below zero ({', '.join(negative)})")
    return problems
