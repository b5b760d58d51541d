"""The typed invoice documents: an invoice of SPEC §6 (and its lines), and the adjustment or
credit note of a final invoice (SPEC §4). Money is Decimal inside; `to_json()` gives the SPEC §6
object (money as text with its own decimals) at the edges: CLI, API, storage, Dagster metadata.
A stored object is read back through `stored_invoice`, which validates it once."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, TypeAdapter

from billing_pipelines.ledger.consumption import CreditSummary
from billing_pipelines.money import DOCUMENT, Cost, DecimalText, Money, MonthKey, Name


class InvoiceLine(BaseModel):
    """One line: plan fee, credit purchase or overage (quantity x unit price = amount, rounded)."""

    model_config = DOCUMENT
    kind: Name
    description: Name
    quantity: DecimalText
    unit_price: DecimalText
    amount: Money


class Invoice(BaseModel):
    """A customer's invoice of a month (SPEC §6), draft until finalized under its number."""

    model_config = DOCUMENT
    org_id: Name
    month: MonthKey
    status: Literal["draft", "final"]
    number: Name | None
    currency: Name
    lines: list[InvoiceLine]
    subtotal: Money
    tax: Money
    total: Money
    cogs_usd: Cost
    credits: CreditSummary

    def total_problems(self) -> list[str]:
        """Where the lines do not sum to the subtotal, or subtotal + tax is not the total."""
        lines = sum((line.amount for line in self.lines), Decimal("0.00"))
        problems = []
        if lines != self.subtotal:
            problems.append(f"lines sum to {lines}, subtotal is {self.subtotal}")
        if self.subtotal + self.tax != self.total:
            problems.append(f"subtotal {self.subtotal} + tax {self.tax} is not total {self.total}")
        return problems

    def to_json(self) -> dict:
        """The SPEC §6 object."""
        return self.model_dump(mode="json")


class Adjustment(Invoice):
    """The difference between a recomputed invoice and what was billed (SPEC §4): an adjustment,
    or a credit note where its total is negative; every figure is a difference."""

    kind: Literal["adjustment", "credit_note"]
    status: Literal["final"]
    refers_to: Name
    issue_date: str | None

    def to_json(self) -> dict:
        """The stored object: the invoice's keys with kind, refers_to and issue_date among them."""
        data = super().to_json()
        return {key: data[key] for key in ("org_id", "month", "kind", "status", "number", "refers_to", "issue_date",
                                            "currency", "lines", "subtotal", "tax", "total", "cogs_usd", "credits")}


_STORED = TypeAdapter(Invoice | Adjustment)


def stored_invoice(document: dict) -> Invoice | Adjustment:
    """A stored invoice or adjustment object (billing database, month close), validated."""
    return _STORED.validate_python(document)
