"""Filing invoice documents: the document a PDF is rendered from, and the PDFs themselves,
stored in the warehouse store (BILLING_HOME/warehouse or object storage) under `pdf_key` names.

WeasyPrint is imported only when something is rendered, so a month close that issues no
document does not load it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime

from sqlalchemy import Engine

from billing_pipelines.config import Customer
from billing_pipelines.invoicing.document import invoice_document, invoice_view
from billing_pipelines.invoicing.models import Adjustment, Invoice
from billing_pipelines.invoicing.seller import Seller, final_seller, load_seller
from billing_pipelines.margin.report import MarginRow
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import billing_db

PARALLEL_FROM = 16  # fewer documents render faster in this process than in a fresh pool


@dataclass(frozen=True)
class Issuer:
    """Who issues the documents and to whom: the seller and the configured customers."""

    seller: Seller
    customers: dict[str, Customer]

    @classmethod
    def of(cls, settings: BillingSettings, final: bool = True) -> Issuer:
        """The issuer of final documents (seller.yaml required) or, `final` False, of drafts."""
        seller = final_seller(settings.config_dir) if final else load_seller(settings.config_dir)
        return cls(seller, settings.billing_config().customers)

    def document(self, invoice: Invoice | Adjustment, issue_date: date, margin: MarginRow | None = None) -> dict:
        """The PDF document of an invoice or adjustment, checked renderable (so nothing
        unrenderable is ever frozen). An adjustment's credit summary is a difference, which the
        summary table cannot show, so its PDF leaves it out."""
        customer = self.customers.get(invoice.org_id)
        if customer is None:
            raise LookupError(f"{invoice.org_id!r} has an invoice of {invoice.month} but is not in customers.yaml")
        document = invoice_document(invoice, customer, self.seller, issue_date, margin)
        if isinstance(invoice, Adjustment):
            document["credits"] = None
        invoice_view(document)
        return document


def today() -> date:
    """Today in UTC: the default issue date."""
    return datetime.now(UTC).date()


def render_all(documents: list[dict], workers: int = 2) -> Iterator[bytes]:
    """PDF bytes of each document, in order: in parallel processes for many documents."""
    from billing_pipelines.invoicing.pdf import render_invoice_pdf, render_invoice_pdfs

    if workers > 1 and len(documents) >= PARALLEL_FROM:
        return render_invoice_pdfs(documents, workers)
    return map(render_invoice_pdf, documents)


def file_pdfs(settings: BillingSettings, engine: Engine, month: str, workers: int = 2) -> list[dict]:
    """Render and store the PDF of each final document of `month` that has none yet, and record
    its key and sha256 (once: a filed PDF is never replaced). An invoice's draft PDF goes."""
    rows = billing_db.unfiled_documents(engine, month)
    if not rows:
        return []
    from billing_pipelines.invoicing.pdf import pdf_key

    store = settings.warehouse().store
    filed = []
    for row, pdf in zip(rows, render_all([json.loads(r.rendered_json) for r in rows], workers)):
        key = pdf_key(row.org_id, month, row.number, row.kind)
        store.write_bytes(key, pdf)
        sha256 = hashlib.sha256(pdf).hexdigest()
        billing_db.record_pdf(engine, row.id, key, sha256)
        if row.kind == "invoice":
            store.delete(pdf_key(row.org_id, month))
        filed.append({"org_id": row.org_id, "kind": row.kind, "number": row.number,
                      "pdf_key": key, "pdf_sha256": sha256})
    return filed


def store_pdfs(settings: BillingSettings, keyed_documents: Iterable[tuple[str, dict]], workers: int = 2) -> list[str]:
    """Render `(key, document)` pairs and store each PDF under its key; returns the keys."""
    pairs = list(keyed_documents)
    store = settings.warehouse().store
    for (key, _), pdf in zip(pairs, render_all([document for _, document in pairs], workers)):
        store.write_bytes(key, pdf)
    return [key for key, _ in pairs]
