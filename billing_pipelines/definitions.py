"""The one Dagster `Definitions` of billing_pipelines: what the UI, the daemon and the CLI load."""

from __future__ import annotations

import dagster as dg

from billing_pipelines.dashboard import assets as dashboard
from billing_pipelines.ingest import assets as ingest
from billing_pipelines.invoicing import assets as invoicing
from billing_pipelines.ledger import assets as ledger
from billing_pipelines.margin import assets as margin
from billing_pipelines.ratelimit import assets as ratelimit
from billing_pipelines.resources import BillingSettings

settings = BillingSettings.from_env()

defs = dg.Definitions(
    assets=[ingest.priced_events, ingest.billed_usage, ledger.month_close, ratelimit.rate_limit_simulation,
            margin.margin_report_pdf, invoicing.invoice_pdfs, invoicing.finalized_invoices, dashboard.live_balances],
    jobs=[ingest.ingest_job, ledger.month_close_job, invoicing.finalize_invoices, dashboard.live_balances_job],
    sensors=[dashboard.landed_files_sensor],
    schedules=[ingest.daily_ingest_schedule, ledger.monthly_close_schedule(settings.grace_days)],
    resources={"billing": settings},
)
