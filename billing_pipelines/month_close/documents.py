"""The documents of a closed month: the union of its shards' closes, `month_close/month=YYYY-MM/`
(credit summaries, invoices, invoice usage, margin and the credit-tier advisor as JSON, the
document every reader of a closed month takes), and its draft invoices in the billing database,
where finalization and numbering happen; a final invoice that changed gets its adjustment or
credit note (billing_pipelines.invoicing.adjustments)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from fractions import Fraction

from billing_pipelines.config import BillingConfig
from billing_pipelines.delivery.outbox import queue_documents
from billing_pipelines.invoicing.adjustments import issue_adjustments
from billing_pipelines.invoicing.filing import Issuer
from billing_pipelines.invoicing.models import Invoice
from billing_pipelines.ledger.consumption import CreditSummary
from billing_pipelines.margin.advisor import TierAdvisor, tier_advice
from billing_pipelines.margin.report import MarginRow, stored_margin
from billing_pipelines.month_close.errors import MonthCloseError
from billing_pipelines.month_close.ledger import CREDIT_LEDGER, shard_partition, stored_grants
from billing_pipelines.month_close.usage import month_events_sql
from billing_pipelines.periods import month_key
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import billing_db, duck
from billing_pipelines.storage.warehouse import Warehouse, manifest_version

MONTH_CLOSE = "month_close"


def partition(month: date) -> str:
    return f"month={month_key(month)}"


@dataclass(frozen=True)
class ClosedMonth:
    """The documents of a closed month, typed; `to_json()` is what `month_close/month=YYYY-MM/`
    stores (invoices and margin rows as SPEC §6 objects)."""

    month: str
    credit_summaries: dict[str, CreditSummary]
    invoices: list[Invoice]
    invoice_usage: dict[str, dict]
    margin: list[MarginRow]
    advisor: TierAdvisor

    def to_json(self) -> dict:
        return {"month": self.month, "credit_summaries": {o: s.as_dict() for o, s in self.credit_summaries.items()},
                "invoices": [i.to_json() for i in self.invoices], "invoice_usage": self.invoice_usage,
                "margin": [m.to_json() for m in self.margin], "advisor": self.advisor.to_json()}

    @classmethod
    def from_json(cls, document: dict) -> ClosedMonth:
        """The stored documents, validated."""
        return cls(document["month"], {o: CreditSummary(**s) for o, s in document["credit_summaries"].items()},
                   [Invoice.model_validate(i) for i in document["invoices"]], document["invoice_usage"],
                   stored_margin(document["margin"]), TierAdvisor.model_validate(document["advisor"]))


def close_documents(settings: BillingSettings, config: BillingConfig, month: date, shards: int) -> ClosedMonth:
    """Join the shards' closes of `month` into its documents, store its draft invoices (and the
    adjustments of final invoices that changed); returns the documents."""
    month, wh = month.replace(day=1), settings.warehouse()
    parts = _shard_closes(wh, month, shards)
    closed = ClosedMonth.from_json({
        "month": month_key(month),
        "credit_summaries": {o: s for p in parts for o, s in p["meta"]["credit_summaries"].items()},
        "invoices": sorted((i for p in parts for i in p["meta"]["invoices"]), key=lambda i: i["org_id"]),
        "invoice_usage": {o: u for p in parts for o, u in p["meta"]["invoice_usage"].items()},
        "margin": sorted((m for p in parts for m in p["meta"]["margin"]), key=lambda m: m["org_id"]),
        "advisor": _advice(settings, wh, config, month, parts, shards),
    })
    wh.commit(MONTH_CLOSE, partition(month), None, {},
              {**closed.to_json(), "shards": [manifest_version(p) for p in parts]})
    engine = settings.engine()
    billing_db.sync_config(engine, config)
    billing_db.store_grants(engine, month_key(month), stored_grants(wh, month, shards))
    billing_db.store_draft_invoices(engine, month_key(month), closed.invoices)
    if issue_adjustments(settings, month, closed.invoices):  # e-mailed like the invoices
        queue_documents(engine, Issuer.of(settings), month_key(month), datetime.now(UTC))
    return closed


def _shard_closes(wh: Warehouse, month: date, shards: int) -> list[dict]:
    parts = [wh.manifest(CREDIT_LEDGER, shard_partition(month, s, shards)) for s in range(shards)]
    missing = [str(s) for s, p in enumerate(parts) if p is None or p["meta"]["month"] != month_key(month)]
    if missing:
        raise MonthCloseError(f"{month_key(month)}: the credit ledger of shard(s) {', '.join(missing)} of {shards} "
                              f"is not closed yet: run `billing close-month {month_key(month)}`")
    return parts


def _advice(settings: BillingSettings, wh: Warehouse, config: BillingConfig, month: date,
            parts: list[dict], shards: int) -> TierAdvisor:
    revenue = sum((Fraction(p["meta"]["usage_revenue"]) for p in parts), Fraction(0))
    tiers = {a.action: a.credits for a in config.price_book.actions}
    con = duck.connect(settings.scratch_dir())
    try:
        return tier_advice(con, month_events_sql(con, wh, month, shards), revenue,
                           config.price_book.target_credit_to_cost_ratio, tiers)
    finally:
        con.close()


def stored_month_close(wh: Warehouse, month: date) -> dict:
    """The documents of a closed month as stored (JSON; `ClosedMonth.from_json` types them); a
    clear error where it was never closed."""
    manifest = wh.manifest(MONTH_CLOSE, partition(month))
    if manifest is None:
        raise LookupError(f"{month_key(month)} is not closed yet: run `billing close-month {month_key(month)}`")
    return manifest["meta"]


def margins_by_org(wh: Warehouse, month: date) -> dict[str, MarginRow]:
    """The closed month's margin rows by customer (the usage by model and action tier invoices show)."""
    return {row.org_id: row for row in stored_margin(stored_month_close(wh, month)["margin"])}


def closes_through(wh: Warehouse, month: date, count: int) -> list[dict]:
    """The documents of closed `month` and of up to `count` - 1 closed months before it that
    billed anyone (not the lead-in month), oldest first (a margin report's trend); a clear error
    where `month` is not closed."""
    last = stored_month_close(wh, month)
    earlier = []
    for before in reversed([p for p in wh.partitions(MONTH_CLOSE) if p < partition(month)]):
        if len(earlier) >= count - 1:
            break
        meta = wh.manifest(MONTH_CLOSE, before)["meta"]
        earlier += [meta] if meta["credit_summaries"] else []
    return earlier[::-1] + [last]
