"""The monthly `rate_limit_simulation` asset: the month's traffic replayed through each plan."""

from datetime import date

import dagster as dg

from billing_pipelines import duck
from billing_pipelines.ledger.month_close import billed_events
from billing_pipelines.partitions import billing_months
from billing_pipelines.periods import add_months, month_key
from billing_pipelines.ratelimit.simulation import rate_limit_simulation as simulate
from billing_pipelines.resources import BillingSettings

DATASET = "rate_limit_simulation"


@dg.asset(
    partitions_def=billing_months,
    group_name="month_close",
    deps=["credit_ledger"],
    kinds={"polars", "parquet"},
    description="The month's events (start = ts, end = ts + latency) replayed through each customer's "
    "plan limits: requests that would have been degraded or rejected, COGS saved by degrading, "
    "revenue at risk.",
)
def rate_limit_simulation(context: dg.AssetExecutionContext, billing: BillingSettings) -> dg.MaterializeResult:
    month = date.fromisoformat(context.partition_key)
    events = billed_events(billing, before=add_months(month, 1), since=month)
    report = simulate(events, billing.billing_config())
    con = duck.connect(billing.scratch_dir())
    try:
        con.register("report", report.to_arrow())
        billing.warehouse().commit(DATASET, f"month={month_key(month)}", con,
                                   {"simulation": "SELECT * FROM report ORDER BY org_id"}, {"month": month_key(month)})
    finally:
        con.close()
    return dg.MaterializeResult(metadata={
        "requests": int(report["requests"].sum() or 0),
        "degraded": int(report["degraded"].sum() or 0),
        "rejected": int(report["rejected"].sum() or 0),
        "cogs_saved_usd": str(sum(report["cogs_saved_usd"].to_list(), 0)),
        "revenue_at_risk": str(sum(report["revenue_at_risk"].to_list(), 0)),
    })
