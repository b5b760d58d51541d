"""The adjustment of a final invoice (SPEC §4): how a recomputed invoice differs from what was
already billed, i.e. the original invoice plus every adjustment issued since.

A line is identified by its kind, description and unit price; an overage line (at most one per
invoice, its description states its quantity) by kind and unit price. For each identity the
adjustment has one line with the quantity and amount differences (a line billed before and now
gone has negative ones); tax, cogs_usd and the credit summary are differences too, so the
original plus its adjustments always add up to the latest recomputation.
"""

from __future__ import annotations

from dataclasses import fields
from datetime import date
from decimal import Decimal

from billing_pipelines.invoicing.filing import Issuer, file_pdfs, today
from billing_pipelines.invoicing.models import Adjustment, Invoice, InvoiceLine, stored_invoice
from billing_pipelines.ledger.consumption import CreditSummary
from billing_pipelines.periods import month_key
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import billing_db

LineKey = tuple[str, str, Decimal]
CREDIT_FIELDS = [f.name for f in fields(CreditSummary)]


def issue_adjustments(settings: BillingSettings, month: date, invoices: list[Invoice],
                      issue_date: date | None = None) -> list[dict]:
    """Issue, number and file an adjustment for every final invoice of `month` that the
    recomputed `invoices` (of a month close) change; customers missing from `invoices` are left
    alone. Returns the documents filed (see file_pdfs)."""
    key, issue_date = month_key(month), issue_date or today()
    corrected = {invoice.org_id: invoice for invoice in invoices}
    engine = settings.engine()
    with billing_db.invoicing_transaction(engine, key) as session:
        billed = billing_db.final_documents(session, key)
        changes = [change for org_id, documents in billed.items() if org_id in corrected
                   and (change := adjustment_between([stored_invoice(d) for d in documents], corrected[org_id]))]
        issuer = Issuer.of(settings) if changes else None
        for change, number in zip(changes, billing_db.next_document_numbers(session, issue_date.year, len(changes))):
            change = change.model_copy(update={"number": number, "issue_date": issue_date.isoformat()})
            billing_db.add_document(session, change, issuer.document(change, issue_date))
    return file_pdfs(settings, engine, key)


def adjustment_between(billed: list[Invoice | Adjustment], corrected: Invoice) -> Adjustment | None:
    """The adjustment (credit note when its total is negative) that brings `billed` (the final
    invoice first, then its adjustments) to `corrected`, or None where no line or tax differs.
    Number and issue date are left to the caller."""
    before, after = _lines_by_key(billed), _lines_by_key([corrected])
    lines = [line for key in [*after, *(k for k in before if k not in after)]
             if (line := _difference(key, before.get(key), after.get(key))) is not None]
    tax = corrected.tax - sum((d.tax for d in billed), Decimal(0))
    if not lines and tax == 0:
        return None
    subtotal = corrected.subtotal - sum((d.subtotal for d in billed), Decimal(0))
    return Adjustment(
        org_id=corrected.org_id, month=corrected.month, kind="credit_note" if subtotal + tax < 0 else "adjustment",
        status="final", number=None, refers_to=billed[0].number, issue_date=None, currency=corrected.currency,
        lines=lines, subtotal=subtotal, tax=tax, total=subtotal + tax,
        cogs_usd=corrected.cogs_usd - sum((d.cogs_usd for d in billed), Decimal(0)),
        credits=CreditSummary(**{name: getattr(corrected.credits, name) - sum(getattr(d.credits, name) for d in billed)
                                 for name in CREDIT_FIELDS}),
    )


def _key(line: InvoiceLine) -> LineKey:
    return line.kind, "" if line.kind == "overage" else line.description, line.unit_price


def _lines_by_key(documents: list[Invoice | Adjustment]) -> dict[LineKey, tuple[Decimal, Decimal, str]]:
    """Quantity and amount summed per line identity, with the latest description."""
    totals: dict[LineKey, tuple[Decimal, Decimal, str]] = {}
    for document in documents:
        for line in document.lines:
            quantity, amount, _ = totals.get(_key(line), (Decimal(0), Decimal("0.00"), ""))
            totals[_key(line)] = (quantity + line.quantity, amount + line.amount, line.description)
    return totals


def _difference(key: LineKey, before: tuple | None, after: tuple | None) -> InvoiceLine | None:
    kind, _, unit_price = key
    old_quantity, old_amount, old_description = before or (Decimal(0), Decimal("0.00"), "")
    new_quantity, new_amount, new_description = after or (Decimal(0), Decimal("0.00"), "")
    if (old_quantity, old_amount) == (new_quantity, new_amount):
        return None
    description = new_description or old_description
    if kind == "overage":
        description = f"Overage: {new_quantity:,} credits ({old_quantity:,} invoiced before)"
    return InvoiceLine(kind=kind, description=description, quantity=new_quantity - old_quantity,
                       unit_price=unit_price, amount=new_amount - old_amount)
