"""Finalizing a month's invoices (SPEC §4): number, freeze, render and store each draft; and
the draft PDFs a month close leaves for review.

Numbers are `INV-YYYY-NNNNNN`, one sequence per year shared by invoices, adjustments and credit
notes, where YYYY is the year of the document's issue date (the day it is finalized, by default
today in UTC), not of the billing month: numbers then follow the order of issue, as invoicing
rules usually require, also for December invoices issued in January.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from billing_pipelines.invoicing.filing import Issuer, file_pdfs, store_pdfs, today
from billing_pipelines.invoicing.models import stored_invoice
from billing_pipelines.margin.report import MarginRow
from billing_pipelines.periods import add_months, month_key
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import billing_db


class FinalizationRefused(ValueError):
    """The month's drafts are not ready to be finalized; the message says why and what to run."""


def finalize_month(settings: BillingSettings, month: date, margins: dict[str, MarginRow],
                   issue_date: date | None = None, workers: int = 2, blockers: Sequence[str] = ()) -> list[dict]:
    """Finalize every draft invoice of `month`, issued on `issue_date` (default today, UTC; not
    before the month has ended): number and freeze them (number_drafts), then render, store and
    record each PDF (file_pdfs). `margins`: the month's margin rows by org (the usage its PDF
    shows); `blockers`: why the drafts must not be finalized (stale, a failed check), if any:
    then nothing is finalized and FinalizationRefused says why. Returns the documents filed:
    org_id, kind, number, pdf_key, pdf_sha256."""
    if blockers:
        raise FinalizationRefused(f"{month_key(month)} not finalized: " + "; ".join(blockers))
    number_drafts(settings, month, issue_date or today(), margins)
    return file_pdfs(settings, settings.engine(), month_key(month), workers)


def number_drafts(settings: BillingSettings, month: date, issue_date: date, margins: dict[str, MarginRow]) -> list[str]:
    """In one transaction (all or none), give each draft of `month` the next number of the
    issue date's year and freeze it with the document its PDF will be made from."""
    check_issue_date(month, issue_date)
    key, issuer = month_key(month), Issuer.of(settings)
    with billing_db.invoicing_transaction(settings.engine(), key) as session:
        drafts = billing_db.draft_rows(session, key)
        numbers = billing_db.next_document_numbers(session, issue_date.year, len(drafts))
        for row, number in zip(drafts, numbers):
            draft = stored_invoice(billing_db.stored_document(row))
            invoice = draft.model_copy(update={"status": "final", "number": number})
            rendered = issuer.document(invoice, issue_date, margins.get(row.org_id))
            billing_db.freeze(session, row, number, issue_date, rendered)
    return numbers


def check_issue_date(month: date, issue_date: date) -> None:
    """A month's invoices are issued after it has ended; a clear ValueError otherwise."""
    if issue_date < add_months(month.replace(day=1), 1):
        raise ValueError(f"{month_key(month)} cannot be finalized before it has ended (issue date {issue_date})")


def file_draft_pdfs(settings: BillingSettings, month: date, margins: dict[str, MarginRow],
                    workers: int = 2) -> list[str]:
    """Render and store the PDF of every draft invoice of `month` (DRAFT watermark, issue date
    the first day after the month) under its draft key; returns the keys."""
    from billing_pipelines.invoicing.pdf import pdf_key

    key, issue_date = month_key(month), add_months(month.replace(day=1), 1)
    engine = settings.engine()
    drafts = [stored_invoice(i) for i in billing_db.list_invoices(engine, key) if i["status"] == "draft"]
    if not drafts:
        return []
    issuer = Issuer.of(settings, final=False)
    return store_pdfs(settings, (
        (pdf_key(i.org_id, key), issuer.document(i, issue_date, margins.get(i.org_id))) for i in drafts
    ), workers)
