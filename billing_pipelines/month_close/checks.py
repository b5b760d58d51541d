"""Pure checks behind the month-close asset checks: each returns the problems it found, in
billing terms, and an empty list when the check passes."""

from __future__ import annotations

from billing_pipelines.invoicing.models import Invoice
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


def invoice_total_problems(invoices: list[Invoice]) -> list[str]:
    """Lines sum to the subtotal, and subtotal + tax = total, on every invoice."""
    return [f"{i.org_id} {i.month}: {problem}" for i in invoices for problem in i.total_problems()]


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
