"""Dagster assets of invoicing: the draft PDFs of a closed month (part of the month close) and
the finalization finance launches from the UI (job `finalize_invoices`, one month per run)."""

from datetime import date

import dagster as dg
from pydantic import Field

from billing_pipelines.invoicing.finalize import file_draft_pdfs, finalize_month
from billing_pipelines.partitions import billing_months
from billing_pipelines.resources import BillingSettings


@dg.asset(partitions_def=billing_months, deps=["draft_invoices"], group_name="month_close", kinds={"pdf"},
          description="The PDF of every draft invoice of the month (DRAFT watermark), for review before "
          "finalization, stored as invoices/YYYY-MM/<org>/invoice-draft.pdf.")
def invoice_pdfs(context: dg.AssetExecutionContext, billing: BillingSettings) -> dg.MaterializeResult:
    keys = file_draft_pdfs(billing, date.fromisoformat(context.partition_key))
    return dg.MaterializeResult(metadata={"pdfs": len(keys), "store": billing.warehouse().store.url("invoices")})


class FinalizeConfig(dg.Config):
    issue_date: str = Field(default="", description="YYYY-MM-DD; empty: today (UTC). Its year numbers the invoices.")


FINALIZE_TAG = "billing/finalize"


@dg.asset(partitions_def=billing_months, deps=["draft_invoices"], group_name="invoice_finalization",
          kinds={"pdf"}, output_required=False,
          description="Finalize the month: number each draft invoice (INV-YYYY-NNNNNN), store its PDF and "
          "sha256, and freeze it. Finalized invoices never change again. Runs in the finalize_invoices job, "
          f"or in a billing_cycle run tagged {FINALIZE_TAG}=true.")
def finalized_invoices(context: dg.AssetExecutionContext, config: FinalizeConfig, billing: BillingSettings):
    if context.run.job_name != "finalize_invoices" and context.run.tags.get(FINALIZE_TAG) != "true":
        context.log.info(f"finalization not requested: tag the run {FINALIZE_TAG}=true to finalize")
        return
    issue_date = _issue_date(config.issue_date)
    filed = finalize_month(billing, date.fromisoformat(context.partition_key), issue_date)
    numbers = [f["number"] for f in filed]
    yield dg.MaterializeResult(metadata={
        "documents": len(filed),
        "numbers": dg.MetadataValue.text(f"{numbers[0]} .. {numbers[-1]}" if numbers else "none"),
        "filed": dg.MetadataValue.json(filed[:200]),
    })


def _issue_date(text: str) -> date | None:
    try:
        return date.fromisoformat(text) if text else None
    except ValueError as exc:
        raise dg.Failure(f"issue_date must be YYYY-MM-DD, got {text!r}") from exc


finalize_invoices = dg.define_asset_job(
    "finalize_invoices", selection=[finalized_invoices], partitions_def=billing_months,
    description="Finalize a billing month's invoices: numbers, PDFs and their sha256, frozen for good.",
)
