"""Dagster assets of the month close, by billing month (partitions.billing_months) and, for the
collection of the events and the credit ledger, by month and customer shard
(partitions.month_shards: one run a shard, so Kubernetes runs them in parallel pods).

    billed_usage (landing dates of the month) --> month_landing_dates --> month_usage (each shard)
    month_usage (the shard, the month before) --------------------------^        |
    credit_ledger (the shard, the month before) --> credit_ledger (each shard) <--/
    credit_ledger (all shards) --> draft_invoices --> invoice_pdfs, finalized_invoices (finalize_invoices job)
    credit_ledger, month_usage (all shards) --> margin_report --> margin_report_pdf
    margin_report of the trend months before -----------------------^  ^-- rate_limit_simulation
    month_usage (all shards) ------------------------------------------------------^

Each month depends on the month before, so a backfill re-closes months in order and the UI
shows a close stale once anything it reads changed.

(No ``from __future__ import annotations``: Dagster reads the assets' annotations at runtime.)
"""

import warnings
from collections.abc import Sequence
from datetime import UTC, date, datetime
from decimal import Decimal

import dagster as dg
import polars as pl
from pydantic import Field

from billing_pipelines.delivery.alerts import queue_margin_alert
from billing_pipelines.delivery.assets import deliver_month_invoices
from billing_pipelines.delivery.service import delivery_engine
from billing_pipelines.ingest.assets import billed_usage
from billing_pipelines.ingest.pipeline import PIPELINE_VERSION, LandingZone
from billing_pipelines.invoicing.finalize import FinalizationRefused, file_draft_pdfs, finalize_month
from billing_pipelines.invoicing.models import Adjustment, Invoice, stored_invoice
from billing_pipelines.invoicing.review import INVOICE_COLUMNS, invoice_rows
from billing_pipelines.invoicing.seller import load_seller
from billing_pipelines.ledger.consumption import CreditSummary
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA
from billing_pipelines.margin.report import MarginRow
from billing_pipelines.margin.report_document import TREND_MONTHS, MarginReport, write_margin_report
from billing_pipelines.month_close import usage
from billing_pipelines.month_close.checks import conservation_problems, invoice_total_problems, negative_grant_problems
from billing_pipelines.month_close.documents import close_documents, closes_through, margins_by_org
from billing_pipelines.month_close.errors import MonthCloseError
from billing_pipelines.month_close.ledger import bucket_batches, close_ledger_shard, stored_grants
from billing_pipelines.partitions import billing_months, close_shard_count, month_shards, partition_check, shard_buckets
from billing_pipelines.periods import month_key, parse_month
from billing_pipelines.ratelimit.simulation import SIMULATION_DATASET
from billing_pipelines.ratelimit.simulation import rate_limit_simulation as simulate
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import billing_db, duck
from billing_pipelines.storage.warehouse import manifest_version

GROUP = "month_close"
OWNERS = ["team:finance"]
TAGS = {"domain": "billing"}
# The version of what the close computes (ledger rules, invoice and margin rules): bump it with a
# change of them, and the UI marks every closed month stale.
CLOSE_VERSION = "1"
_MONTH_BEFORE = dg.TimeWindowPartitionMapping(start_offset=-1, end_offset=-1)
with warnings.catch_warnings():  # Dagster calls these partition mappings beta; they are built in
    warnings.simplefilter("ignore", dg.BetaWarning)
    # the margin report's trend: the months before it, back to the first
    _TREND = dg.TimeWindowPartitionMapping(start_offset=-(TREND_MONTHS - 1), allow_nonexistent_upstream_partitions=True)
    # a billing month's landing dates (its window); those before the first landing date have no files
    _MONTH_DAYS = dg.TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)
    _OF_MONTH = dg.MultiToSingleDimensionPartitionMapping(partition_dimension_name="month")
    _SHARD_MONTH_BEFORE = dg.MultiPartitionMapping({
        "month": dg.DimensionPartitionMapping("month", _MONTH_BEFORE),
        "shard": dg.DimensionPartitionMapping("shard", dg.IdentityPartitionMapping()),
    })
# When what a partition reads changed (a new data version: a run that gives the same one does
# not cascade), or it is newly missing, and nothing it reads is missing or in progress. Unlike
# Dagster's eager condition, any month, not only the latest: a month closes once the next one
# has begun, and a backfill re-closes earlier months.
_EAGER = (
    (dg.AutomationCondition.newly_missing()
     | dg.AutomationCondition.any_deps_match(dg.AutomationCondition.data_version_changed())).since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing()
    & ~dg.AutomationCondition.any_deps_in_progress()
    & ~dg.AutomationCondition.in_progress()
).with_label("when what it reads changed")


def _month(partition_key: str) -> date:
    return parse_month(partition_key)


def _failing_clearly(step):
    """Run `step`; a MonthCloseError becomes a Dagster failure with its message (what to run)."""
    try:
        return step()
    except MonthCloseError as exc:
        raise dg.Failure(str(exc)) from exc


@dg.asset(
    partitions_def=billing_months, group_name=GROUP, kinds={"parquet"},
    owners=OWNERS, tags=TAGS, code_version=PIPELINE_VERSION,
    deps=[dg.AssetDep(billed_usage, partition_mapping=_MONTH_DAYS)],
    description="The landing dates the billing month takes in (SPEC §2: from the end of the previous month's "
    "grace period to the end of its own), pinned at the version of their billed usage that its shards "
    "collect. Fails, naming them, where a landing date is not ingested as it is now.",
)
def month_landing_dates(context: dg.AssetExecutionContext, billing: BillingSettings) -> dg.MaterializeResult:
    month = _month(context.partition_key)
    manifest = _failing_clearly(lambda: usage.pin_landing_dates(LandingZone(billing), month, billing.grace_days))
    return dg.MaterializeResult(metadata={"landing_dates": len(manifest["meta"]["landing_dates"])},
                                data_version=dg.DataVersion(manifest_version(manifest)))


@dg.asset(
    partitions_def=month_shards, group_name=GROUP, kinds={"duckdb", "parquet"},
    owners=OWNERS, tags=TAGS, code_version=PIPELINE_VERSION, automation_condition=_EAGER,
    deps=[dg.AssetDep(month_landing_dates, partition_mapping=_OF_MONTH),
          dg.AssetDep("month_usage", partition_mapping=_SHARD_MONTH_BEFORE)],
    description="The events the billing month bills (SPEC §2) of one customer shard, collected once: its "
    "customers' billed usage on the month's pinned landing dates and the events of this month its shard of "
    "the month before took in before it closed.",
)
def month_usage(context: dg.AssetExecutionContext, billing: BillingSettings) -> dg.MaterializeResult:
    keys = context.partition_key.keys_by_dimension
    month, shard = _month(keys["month"]), int(keys["shard"])
    zone = LandingZone(billing)
    manifest = _failing_clearly(lambda: usage.collect_month_usage(zone, month, shard, close_shard_count()))
    meta = manifest["meta"]
    return dg.MaterializeResult(
        metadata={"events": meta["events"], "handed_over_to_next_month": meta["handed_over"]},
        data_version=dg.DataVersion(manifest_version(manifest)),
    )


LEDGER_CHECKS = [
    partition_check("credits_conserved", "credit_ledger", month_shards, blocking=True,
                    description="opening + granted + purchased - (consumed - overage) - expired = closing"),
    partition_check("no_grant_below_zero", "credit_ledger", month_shards, blocking=True,
                    description="no grant's credits left is below zero"),
]
DRAFT_CHECK = partition_check("totals_add_up", "draft_invoices", billing_months, blocking=True,
                              description="lines sum to subtotal; subtotal + tax = total")


@dg.asset(
    partitions_def=month_shards, group_name=GROUP, kinds={"polars", "parquet"}, check_specs=LEDGER_CHECKS,
    owners=OWNERS, tags=TAGS, code_version=CLOSE_VERSION,
    deps=[month_usage, dg.AssetDep("credit_ledger", partition_mapping=_SHARD_MONTH_BEFORE)],
    automation_condition=_EAGER,
    description="Grants (plan, purchase, rollover), every event's consumption traced to its grants, overage "
    "and expiry, and each customer's credit summary (SPEC §3), for one customer shard: from the grants "
    "its close of the month before left alive and the month's events only.",
)
def credit_ledger(context: dg.AssetExecutionContext, billing: BillingSettings):
    keys = context.partition_key.keys_by_dimension
    month, shard, shards = _month(keys["month"]), int(keys["shard"]), close_shard_count()
    manifest = _failing_clearly(lambda: close_ledger_shard(billing, billing.billing_config(), month, shard, shards))
    summaries = {o: CreditSummary(**s) for o, s in manifest["meta"]["credit_summaries"].items()}
    yield dg.MaterializeResult(
        metadata={"customers": len(summaries),
                  "consumed_credits": sum(s.consumed for s in summaries.values()),
                  "overage_credits": sum(s.overage for s in summaries.values())},
        data_version=dg.DataVersion(manifest_version(manifest)),
    )
    grants = stored_grants(billing.warehouse(), month, shards, only=shard)
    yield _check("credit_ledger", "credits_conserved", conservation_problems(summaries))
    yield _check("credit_ledger", "no_grant_below_zero", negative_grant_problems(grants))


def _check(asset: str, name: str, problems: list[str]) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(asset_key=asset, check_name=name, passed=not problems,
                               metadata={"problems": dg.MetadataValue.json(problems[:50])})


@dg.multi_asset(
    specs=[
        dg.AssetSpec("draft_invoices", group_name=GROUP, kinds={"sqlite", "postgres"}, automation_condition=_EAGER,
                     owners=OWNERS, tags=TAGS, code_version=CLOSE_VERSION,
                     deps=[dg.AssetDep(credit_ledger, partition_mapping=_OF_MONTH)],
                     description="One draft invoice per customer (SPEC §4): plan fee, credit purchases, overage, "
                     "tax; the union of the month's shards, stored in the billing database until finalized."),
        dg.AssetSpec("margin_report", group_name=GROUP, kinds={"duckdb"}, automation_condition=_EAGER,
                     owners=OWNERS, tags=TAGS, code_version=CLOSE_VERSION,
                     deps=[dg.AssetDep(credit_ledger, partition_mapping=_OF_MONTH),
                           dg.AssetDep(month_usage, partition_mapping=_OF_MONTH)],
                     description="Recognized revenue, COGS, gross margin and credit-to-cost ratio per customer, "
                     "by model and by action tier (SPEC §5), and the credit-tier advisor over the month's events."),
    ],
    partitions_def=billing_months,
    check_specs=[DRAFT_CHECK],
)
def month_documents(context: dg.AssetExecutionContext, billing: BillingSettings):
    month, config = _month(context.partition_key), billing.billing_config()
    documents = _failing_clearly(lambda: close_documents(billing, config, month, close_shard_count()))
    below = [m.org_id for m in documents.margin if m.below_target]
    finance_alert = queue_margin_alert(delivery_engine(billing), load_seller(billing.config_dir), billing.finance_email,
                                       context.partition_key, documents.margin,
                                       str(config.price_book.target_credit_to_cost_ratio), datetime.now(UTC))
    yield dg.MaterializeResult(asset_key="draft_invoices", metadata={
        "invoices": len(documents.invoices),
        "total": dg.MetadataValue.text(str(sum((i.total for i in documents.invoices), Decimal("0.00")))),
        "by_customer": invoice_table(billing, config, month, documents.invoices),
    })
    yield dg.MaterializeResult(asset_key="margin_report", metadata={
        "customers_below_target": len(below),
        "by_customer": _margin_table(documents.margin),
        "below_target": dg.MetadataValue.json(below),
        "finance_alert": finance_alert or "none (no customer below target, or no BILLING_FINANCE_EMAIL)",
    })
    yield _check("draft_invoices", "totals_add_up", invoice_total_problems(documents.invoices))


def invoice_table(billing: BillingSettings, config, month: date,
                  invoices: Sequence[Invoice | Adjustment]) -> dg.TableMetadataValue:
    """The month's invoices, a row per customer, for the UI (see invoicing.review)."""
    rows = invoice_rows(invoices, config, month, billing.warehouse().store)
    return dg.TableMetadataValue(
        records=[dg.TableRecord(row) for row in rows],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in INVOICE_COLUMNS]),
    )


MARGIN_COLUMNS = ("org_id", "revenue", "cogs_usd", "gross_margin", "margin_pct", "credit_to_cost_ratio", "below_target")


def _margin_table(margin: list[MarginRow]) -> dg.TableMetadataValue:
    def cell(m: MarginRow, column: str):
        value = getattr(m, column)
        return value if column == "below_target" else "-" if value is None else str(value)

    return dg.TableMetadataValue(
        records=[dg.TableRecord({c: cell(m, c) for c in MARGIN_COLUMNS}) for m in margin],
        schema=dg.TableSchema(columns=[dg.TableColumn(c, "bool" if c == "below_target" else "string")
                                       for c in MARGIN_COLUMNS]),
    )


@dg.asset(partitions_def=billing_months, deps=["draft_invoices"], group_name=GROUP, kinds={"pdf"},
          automation_condition=_EAGER, owners=OWNERS, tags=TAGS, code_version=CLOSE_VERSION,
          description="The PDF of every draft invoice of the month (DRAFT watermark), for review before "
          "finalization, stored as invoices/YYYY-MM/<org>/invoice-draft.pdf.")
def invoice_pdfs(context: dg.AssetExecutionContext, billing: BillingSettings) -> dg.MaterializeResult:
    month = _month(context.partition_key)
    keys = file_draft_pdfs(billing, month, margins_by_org(billing.warehouse(), month))
    return dg.MaterializeResult(metadata={"pdfs": len(keys), "store": billing.warehouse().store.url("invoices")})


finalized_invoices = dg.AssetSpec(
    "finalized_invoices", partitions_def=billing_months, deps=["draft_invoices"], group_name="invoice_finalization",
    kinds={"pdf"}, owners=OWNERS, tags=TAGS,
    description="The month's final invoices: numbered (INV-YYYY-NNNNNN), PDF and sha256 stored, frozen for "
    "good. Recorded only by the finalize_invoices job, launched with the month and the issue date once the "
    "drafts are reviewed: it cannot be materialized otherwise.",
)


class FinalizeConfig(dg.Config):
    month: str = Field(description="The billing month to finalize, YYYY-MM (its drafts reviewed).")
    issue_date: str = Field(description="YYYY-MM-DD, after the month: the invoices' issue date; its year numbers them.")


@dg.op(description="Refuse where the drafts are stale or a blocking check of the month failed; else "
       "finalize the month (invoicing.finalize) and record finalized_invoices with every document.")
def finalize_month_invoices(context: dg.OpExecutionContext, config: FinalizeConfig, billing: BillingSettings):
    month, issue_date = _month_arg(config.month), _issue_date(config.issue_date)
    wh, key = billing.warehouse(), month_key(month)
    blockers = _stale_drafts(billing, month) + failed_blocking_checks(context.instance, key)
    margins = _failing_clearly(lambda: margins_by_org(wh, month))
    try:
        filed = finalize_month(billing, month, margins, issue_date, blockers=blockers)
    except (FinalizationRefused, ValueError) as exc:
        raise dg.Failure(str(exc)) from exc
    documents = [stored_invoice(d) for d in billing_db.list_invoices(billing.engine(), key) if d["status"] == "final"]
    numbers = [f["number"] for f in filed]
    yield dg.AssetMaterialization(asset_key="finalized_invoices", partition=key, metadata={
        "documents": len(documents),
        "numbers": dg.MetadataValue.text(f"{numbers[0]} .. {numbers[-1]}" if numbers else "none new"),
        "by_customer": invoice_table(billing, billing.billing_config(), month, documents),
    })
    yield dg.Output(key)


def _stale_drafts(billing: BillingSettings, month: date) -> list[str]:
    from billing_pipelines.month_close.chain import drafts_are_stale

    wh, config = billing.warehouse(), billing.billing_config()
    if not drafts_are_stale(wh, config, month, close_shard_count(), billing.grace_days):
        return []
    return [f"its drafts are stale (usage or the config changed since they were made): run the "
            f"close_month_documents job of {month_key(month)} (or `billing close-month {month_key(month)}`) "
            "and review them again"]


def failed_blocking_checks(instance: dg.DagsterInstance, month: str) -> list[str]:
    """The blocking checks of the month's close whose latest result failed."""
    from dagster._core.event_api import PartitionKeyFilter
    from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

    shards = [f"{month}|{s}" for s in range(close_shard_count())]
    failed = []
    for spec, partitions in [(DRAFT_CHECK, [month])] + [(c, shards) for c in LEDGER_CHECKS]:
        for partition in partitions:
            latest = instance.event_log_storage.get_latest_asset_check_execution_by_key(
                [spec.key], partition_filter=PartitionKeyFilter(key=partition)).get(spec.key)
            if latest is not None and latest.status == AssetCheckExecutionRecordStatus.FAILED:
                failed.append(f"blocking check {spec.asset_key.to_user_string()}.{spec.name} failed on {partition}")
    return failed


def _month_arg(text: str) -> date:
    try:
        return parse_month(text)
    except ValueError as exc:
        raise dg.Failure(f"month must be YYYY-MM, got {text!r}") from exc


def _issue_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise dg.Failure(f"issue_date must be YYYY-MM-DD, got {text!r}") from exc


@dg.asset(
    partitions_def=billing_months, group_name=GROUP, kinds={"polars", "parquet"},
    deps=[dg.AssetDep(month_usage, partition_mapping=_OF_MONTH)],
    automation_condition=_EAGER, owners=OWNERS, tags=TAGS, code_version=CLOSE_VERSION,
    description="The month's events (start = ts, end = ts + latency) replayed through each customer's "
    "plan limits: requests that would have been degraded or rejected, COGS saved by degrading, "
    "revenue at risk; a batch of customers at a time.",
)
def rate_limit_simulation(context: dg.AssetExecutionContext, billing: BillingSettings) -> dg.MaterializeResult:
    month, config, wh = _month(context.partition_key), billing.billing_config(), billing.warehouse()
    shards = close_shard_count()
    counts = usage.events_by_bucket(wh, month, shards)
    con = duck.connect(billing.scratch_dir())
    try:
        events = (con.sql(usage.month_events_sql(con, wh, month, shards, b)).pl().cast(BILLED_EVENT_SCHEMA)
                  for b in bucket_batches(shard_buckets(0, 1), counts))
        reports = [simulate(batch, config) for batch in events]
        con.register("report", pl.concat(reports).to_arrow())
        wh.commit(SIMULATION_DATASET, f"month={month_key(month)}", con,
                  {"simulation": "SELECT * FROM report ORDER BY org_id"}, {"month": month_key(month)})
    finally:
        con.close()
    report = pl.concat(reports)
    return dg.MaterializeResult(metadata={
        "requests": int(report["requests"].sum() or 0),
        "degraded": int(report["degraded"].sum() or 0),
        "rejected": int(report["rejected"].sum() or 0),
        "cogs_saved_usd": str(sum(report["cogs_saved_usd"].to_list(), 0)),
        "revenue_at_risk": str(sum(report["revenue_at_risk"].to_list(), 0)),
    })


MARGIN_CHECK = "customers_meet_target"


@dg.asset(
    partitions_def=billing_months, group_name=GROUP, kinds={"pdf", "html"}, automation_condition=_EAGER,
    deps=[dg.AssetDep("margin_report", partition_mapping=_TREND), rate_limit_simulation],
    owners=OWNERS, tags=TAGS, code_version=CLOSE_VERSION,
    description="The monthly margin report for finance (PDF and HTML): recognized revenue, COGS and "
    "credit-to-cost ratio against the target by customer, cost per credit by action tier and model, "
    "breakage, the customers below target, the trend over past months and the rate-limit simulation.",
    check_specs=[partition_check(MARGIN_CHECK, "margin_report_pdf", billing_months,
                                 description="Every customer's credit-to-cost ratio meets the price "
                                 "book's target (warns, listing those below it).")],
)
def margin_report_pdf(context: dg.AssetExecutionContext, billing: BillingSettings):
    month, wh = _month(context.partition_key), billing.warehouse()
    report, keys = write_margin_report(billing, closes_through(wh, month, TREND_MONTHS))
    store = wh.store
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
        check_name=MARGIN_CHECK, passed=not below, severity=dg.AssetCheckSeverity.WARN,
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
    rows = ["| customer | plan | revenue | COGS | ratio | shortfall | largest cost |",
            "|---|---|---:|---:|---:|---:|---|"]
    rows += [f"| {c.name} (`{c.org_id}`) | {c.plan} | {c.revenue:,.2f} | {c.cogs:,.4f} | {_or_dash(c.ratio)} | "
             f"{c.shortfall:,.2f} | {c.costliest_model or '-'} |" for c in report.below_target]
    return "\n".join(rows)


def _or_dash(value) -> str:
    return "-" if value is None else str(value)


start_month_close = dg.define_asset_job(
    "start_month_close", selection=[month_landing_dates], partitions_def=billing_months,
    tags={"billing/lane": "month_close"},
    description="Pin a billing month's landing dates (the first step of its close).",
)
close_month_shard = dg.define_asset_job(
    "close_month_shard", selection=[month_usage, credit_ledger], partitions_def=month_shards,
    description="Collect the events of one customer shard of a month and close its credit ledger (shards run "
    "in parallel).",
)
close_month_documents = dg.define_asset_job(
    "close_month_documents",
    selection=dg.AssetSelection.assets("draft_invoices", "margin_report", invoice_pdfs, rate_limit_simulation,
                                       margin_report_pdf),
    partitions_def=billing_months, tags={"billing/lane": "month_close"},
    description="A month's documents from its shards' ledgers: draft invoices and their PDFs, margin report, "
    "rate-limit simulation (finalization is the finalize_invoices job's).",
)
render_margin_report = dg.define_asset_job(
    "render_margin_report", selection=[margin_report_pdf], partitions_def=billing_months,
    description="The margin report (PDF and HTML) of a closed month, again.",
)


@dg.job(tags={"billing/lane": "finalization"},
        description="Finalize a reviewed billing month: launch with its month and issue date in the config. "
        "Refuses, saying why, where the drafts are stale or a blocking check of the month failed; "
        "then e-mails the documents (invoice_delivery).")
def finalize_invoices():
    deliver_month_invoices(finalize_month_invoices())


# When the month's partition ends (its close time, SPEC §2), at 02:00 UTC: pin its landing dates;
# the automation conditions then collect and close the shards, then the documents.
month_close_schedule = dg.build_schedule_from_partitioned_job(start_month_close, hour_of_day=2, minute_of_hour=0,
                                                              name="month_close_schedule")
month_close_automation = dg.AutomationConditionSensorDefinition(
    "month_close_automation", target=dg.AssetSelection.groups(GROUP), default_status=dg.DefaultSensorStatus.RUNNING,
    description="Collects and closes each shard (its events, its ledger), then the month's documents, once "
    "what they read is updated.",
)
