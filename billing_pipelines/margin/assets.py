"""Dagster asset of the monthly margin report for finance: HTML and PDF in the warehouse store,
with the totals and the customers below target as Markdown metadata, and a warning check.

(No ``from __future__ import annotations``: Dagster reads the asset's annotations at runtime.)
"""

from datetime import date

import dagster as dg

from billing_pipelines.margin.report_document import MarginReport, write_margin_report
from billing_pipelines.partitions import billing_months
from billing_pipelines.resources import BillingSettings

CHECK = "customers_meet_target"


@dg.asset(
    partitions_def=billing_months,
    group_name="month_close",
    deps=["margin_report", "rate_limit_simulation"],
    kinds={"pdf", "html"},
    description="The monthly margin report for finance (PDF and HTML): recognized revenue, COGS and "
    "credit-to-cost ratio against the target by customer, cost per credit by action tier and model, "
    "breakage, the customers below target, the trend over past months and, where it was run, the "
    "rate-limit simulation.",
    check_specs=[dg.AssetCheckSpec(CHECK, asset="margin_report_pdf",
                                   description="Every customer's credit-to-cost ratio meets the price "
                                   "book's target (warns, listing those below it).")],
)
def margin_report_pdf(context: dg.AssetExecutionContext, billing: BillingSettings):
    report, keys = write_margin_report(billing, date.fromisoformat(context.partition_key))
    store = billing.warehouse().store
    yield dg.MaterializeResult(metadata={
        "pdf": dg.MetadataValue.path(store.url(keys["pdf"])),
        "html": dg.MetadataValue.path(store.url(keys["html"])),
        "revenue": dg.MetadataValue.text(f"{report.totals.revenue:.2f}"),
        "customers_below_target": len(report.below_target),
        **report.plan_changes.as_metadata(),
        "summary": dg.MetadataValue.md(report_markdown(report)),
    })
    below = report.below_target
    yield dg.AssetCheckResult(
        check_name=CHECK, passed=not below, severity=dg.AssetCheckSeverity.WARN,
        description=f"{len(below)} of {len(report.customers)} customers below the {report.target}× target",
        metadata={"below_target": dg.MetadataValue.md(_below_target_markdown(report))},
    )


def report_markdown(report: MarginReport) -> str:
    """The month's totals and its customers below target, as Markdown for the Dagster UI."""
    t, cur = report.totals, report.currency
    totals = [
        f"**Margin report {t.month}** ({cur}, target {report.target}×)", "",
        "| revenue | breakage | COGS | gross margin | margin % | ratio | below target |",
        "|---:|---:|---:|---:|---:|---:|---:|",
        f"| {t.revenue:,.2f} | {t.breakage:,.2f} | {t.cogs:,.4f} | {t.gross_margin:,.2f} | "
        f"{_or_dash(t.margin_pct)} | {_or_dash(t.ratio)} | {t.below_target} of {t.customers} |",
        "", "**Customers below target**", "",
    ]
    return "\n".join(totals) + _below_target_markdown(report)


def _below_target_markdown(report: MarginReport) -> str:
    if not report.below_target:
        return f"Every customer meets the {report.target}× target."
    rows = ["| customer | plan | revenue | COGS | ratio | shortfall | largest cost |", "|---|---|---:|---:|---:|---:|---|"]
    rows += [f"| {c.name} (`{c.org_id}`) | {c.plan} | {c.revenue:,.2f} | {c.cogs:,.4f} | {_or_dash(c.ratio)} | "
             f"{c.shortfall:,.2f} | {c.costliest_model or '-'} |" for c in report.below_target]
    return "\n".join(rows)


def _or_dash(value) -> str:
    return "-" if value is None else str(value)
