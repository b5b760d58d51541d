"""Closing a billing month: the ledger, draft invoices, margin and allocations, from the close of
the month before and the month's billed events, or from the full history (pure: no Dagster, no I/O)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from fractions import Fraction

import polars as pl

from billing_pipelines.config import BillingConfig
from billing_pipelines.invoicing.drafts import draft_invoice, invoice_usage
from billing_pipelines.invoicing.models import Invoice
from billing_pipelines.ledger.consumption import CreditSummary, opening_grants, run_ledger
from billing_pipelines.ledger.events import with_ledger_time
from billing_pipelines.ledger.grants import Grant, purchases_by_org
from billing_pipelines.ledger.usage import recognized_revenue, usage_totals
from billing_pipelines.margin.advisor import TierAdvisor, tier_advice
from billing_pipelines.margin.report import MarginRow, margin_report
from billing_pipelines.periods import add_months
from billing_pipelines.storage import duck


@dataclass(frozen=True)
class MonthClose:
    """Everything a month close produces, typed (`to_json()` of an invoice or margin row is the
    object of SPEC §6); `usage` and `revenue_shares` are the month's small per (org, model, action) sums."""

    month: date
    credit_summaries: dict[str, CreditSummary]
    invoices: list[Invoice]
    invoice_usage: dict[str, dict]
    margin: list[MarginRow]
    allocations: pl.DataFrame
    grants: list[Grant]
    usage: pl.DataFrame
    revenue_shares: pl.DataFrame


def close_month(
    config: BillingConfig, billed_events: pl.DataFrame, month: date, grace_days: int = 3,
    previous: MonthClose | None = None, opening: dict[str, list[Grant]] | None = None,
) -> MonthClose:
    """Close `month` for every customer billed in it (SPEC §7: from its start month to its
    cancellation, later only where events are billed in the month), from the full history of
    billed events, or from the state the month before closed with (`previous`, or its `opening`
    grants per customer, see opening_grants) and the events billed in `month` (others are
    ignored): all give the same result."""
    month = month.replace(day=1)
    events = with_ledger_time(billed_events, grace_days)
    if previous is not None:
        if previous.month != add_months(month, -1):
            raise ValueError(f"closing {month:%Y-%m} needs the close of the month before, not {previous.month:%Y-%m}")
        opening = opening_grants(previous.month, previous.credit_summaries, previous.grants)
    ledger = run_ledger(config, events, month, opening)
    usage, shares = ledger.usage, ledger.revenue_shares
    summaries = {org_id: ledger.summaries[org_id][month] for org_id in ledger.billed}
    cogs, bought = usage_totals(usage), purchases_by_org(config.purchases)
    invoices = [
        draft_invoice(config, org_id, month, summary, cogs.get((org_id,), (0, 0))[1], bought.get(org_id, []),
                      ledger.overage[org_id])
        for org_id, summary in sorted(summaries.items())
    ]
    target = config.price_book.target_credit_to_cost_ratio
    return MonthClose(
        month=month,
        credit_summaries=summaries,
        invoices=invoices,
        invoice_usage=invoice_usage(usage),
        margin=margin_report(list(summaries), month, usage, shares, ledger.grants, target),
        allocations=ledger.allocations,
        grants=ledger.grants,
        usage=usage,
        revenue_shares=shares,
    )


def advise_tiers(
    config: BillingConfig, billed_events: pl.DataFrame, closed: MonthClose, grace_days: int = 3
) -> TierAdvisor:
    """The credit-tier advisor (issue 5) over the events billed in a closed month."""
    events = with_ledger_time(billed_events, grace_days)
    billed = events.filter(pl.col("billing_month") == closed.month)
    revenue = sum(recognized_revenue(closed.revenue_shares).values(), Fraction(0))
    tiers = {a.action: a.credits for a in config.price_book.actions}
    with duck.connect() as con:
        con.register("billed", billed.to_arrow())
        return tier_advice(con, "SELECT * FROM billed", revenue, config.price_book.target_credit_to_cost_ratio, tiers)
