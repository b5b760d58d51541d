"""Helpers of the finalization tests: a config with many customers, seeded months (draft
invoices plus the month close manifest finalization reads), a finalizing worker process, and
PDF text."""

from __future__ import annotations

import io
from datetime import date
from pathlib import Path

import yaml
from pypdf import PdfReader

from billing_pipelines.invoicing.finalize import finalize_month
from billing_pipelines.invoicing.models import Invoice
from billing_pipelines.month_close.documents import MONTH_CLOSE, partition
from billing_pipelines.periods import parse_month
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import billing_db
from tests.common import EXAMPLES as CONFIG  # noqa: E402  (tests/data/examples)
from tests.common import config_with_seller


def copy_config(folder: Path) -> Path:
    """A writable copy of the example config, with a seller."""
    return config_with_seller(CONFIG, folder)


def write_config(folder: Path, org_ids: list[str]) -> Path:
    """The example plans and price book, with one Pro customer per org id."""
    copy_config(folder)
    customers = [{"org_id": org_id, "name": f"Customer {org_id}", "plan": "pro", "start_date": "2026-01-01",
                  "tax_rate": "0.20"} for org_id in org_ids]
    (folder / "customers.yaml").write_text(yaml.safe_dump({"customers": customers}))
    return folder


def plan_fee_invoice(org_id: str, month: str) -> Invoice:
    """The draft invoice of a Pro customer who used 1,000 credits."""
    return Invoice.model_validate({
        "org_id": org_id, "month": month, "status": "draft", "number": None, "currency": "USD",
        "lines": [{"kind": "plan_fee", "description": f"Pro plan, {month}", "quantity": "1",
                   "unit_price": "49.00", "amount": "49.00"}],
        "subtotal": "49.00", "tax": "9.80", "total": "58.80", "cogs_usd": "1.2345",
        "credits": {"opening": 0, "rolled_over_in": 0, "granted": 5000, "purchased": 0, "consumed": 1000,
                    "overage": 0, "expired": 0, "rolled_over_out": 2500, "closing": 4000},
    })


def seed_month(settings: BillingSettings, month: str, org_ids: list[str]) -> None:
    """What closing `month` leaves for finalization: drafts in the billing database and the
    month's documents (no usage)."""
    settings.warehouse().commit(MONTH_CLOSE, partition(parse_month(month)), None, {}, {"month": month, "margin": []})
    engine = billing_db.engine_from_url(settings.database_url)
    billing_db.store_draft_invoices(engine, month, [plan_fee_invoice(org_id, month) for org_id in org_ids])
    engine.dispose()


def finalize_months(env: dict, jobs: list[tuple[str, str]], barrier) -> None:
    """Worker process: wait for the others, then finalize each (month, issue date) in turn."""
    settings = BillingSettings.from_env(env)
    barrier.wait()
    for month, issue_date in jobs:
        finalize_month(settings, parse_month(month), {}, date.fromisoformat(issue_date), workers=1)


def pdf_text(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)
