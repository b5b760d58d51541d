"""Invoice PDFs rendered by WeasyPrint and parsed back with pypdf."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from datetime import date
from decimal import Decimal

import pytest
from pypdf import PdfReader

import billing_pipelines
from billing_pipelines.config import Customer
from billing_pipelines.invoicing.document import InvoiceDocumentError, invoice_document
from billing_pipelines.invoicing.examples import EXAMPLE_CUSTOMER, example_invoice, line
from billing_pipelines.invoicing.models import Adjustment, Invoice
from billing_pipelines.invoicing.pdf import render_invoice_html, render_invoice_pdf, render_invoice_pdfs
from billing_pipelines.invoicing.seller import Seller
from billing_pipelines.margin.report import MarginRow
from billing_pipelines.month_close.compute import close_month
from tests.ledger_helpers import change, config, events, plan

THOUSANDS = re.compile(r"(?<=\d),(?=\d{3})")
CJK_NAME = "日本テクノロジー株式会社"


@pytest.fixture(scope="module")
def cjk_font() -> None:
    """Japanese text falls back to Debian's fonts-noto-cjk (scripts/system-deps.sh installs it)."""
    found = subprocess.run(["fc-list", "Noto Sans CJK JP"], capture_output=True, text=True).stdout.strip()
    if not found:
        reason = "fonts-noto-cjk is not installed (run scripts/system-deps.sh as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)


def pdf_pages(pdf: bytes) -> list[str]:
    """Text of each page, thousands separators removed so JSON figures can be looked up."""
    return [THOUSANDS.sub("", page.extract_text()) for page in PdfReader(io.BytesIO(pdf)).pages]


def row_text(entry: dict) -> str:
    """How a line's row reads in the extracted text."""
    cells = (entry[key] for key in ("description", "quantity", "unit_price", "amount"))
    return THOUSANDS.sub("", " ".join(cells))


def embedded_fonts(pdf: bytes) -> set[str]:
    fonts = set()
    for page in PdfReader(io.BytesIO(pdf)).pages:
        for font in page["/Resources"]["/Font"].values():
            fonts.add(str(font.get_object()["/BaseFont"]).split("+", 1)[-1])
    return fonts


def credit_note() -> dict:
    """A credit note for INV-2026-000042: the overage was recomputed 250 credits lower."""
    lines = [line("overage", "Overage correction: 250 credits", "-250", "0.0120")]
    return dict(example_invoice(number="INV-2026-000057"), kind="credit_note", refers_to="INV-2026-000042",
                lines=lines, subtotal="-3.00", tax="-0.60", total="-3.60", credits=None,
                usage_by_model=[], usage_by_action=[])


@pytest.fixture(scope="module")
def final_pdf() -> bytes:
    return render_invoice_pdf(example_invoice())


@pytest.fixture(scope="module")
def long_invoice() -> dict:
    return example_invoice(extra_purchases=118)


def test_every_amount_of_the_json_is_in_the_pdf(final_pdf):
    document = example_invoice()
    text = "\n".join(pdf_pages(final_pdf))
    figures = [entry["amount"] for entry in document["lines"]] + [document[k] for k in ("subtotal", "tax", "total")]
    for figure in figures:
        assert figure in text
    for entry in document["lines"]:
        assert row_text(entry) in text
    assert "Tax (20%) 32.80" in text
    assert "Total USD 196.80" in text


def test_page_carries_seller_bill_to_dates_and_number(final_pdf):
    text = pdf_pages(final_pdf)[0]
    for expected in ("Northwind AI Ltd", "Tax ID GB 284 1937 55", "Acme Corp", "Springfield, IL 62701",
                     "billing@acme.example", "Invoice", "INV-2026-000042", "Issue date 4 December 2026",
                     "Due date 3 January 2027", "Billing period 1 – 30 November 2026", "Status Final",
                     "Page 1 of 1"):
        assert expected in text


def test_credit_summary_and_usage_are_printed(final_pdf):
    text = pdf_pages(final_pdf)[0]
    for expected in ("Opening balance 1800", "incl. rolled over from October 2026 1800",
                     "Plan credits granted +5000", "Credits purchased +10000", "Credits consumed -16250",
                     "Overage (consumed beyond balance) +1250", "Credits expired 0", "Closing balance 1800",
                     "incl. rolling over to December 2026 0",
                     "frontier-large 9850", "small-fast 6400", "complex 8750", "document 3300", "simple 4200"):
        assert expected in text
    assert "Cost" not in text and "31.2045" not in text  # credits, never our COGS


@pytest.mark.parametrize("name", ["Jürgen Müller GmbH", "Søren Ødegård ApS", "Ελληνική Εταιρεία"])
def test_latin_and_greek_names_come_back(name):
    pdf = render_invoice_pdf(example_invoice(customer=dict(EXAMPLE_CUSTOMER, name=name)))
    assert name in pdf_pages(pdf)[0]


def test_cjk_names_come_back_with_a_cjk_font_only_where_needed(cjk_font, final_pdf):
    assert embedded_fonts(final_pdf) == {"Invoice-Sans", "Invoice-Sans-Semi-Bold"}
    cjk = render_invoice_pdf(example_invoice(customer=dict(EXAMPLE_CUSTOMER, name=CJK_NAME)))
    assert CJK_NAME in pdf_pages(cjk)[0]
    assert any("CJK" in font for font in embedded_fonts(cjk))


def test_long_invoice_breaks_pages_cleanly(long_invoice):
    pages = pdf_pages(render_invoice_pdf(long_invoice))
    count = len(pages)
    assert count >= 3
    for number, text in enumerate(pages, start=1):
        assert f"Page {number} of {count}" in text
    for entry in long_invoice["lines"]:
        holding = [text for text in pages if THOUSANDS.sub("", entry["description"]) in text]
        assert len(holding) == 1, entry["description"]
        assert row_text(entry) in holding[0]  # the row is whole on one page
    pages_with_lines = [text for text in pages if "Credit pack p-2" in text]
    assert len(pages_with_lines) >= 2
    assert all("DESCRIPTION QUANTITY UNIT PRICE AMOUNT (USD)" in text for text in pages_with_lines)
    totals = [text for text in pages if f"Total USD {long_invoice['total']}" in text]
    assert len(totals) == 1 and f"Subtotal {long_invoice['subtotal']}" in totals[0]  # never split


def test_draft_watermark_on_every_page_until_final(long_invoice):
    draft = dict(long_invoice, status="draft", number=None)
    assert all("DRAFT" in text for text in pdf_pages(render_invoice_pdf(draft)))
    assert not any("DRAFT" in text.upper() for text in pdf_pages(render_invoice_pdf(long_invoice)))


def test_same_document_gives_identical_bytes(final_pdf):
    assert render_invoice_pdf(example_invoice()) == final_pdf
    metadata = PdfReader(io.BytesIO(final_pdf)).metadata
    assert metadata["/CreationDate"].startswith("D:20261204000000")
    assert metadata["/Title"] == "Invoice INV-2026-000042 · Northwind AI Ltd"


def test_identical_bytes_in_a_fresh_process(final_pdf):
    code = ("import sys; from billing_pipelines.invoicing.pdf import render_invoice_pdf;"
            "from billing_pipelines.invoicing.examples import example_invoice;"
            "sys.stdout.buffer.write(render_invoice_pdf(example_invoice()))")
    checkout = os.path.dirname(os.path.dirname(billing_pipelines.__file__))
    env = dict(os.environ, PYTHONHASHSEED="12345", PYTHONPATH=checkout)
    fresh = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, env=env).stdout
    assert fresh == final_pdf


def test_credit_note_refers_to_the_original():
    text = pdf_pages(render_invoice_pdf(credit_note()))[0]
    for expected in ("Credit note", "INV-2026-000057", "Refers to invoice INV-2026-000042", "-3.00", "-0.60",
                     "Amount credited USD -3.60", "Overage correction: 250 credits"):
        assert expected in text
    assert "CREDIT SUMMARY" not in text


def test_html_is_escaped_and_links_its_stylesheet():
    html = render_invoice_html(example_invoice(customer=dict(EXAMPLE_CUSTOMER, name="<script>x</script> & Co")))
    assert "&lt;script&gt;x&lt;/script&gt; &amp; Co" in html
    assert '<link rel="stylesheet" href="invoice.css">' in html


def test_defaults_without_dates_or_seller():
    document = example_invoice(status="draft", number=None)
    for key in ("issue_date", "due_date", "seller"):
        del document[key]
    text = pdf_pages(render_invoice_pdf(document))[0]
    assert "Issue date 1 December 2026" in text
    assert "Due date 31 December 2026" in text
    assert "Example AI Ltd" in text


@pytest.mark.parametrize(
    "change, message",
    [
        ({"status": "final", "number": None}, "needs its `number`"),
        ({"status": "paid"}, "`status` must be one of draft, final"),
        ({"kind": "credit_note"}, "needs `refers_to`"),
        ({"subtotal": "164.01"}, "not the sum of the line amounts"),
        ({"total": "196.81"}, "is not subtotal"),
        ({"tax": 32.8}, "`tax` must be a decimal string"),
        ({"tax": "32.8"}, "exactly 2 decimals"),
        ({"month": "2026-13"}, "not a month"),
        ({"issue_date": "4/12/2026"}, "not a date"),
        ({"customer": {"email": "x@y"}}, "customer: `name` is required"),
        ({"seller": {"name": "X", "payment_terms_days": "30"}}, "payment_terms_days"),
        ({"credits": dict(example_invoice()["credits"], closing=1801)}, "credits do not balance"),
        ({"lines": [{"kind": "plan_fee", "description": "Pro", "quantity": "1", "unit_price": "x",
                     "amount": "164.00"}]}, "lines[0]: `unit_price` is not a decimal"),
        ({"usage_by_model": [{"model": "m", "credits": "10", "cost_usd": "1"}]}, "usage_by_model[0]: `credits`"),
    ],
)
def test_bad_documents_get_a_clear_error(change, message):
    with pytest.raises(InvoiceDocumentError, match=re.escape(message)):
        render_invoice_html(dict(example_invoice(), **change))


def test_document_from_the_spec_invoice_and_config():
    """What close-month and finalization call: SPEC §6 invoice + margin rows + config."""
    invoice = {"org_id": "acme", "month": "2026-11", "status": "draft", "number": None, "currency": "USD",
               "lines": [{"kind": "plan_fee", "description": "Pro plan, November 2026", "quantity": "1",
                          "unit_price": "49.00", "amount": "49.00"}],
               "subtotal": "49.00", "tax": "9.80", "total": "58.80", "cogs_usd": "12.3456",
               "credits": {"opening": 0, "rolled_over_in": 0, "granted": 5000, "purchased": 0, "consumed": 4200,
                           "overage": 0, "expired": 0, "rolled_over_out": 800, "closing": 800}}
    margin = MarginRow.model_validate({
        "org_id": "acme", "month": "2026-11", "revenue": "41.16", "breakage": "0.00", "cogs_usd": "12.3456",
        "gross_margin": "28.81", "margin_pct": "70.01", "credit_to_cost_ratio": "3.33", "below_target": False,
        "by_model": [{"model": "frontier-large", "credits": 4200, "revenue": "41.16", "cogs_usd": "12.3456"}],
        "by_action": [{"action": "complex", "credits": 4200, "revenue": "41.16", "cogs_usd": "12.3456"}]})
    customer = Customer("acme", "Acme Corp", "pro", date(2026, 10, 1), Decimal("0.20"), "billing@acme.example",
                        "1 Main St, Springfield")
    document = invoice_document(Invoice.model_validate(invoice), customer, Seller(payment_terms_days=14),
                                date(2026, 12, 4), margin)
    assert document["due_date"] == "2026-12-18"
    text = pdf_pages(render_invoice_pdf(document))[0]
    for expected in ("Acme Corp", "1 Main St, Springfield", "Tax (20%) 9.80", "Total USD 58.80", "DRAFT",
                     "Due date 18 December 2026", "frontier-large 4200", "complex 4200", "Closing balance 800"):
        assert expected in text
    assert "12.3456" not in text and "Cost" not in text  # COGS stays in the margin report


def test_customer_without_email_or_address():
    customer = Customer("initech", "Initech", "free", date(2026, 11, 1))
    note = credit_note()
    adjustment = Adjustment.model_validate({**{k: note[k] for k in Adjustment.model_fields if k in note},
                                            "credits": {}})
    document = invoice_document(adjustment, customer, Seller(), date(2026, 12, 4))
    text = pdf_pages(render_invoice_pdf(document))[0]
    assert "BILL TO\nInitech\nAccount acme\n" in text


def test_parallel_rendering_gives_the_same_bytes_in_order():
    documents = [example_invoice(org_id=f"org-{i}", number=f"INV-2026-00000{i}") for i in range(1, 4)]
    assert list(render_invoice_pdfs(documents, workers=2)) == [render_invoice_pdf(d) for d in documents]


def test_each_plan_period_and_its_overage_is_a_line_of_the_pdf():
    """SPEC §7: a month with a one-day period and a cancellation, closed by the ledger."""
    basic = plan("basic", fee="30.00", included=300, overage="0.0200")
    premium = plan("premium", fee="120.00", included=900, overage="0.0100")
    cfg = config(basic, start="2026-11-01", other_plans=[premium],
                 changes=[change("2026-11-15", "premium"), change("2026-11-16", "basic"), change("2026-11-25", None)])
    close = close_month(cfg, events(("a", "2026-11-15T10:00:00", 200), ("b", "2026-11-20T10:00:00", 400)),
                        date(2026, 11, 1))
    [invoice] = close.invoices
    assert [line.kind for line in invoice.lines] == ["plan_fee"] * 3 + ["overage"] * 2
    document = invoice_document(invoice, cfg.customers["acme"], Seller(), date(2026, 12, 4), close.margin[0])
    text = " ".join(" ".join(pdf_pages(render_invoice_pdf(document))).split())
    for entry in invoice.to_json()["lines"]:
        assert row_text(entry) in text
    assert "Premium plan, 15 November 2026 (1 of 30 days) 1 4.00 4.00" in text
    assert "Overage, Basic plan, 16-24 November 2026: 310 credits 310 0.0200 6.20" in text
