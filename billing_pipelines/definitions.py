"""The one Dagster `Definitions` of billing_pipelines: what the UI, the daemon and the CLI load."""

from __future__ import annotations

import dagster as dg

from billing_pipelines.balances import assets as balances
from billing_pipelines.delivery import assets as delivery
from billing_pipelines.ingest import assets as ingest
from billing_pipelines.month_close import assets as month_close
from billing_pipelines.resources import BillingSettings

# Each setting the environment holds is a dg.EnvVar: read by each run, shown in the UI by name.
billing = BillingSettings.for_definitions()

assets = [ingest.landing_zone, ingest.priced_events, ingest.billed_usage, month_close.month_landing_dates,
          month_close.month_usage, month_close.credit_ledger, month_close.month_documents, month_close.invoice_pdfs,
          month_close.finalized_invoices, month_close.rate_limit_simulation, month_close.margin_report_pdf,
          balances.live_balances, delivery.invoice_delivery, delivery.message_delivery]

defs = dg.Definitions(
    assets=assets,
    jobs=[ingest.daily_ingest, month_close.start_month_close, month_close.close_month_shard,
          month_close.close_month_documents, month_close.render_margin_report, month_close.finalize_invoices,
          balances.live_balance_updates, delivery.deliver_messages],
    sensors=[balances.landed_files_sensor, month_close.month_close_automation, delivery.delivery_sensor],
    schedules=[ingest.daily_ingest_schedule, month_close.month_close_schedule],
    resources={"billing": billing, "billing_warehouse": billing.storage, "billing_database": billing.database,
               "billing_config": billing.setup, "billing_delivery": billing.delivery},
)
