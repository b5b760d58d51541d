"""Finalization (numbers, frozen PDFs) and adjustments, on SQLite and on PostgreSQL, through the
real month close over a hand-made landing zone; PDFs parsed back with pypdf."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from decimal import Decimal

import pytest
from sqlmodel import Session, select

from billing_pipelines.config import ConfigError
from billing_pipelines.ingest.landing import landing_dates
from billing_pipelines.ingest.pipeline import ingest
from billing_pipelines.invoicing.filing import today as issue_day
from billing_pipelines.invoicing.finalize import file_draft_pdfs, finalize_month
from billing_pipelines.invoicing.pdf import render_invoice_pdf
from billing_pipelines.month_close.documents import margins_by_org
from billing_pipelines.month_close.run import close_months
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import billing_db
from tests.common import event
from tests.db_support import DATABASE_KINDS, fresh_database
from tests.finalize_support import copy_config, pdf_text

OCTOBER = date(2026, 10, 1)
ISSUED = date(2026, 11, 5)


@pytest.fixture(params=DATABASE_KINDS)
def database_url(request, tmp_path):
    with fresh_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture
def config_dir(tmp_path):
    return copy_config(tmp_path / "config")


@pytest.fixture
def billing(tmp_path, config_dir, landing, database_url) -> BillingSettings:
    """The example config, a small October landing zone and a fresh billing database."""
    landing.jsonl("2026-10-02", "events.jsonl",
                  [event(f"a{i}", "acme", "2026-10-02T09:00:00Z", action="complex") for i in range(10)]
                  + [event(f"g{i}", "globex", "2026-10-02T10:00:00Z") for i in range(5)])
    return BillingSettings.from_env({"BILLING_HOME": str(tmp_path / "home"), "BILLING_CONFIG": str(config_dir),
                                     "BILLING_LANDING": str(landing.root), "BILLING_DATABASE_URL": database_url})


def close_october(billing: BillingSettings) -> dict:
    """What an operator does: ingest what landed, then close October; returns its documents (JSON)."""
    ingest(billing, sorted(landing_dates(billing.landing_store())))
    return close_months(billing, OCTOBER).to_json()


def finalize_october(billing: BillingSettings, issue_date: date) -> list[dict]:
    return finalize_month(billing, OCTOBER, margins_by_org(billing.warehouse(), OCTOBER), issue_date)


def land_late_usage(landing, name: str, complex_events: int) -> None:
    """A file of acme's October usage that shows up late, in an earlier October folder."""
    landing.jsonl("2026-10-03", name, [event(f"{name}-{i}", "acme", "2026-10-03T08:00:00Z", action="complex")
                                       for i in range(complex_events)])


def listed(billing: BillingSettings) -> list[dict]:
    return billing_db.list_invoices(billing_db.engine_from_url(billing.database_url), "2026-10")


def adjustments(billing: BillingSettings) -> list[dict]:
    return [d for d in listed(billing) if d.get("kind", "invoice") != "invoice"]


def stored_rows(billing: BillingSettings) -> dict[str, billing_db.InvoiceRow]:
    with Session(billing_db.engine_from_url(billing.database_url)) as session:
        return {row.number: row for row in session.exec(select(billing_db.InvoiceRow))}


def test_finalizing_numbers_freezes_and_files_each_invoice(billing):
    close_october(billing)
    store = billing.warehouse().store
    drafted = file_draft_pdfs(billing, OCTOBER, margins_by_org(billing.warehouse(), OCTOBER))
    assert drafted == ["invoices/2026-10/acme/invoice-draft.pdf",
                       "invoices/2026-10/globex/invoice-draft.pdf"]
    assert "DRAFT" in pdf_text(store.read_bytes("invoices/2026-10/acme/invoice-draft.pdf"))

    filed = finalize_october(billing, ISSUED)

    assert [(f["org_id"], f["kind"], f["number"], f["pdf_key"]) for f in filed] == [
        ("acme", "invoice", "INV-2026-000001", "invoices/2026-10/acme/INV-2026-000001.pdf"),
        ("globex", "invoice", "INV-2026-000002", "invoices/2026-10/globex/INV-2026-000002.pdf"),
    ]
    assert [(i["org_id"], i["status"], i["number"], i["total"]) for i in listed(billing)] == [
        ("acme", "final", "INV-2026-000001", "58.80"), ("globex", "final", "INV-2026-000002", "2165.00")]
    rows = stored_rows(billing)
    for f in filed:
        pdf = store.read_bytes(f["pdf_key"])
        assert hashlib.sha256(pdf).hexdigest() == f["pdf_sha256"] == rows[f["number"]].pdf_sha256
        text = pdf_text(pdf)
        assert f["number"] in text and "DRAFT" not in text and "Draft" not in text
        assert "5 November 2026" in text and "5 December 2026" in text  # issue and due date
        assert not store.exists(f"invoices/2026-10/{f['org_id']}/invoice-draft.pdf")
    assert "2,165.00" in pdf_text(store.read_bytes(filed[1]["pdf_key"]))
    assert finalize_october(billing, ISSUED) == []


def test_final_invoices_need_a_seller_drafts_do_not(billing, config_dir):
    close_october(billing)
    (config_dir / "seller.yaml").unlink()
    drafted = file_draft_pdfs(billing, OCTOBER, margins_by_org(billing.warehouse(), OCTOBER))
    text = pdf_text(billing.warehouse().store.read_bytes(drafted[0]))
    assert "DRAFT" in text and "Example AI Ltd" in text  # the placeholder, under the watermark
    refused = r"seller.yaml: final invoices need the seller who issues them: write .*seller.yaml"
    with pytest.raises(ConfigError, match=refused):
        finalize_october(billing, ISSUED)
    assert {(i["status"], i["number"]) for i in listed(billing)} == {("draft", None)}


def test_a_month_is_finalized_only_after_it_ends(billing):
    close_october(billing)
    with pytest.raises(ValueError, match="2026-10 cannot be finalized before it has ended"):
        finalize_october(billing, date(2026, 10, 31))
    assert {i["status"] for i in listed(billing)} == {"draft"}


def test_a_final_invoice_pdf_never_changes(billing, landing, config_dir):
    close_october(billing)
    filed = finalize_october(billing, ISSUED)
    store = billing.warehouse().store
    before = {f["number"]: store.read_bytes(f["pdf_key"]) for f in filed}
    invoices_before = listed(billing)

    land_late_usage(landing, "late.jsonl", 100)
    (config_dir / "seller.yaml").write_text("name: Renamed Seller Ltd\npayment_terms_days: 14\n")
    close_october(billing)
    assert finalize_october(billing, date(2026, 11, 20)) == []

    assert listed(billing)[:2] == invoices_before
    rows = stored_rows(billing)
    for f in filed:
        assert store.read_bytes(f["pdf_key"]) == before[f["number"]]
        assert rows[f["number"]].pdf_sha256 == f["pdf_sha256"]
        assert render_invoice_pdf(json.loads(rows[f["number"]].rendered_json)) == before[f["number"]]


def test_a_backfill_after_finalization_issues_exactly_one_adjustment(billing, landing):
    close_october(billing)
    finalize_october(billing, ISSUED)
    land_late_usage(landing, "late.jsonl", 1100)  # 50 + 5,500 credits: 550 beyond the 5,000 included

    corrected = close_october(billing)["invoices"]
    close_october(billing)

    [adjustment] = adjustments(billing)
    today = issue_day()
    assert {k: adjustment[k] for k in ("org_id", "month", "kind", "status", "refers_to", "currency",
                                       "subtotal", "tax", "total", "issue_date")} == {
        "org_id": "acme", "month": "2026-10", "kind": "adjustment", "status": "final",
        "refers_to": "INV-2026-000001", "currency": "USD", "subtotal": "6.60", "tax": "1.32", "total": "7.92",
        "issue_date": today.isoformat()}
    assert adjustment["number"] == (f"INV-{today.year}-000003" if today.year == 2026 else f"INV-{today.year}-000001")
    assert adjustment["lines"] == [{"kind": "overage", "description": "Overage: 550 credits (0 invoiced before)",
                                    "quantity": "550", "unit_price": "0.0120", "amount": "6.60"}]
    assert (adjustment["credits"]["consumed"], adjustment["credits"]["overage"]) == (5500, 550)
    acme = next(i for i in corrected if i["org_id"] == "acme")
    assert Decimal("58.80") + Decimal(adjustment["total"]) == Decimal(acme["total"])
    assert [i["status"] for i in listed(billing)[:2]] == ["final", "final"]

    pdf = billing.warehouse().store.read_bytes(stored_rows(billing)[adjustment["number"]].pdf_key)
    text = pdf_text(pdf)
    assert "Adjustment" in text and adjustment["number"] in text and "INV-2026-000001" in text
    assert "7.92" in text and "DRAFT" not in text


def test_each_further_change_is_adjusted_relative_to_all_earlier_documents(billing, landing, config_dir):
    close_october(billing)
    finalize_october(billing, ISSUED)
    land_late_usage(landing, "late-1.jsonl", 1100)
    close_october(billing)
    land_late_usage(landing, "late-2.jsonl", 100)  # 500 credits more
    close_october(billing)
    plans = config_dir / "plans.yaml"
    plans.write_text(plans.read_text().replace('monthly_fee: "49.00"', 'monthly_fee: "39.00"'))
    corrected = close_october(billing)["invoices"]
    close_october(billing)

    first, second, credit_note = adjustments(billing)
    assert second["lines"] == [{"kind": "overage", "description": "Overage: 1,050 credits (550 invoiced before)",
                                "quantity": "500", "unit_price": "0.0120", "amount": "6.00"}]
    assert (second["kind"], second["total"]) == ("adjustment", "7.20")
    assert credit_note["kind"] == "credit_note" and credit_note["refers_to"] == "INV-2026-000001"
    assert [(line["quantity"], line["unit_price"], line["amount"]) for line in credit_note["lines"]] == [
        ("1", "39.00", "39.00"), ("-1", "49.00", "-49.00")]
    assert (credit_note["subtotal"], credit_note["tax"], credit_note["total"]) == ("-10.00", "-2.00", "-12.00")
    acme = next(i for i in corrected if i["org_id"] == "acme")
    billed = [listed(billing)[0], first, second, credit_note]
    for field in ("subtotal", "tax", "total"):
        assert sum(Decimal(d[field]) for d in billed) == Decimal(acme[field])
    numbers = [d["number"] for d in (first, second, credit_note)]
    assert len(set(numbers)) == 3 and numbers == sorted(numbers)
    text = pdf_text(billing.warehouse().store.read_bytes(stored_rows(billing)[credit_note["number"]].pdf_key))
    assert "Credit note" in text and "-12.00" in text and "INV-2026-000001" in text


def test_a_failed_finalization_takes_no_number(billing, config_dir):
    close_october(billing)
    customers = config_dir / "customers.yaml"
    original = customers.read_text()
    customers.write_text(original.replace("org_id: globex", "org_id: globex-renamed"))
    with pytest.raises(LookupError, match="'globex' has an invoice of 2026-10 but is not in customers.yaml"):
        finalize_october(billing, ISSUED)
    assert {i["status"] for i in listed(billing)} == {"draft"}
    customers.write_text(original)
    assert [f["number"] for f in finalize_october(billing, ISSUED)] == ["INV-2026-000001", "INV-2026-000002"]
