"""Benchmark: finalize a month of realistic one-page invoices.

Seeds `--count` draft invoices (one customer each) and the month close they come from in a
temporary BILLING_HOME, then times the two phases of finalization: numbering and freezing (one
transaction) and filing (render, store, sha256 of every PDF, `--workers` processes).

    python bench/finalize_bench.py [--count 1000] [--workers 2] [--database-url URL]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from datetime import date
from pathlib import Path

import yaml

from billing_pipelines.invoicing.examples import EXAMPLE_CUSTOMER, example_invoice
from billing_pipelines.invoicing.filing import file_pdfs
from billing_pipelines.invoicing.finalize import number_drafts
from billing_pipelines.invoicing.models import Invoice
from billing_pipelines.margin.report import MarginRow
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import billing_db

MONTH = date(2026, 11, 1)
SPEC_FIELDS = ("org_id", "month", "currency", "lines", "subtotal", "tax", "total", "cogs_usd", "credits")
PLANS = """plans:
  - {plan: pro, monthly_fee: "49.00", included_credits: 5000, overage_credit_price: "0.0120",
     rollover: {max_credits: 2500, expires_after_months: 1}}
"""
PRICE_BOOK = """currency: USD
target_credit_to_cost_ratio: "3.0"
models: [{model: small-fast, effective_from: 2026-01-01, input_usd_per_1k: "0.00015", output_usd_per_1k: "0.0006"}]
actions: [{action: simple, credits: 1}]
"""


def seed(settings: BillingSettings, count: int) -> dict[str, MarginRow]:
    """`count` Pro customers, each with a draft November invoice; returns their usage by model and
    tier (the margin rows a close stores)."""
    config = Path(settings.config_dir)
    config.mkdir(parents=True)
    (config / "plans.yaml").write_text(PLANS)
    (config / "pricebook.yaml").write_text(PRICE_BOOK)
    customers = [{**EXAMPLE_CUSTOMER, "org_id": f"org-{i:05d}", "name": f"Customer {i}", "plan": "pro",
                  "start_date": "2026-01-01"} for i in range(count)]
    (config / "customers.yaml").write_text(yaml.safe_dump({"customers": customers}))
    examples = [example_invoice(org_id=c["org_id"], extra_purchases=i % 4) for i, c in enumerate(customers)]
    margin = [MarginRow.model_validate({
        "org_id": e["org_id"], "month": e["month"], "revenue": "0.00", "breakage": "0.00", "cogs_usd": e["cogs_usd"],
        "gross_margin": "0.00", "margin_pct": None, "credit_to_cost_ratio": None, "below_target": False,
        **{f"by_{field}": [{field: u[field], "credits": u["credits"], "revenue": "0.00", "cogs_usd": u["cost_usd"]}
                           for u in e[f"usage_by_{field}"]] for field in ("model", "action")}})
        for e in examples]
    drafts = [Invoice.model_validate({**{k: e[k] for k in SPEC_FIELDS}, "status": "draft", "number": None})
              for e in examples]
    billing_db.store_draft_invoices(billing_db.engine_from_url(settings.database_url), "2026-11", drafts)
    return {m.org_id: m for m in margin}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--database-url", help="default: SQLite in the temporary BILLING_HOME")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="finalize-bench-") as home:
        env = {"BILLING_HOME": home, "BILLING_CONFIG": f"{home}/config", "BILLING_LANDING": f"{home}/landing"}
        database = {"BILLING_DATABASE_URL": args.database_url} if args.database_url else {}
        settings = BillingSettings.from_env({**env, **database})
        margins = seed(settings, args.count)
        start = time.perf_counter()
        numbers = number_drafts(settings, MONTH, date(2026, 12, 4), margins)
        numbered = time.perf_counter() - start
        start = time.perf_counter()
        filed = file_pdfs(settings, billing_db.engine_from_url(settings.database_url), "2026-11", args.workers)
        filing = time.perf_counter() - start
    print(json.dumps({
        "invoices": len(numbers), "database": settings.database_url.split(":", 1)[0],
        "numbering_seconds": round(numbered, 2), "numbered_per_second": round(len(numbers) / numbered, 1),
        "filing_seconds": round(filing, 1), "workers": args.workers,
        "filed_per_second": round(len(filed) / filing, 1),
    }, indent=1))


if __name__ == "__main__":
    main()
