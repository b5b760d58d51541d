"""The one Dagster `Definitions` of billing_pipelines: what the UI, the daemon and the CLI load."""

from __future__ import annotations

import dagster as dg

from billing_pipelines.ingest import assets as ingest
from billing_pipelines.resources import BillingSettings

defs = dg.Definitions(
    assets=[ingest.priced_events, ingest.billed_usage],
    jobs=[ingest.ingest_job],
    schedules=[ingest.daily_ingest_schedule],
    resources={"billing": BillingSettings.from_env()},
)
