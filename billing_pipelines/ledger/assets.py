"""Dagster assets of the monthly close: the credit ledger, draft invoices and the margin report,
per billing month, computed together from the full history of billed usage."""

from datetime import date
from decimal import Decimal

import dagster as dg

from sqlalchemy.engine import make_url

from billing_pipelines.ingest.assets import billed_usage
from billing_pipelines.ledger.checks import conservation_problems, invoice_total_problems, negative_grant_problems
from billing_pipelines.ledger.month_close import run_month_close
from billing_pipelines.partitions import billing_months
from billing_pipelines.periods import add_months, month_key
from billing_pipelines.resources import BillingSettings

CHECKS = [
    dg.AssetCheckSpec("credits_conserved", asset="credit_ledger", blocking=True,
                      description="opening + granted + purchased - (consumed - overage) - expired = closing"),
    dg.AssetCheckSpec("no_grant_below_zero", asset="credit_ledger", blocking=True),
    dg.AssetCheckSpec("totals_add_up", asset="draft_invoices", blocking=True,
                      description="lines sum to subtotal; subtotal + tax = total"),
]


@dg.multi_asset(
    specs=[
        dg.AssetSpec("credit_ledger", group_name="month_close", kinds={"polars", "parquet"}, deps=[billed_usage],
                     description="Grants (plan, purchase, rollover), every event's consumption traced to its "
                     "grants, overage and expiry; each customer's credit summary for the month (SPEC §3)."),
        dg.AssetSpec("draft_invoices", group_name="month_close", kinds={"sqlite", "postgres"}, deps=["credit_ledger"],
                     description="One draft invoice per customer (SPEC §4): plan fee, credit purchases, "
                     "overage, tax; stored in the billing database until finalized."),
        dg.AssetSpec("margin_report", group_name="month_close", kinds={"polars"}, deps=["credit_ledger"],
                     description="Recognized revenue, COGS, gross margin and credit-to-cost ratio per "
                     "customer, by model and by action tier (SPEC §5), and the credit-tier advisor."),
    ],
    partitions_def=billing_months,
    check_specs=CHECKS,
)
def month_close(context: dg.AssetExecutionContext, billing: BillingSettings):
    month = date.fromisoformat(context.partition_key)
    result = run_month_close(billing, month)
    below = [m["org_id"] for m in result.margin if m["below_target"]]
    yield dg.MaterializeResult(asset_key="credit_ledger", metadata={
        "customers": len(result.credit_summaries),
        "allocations": result.allocations.height,
        "consumed_credits": sum(s.consumed for s in result.credit_summaries.values()),
        "overage_credits": sum(s.overage for s in result.credit_summaries.values()),
    })
    yield dg.MaterializeResult(asset_key="draft_invoices", metadata={
        "invoices": len(result.invoices),
        "total": dg.MetadataValue.text(_money_total(result.invoices)),
        "database": dg.MetadataValue.text(make_url(billing.database_url).render_as_string(hide_password=True)),
    })
    yield dg.MaterializeResult(asset_key="margin_report", metadata={
        "customers_below_target": len(below),
        "summary": dg.MetadataValue.md(_margin_markdown(result.margin)),
    })
    yield _check("credit_ledger", "credits_conserved", conservation_problems(result.credit_summaries))
    yield _check("credit_ledger", "no_grant_below_zero", negative_grant_problems(result.grants))
    yield _check("draft_invoices", "totals_add_up", invoice_total_problems(result.invoices))


def _check(asset: str, name: str, problems: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(asset_key=asset, check_name=name, passed=not problems,
                               metadata={"problems": dg.MetadataValue.json(problems[:50])})


def _money_total(invoices: list[dict]) -> str:
    return str(sum((Decimal(i["total"]) for i in invoices), Decimal("0.00")))


def _margin_markdown(margin: list[dict]) -> str:
    rows = ["| customer | revenue | COGS | margin % | ratio | below target |", "|---|---:|---:|---:|---:|---|"]
    rows += [f"| {m['org_id']} | {m['revenue']} | {m['cogs_usd']} | {m['margin_pct']} | "
             f"{m['credit_to_cost_ratio']} | {'**yes**' if m['below_target'] else 'no'} |" for m in margin]
    return "\n".join(rows)


month_close_job = dg.define_asset_job(
    "billing_cycle",
    selection=dg.AssetSelection.groups("month_close") | dg.AssetSelection.assets("finalized_invoices"),
    partitions_def=billing_months,
    tags={"billing/lane": "month_close"},  # deploy/dagster.yaml: one month close at a time
    description="A month's billing cycle, from the full history: credit ledger, draft invoices and their "
    "PDFs, margin report, rate-limit simulation; and, on request (tag billing/finalize=true), finalization.",
)


def monthly_close_schedule(grace_days: int) -> dg.ScheduleDefinition:
    """At 02:00 UTC on the day after the grace period, close the previous month."""

    @dg.schedule(job=month_close_job, cron_schedule=f"0 2 {grace_days + 1} * *", name="monthly_close_schedule",
                 description=f"Close the previous month on day {grace_days + 1} (BILLING_GRACE_DAYS={grace_days}).")
    def _schedule(context: dg.ScheduleEvaluationContext):
        month = add_months(context.scheduled_execution_time.date().replace(day=1), -1)
        return dg.RunRequest(run_key=month_key(month), partition_key=month.isoformat())

    return _schedule
