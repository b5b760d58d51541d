"""What finance reviews of a month's invoices: one row per customer (org, plan, total, status,
number, PDF), as the Dagster UI shows them in the metadata of draft and final invoices."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from billing_pipelines.config import BillingConfig
from billing_pipelines.invoicing.models import Adjustment, Invoice
from billing_pipelines.invoicing.pdf import pdf_key
from billing_pipelines.periods import add_months
from billing_pipelines.storage.objects import Store

INVOICE_COLUMNS = ("org_id", "plan", "currency", "total", "status", "number", "pdf")


def invoice_rows(invoices: Sequence[Invoice | Adjustment], config: BillingConfig, month: date,
                 store: Store) -> list[dict]:
    """A row per invoice of `month` (adjustments and credit notes too), in the given order; the
    plan is the one in effect on the month's last day ("cancelled" after a cancellation)."""
    last_day = add_months(month.replace(day=1), 1) - timedelta(days=1)
    rows = []
    for i in invoices:
        plan = config.plan_on(i.org_id, last_day) if i.org_id in config.customers else None
        kind = getattr(i, "kind", "invoice")
        rows.append({"org_id": i.org_id, "plan": plan.plan if plan else "cancelled", "currency": i.currency,
                     "total": str(i.total), "status": i.status if kind == "invoice" else f"{i.status} {kind}",
                     "number": i.number or "", "pdf": store.url(pdf_key(i.org_id, i.month, i.number, kind))})
    return rows
