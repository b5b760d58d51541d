"""The difference between what was billed and a recomputed invoice (pure, no database)."""

from __future__ import annotations

from decimal import Decimal

from billing_pipelines.invoicing.adjustments import adjustment_between
from billing_pipelines.invoicing.models import Invoice, InvoiceLine
from tests.finalize_support import plan_fee_invoice

PURCHASE = {"kind": "credit_purchase", "description": "Credit purchase p-1: 1,000 credits", "quantity": "1",
            "unit_price": "10.00", "amount": "10.00"}


def final(invoice, number: str = "INV-2026-000007"):
    return invoice.model_copy(update={"status": "final", "number": number})


def with_lines(invoice: Invoice, lines: list[dict], tax: str) -> Invoice:
    typed = [InvoiceLine.model_validate(line) for line in lines]
    subtotal = sum((line.amount for line in typed), Decimal("0.00"))
    return invoice.model_copy(update={"lines": typed, "subtotal": subtotal, "tax": Decimal(tax),
                                      "total": subtotal + Decimal(tax)})


def test_an_unchanged_invoice_needs_no_adjustment():
    invoice = plan_fee_invoice("acme", "2026-10")
    assert adjustment_between([final(invoice)], invoice) is None
    credits = invoice.credits.as_dict() | {"consumed": 900, "closing": 4100}
    moved_credits = Invoice.model_validate({**invoice.to_json(), "credits": credits, "cogs_usd": "1.0000"})
    assert adjustment_between([final(invoice)], moved_credits) is None


def test_a_purchase_billed_before_and_now_gone_is_reversed_in_a_credit_note():
    original = plan_fee_invoice("acme", "2026-10")
    billed = with_lines(original, [line.model_dump(mode="json") for line in original.lines] + [PURCHASE], "11.80")
    note = adjustment_between([final(billed)], original).to_json()
    assert note["kind"] == "credit_note" and note["refers_to"] == "INV-2026-000007"
    assert note["lines"] == [{**PURCHASE, "quantity": "-1", "amount": "-10.00"}]
    assert (note["subtotal"], note["tax"], note["total"]) == ("-10.00", "-2.00", "-12.00")
    assert note["credits"] == {name: 0 for name in original.credits.as_dict()}


def test_a_tax_correction_alone_is_an_adjustment_without_lines():
    original = plan_fee_invoice("acme", "2026-10")
    corrected = original.model_copy(update={"tax": Decimal("10.29"), "total": Decimal("59.29")})
    change = adjustment_between([final(original)], corrected).to_json()
    assert (change["kind"], change["lines"], change["subtotal"], change["tax"], change["total"]) == (
        "adjustment", [], "0.00", "0.49", "0.49")


def test_the_difference_is_taken_from_the_invoice_and_every_earlier_adjustment():
    original = plan_fee_invoice("acme", "2026-10")
    first = with_lines(original, [line.model_dump(mode="json") for line in original.lines] + [PURCHASE], "11.80")
    adjustment = adjustment_between([final(original)], first)
    assert adjustment.to_json()["lines"] == [PURCHASE] and adjustment.to_json()["total"] == "12.00"
    billed = [final(original), final(adjustment, "INV-2026-000009")]
    assert adjustment_between(billed, first) is None
    assert adjustment_between(billed, original).to_json()["total"] == "-12.00"
