"""A customer's documents: every invoice (drafts too, marked so), adjustment and credit note,
and the PDF of each. Only the customer's own: another org's id is not found."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlmodel import Session, select

from billing_pipelines.invoicing.document import TITLES
from billing_pipelines.invoicing.pdf import pdf_key
from billing_pipelines.storage.billing_db import InvoiceRow
from billing_pipelines.storage.objects import Store


def customer_documents(engine: Engine, store: Store, org_id: str) -> list[dict]:
    """The documents of `org_id`, newest month first, each invoice before its adjustments."""
    query = select(InvoiceRow).where(InvoiceRow.org_id == org_id)
    with Session(engine) as session:
        rows = session.exec(query.order_by(InvoiceRow.month.desc(), InvoiceRow.kind != "invoice", InvoiceRow.id)).all()
    return [_listed(row, _pdf_key(row, store) is not None) for row in rows]


def customer_pdf(engine: Engine, store: Store, org_id: str, document_id: int) -> tuple[str, bytes] | None:
    """(file name, bytes) of the PDF of the customer's document `document_id`; None where it is
    not theirs, or has no PDF yet."""
    with Session(engine) as session:
        row = session.get(InvoiceRow, document_id)
    key = None if row is None or row.org_id != org_id else _pdf_key(row, store)
    if key is None:
        return None
    return f"{row.number or f'{row.month}-draft'}.pdf", store.read_bytes(key)


def _pdf_key(row: InvoiceRow, store: Store) -> str | None:
    """A final document's filed PDF, or a draft invoice's PDF where the month close left one."""
    if row.status == "final":
        return row.pdf_key
    key = pdf_key(row.org_id, row.month)
    return key if store.exists(key) else None


def _listed(row: InvoiceRow, has_pdf: bool) -> dict:
    return {
        "id": row.id, "kind": row.kind, "title": TITLES[row.kind], "number": row.number, "month": row.month,
        "status": row.status, "currency": row.currency, "total": row.total, "refers_to": row.refers_to,
        "issue_date": row.issue_date.isoformat() if row.issue_date else None,
        "pdf": f"/v1/invoices/{row.id}/pdf" if has_pdf else None,
    }
