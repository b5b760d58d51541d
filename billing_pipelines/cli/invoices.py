"""`billing invoices YYYY-MM` (a month's invoices, drafts or final) and `billing finalize YYYY-MM`
(finalize them through the Dagster job `finalize_invoices`, so the run shows in the UI like every
other)."""

from __future__ import annotations

import argparse
import json
from datetime import date

from billing_pipelines.cli.runs import listing_command, parse_month_arg, run_job
from billing_pipelines.resources import BillingSettings


def register(subparsers) -> None:
    """Add `invoices` and `finalize` to the `billing` command line."""
    listing_command(subparsers, "invoices", "the invoices of a month", cmd_invoices)
    cmd = subparsers.add_parser("finalize", help="number, freeze and store the PDFs of a month's draft invoices")
    cmd.add_argument("month", help="YYYY-MM")
    cmd.add_argument("--issue-date", type=_date, default=None,
                     help="YYYY-MM-DD (default: today, UTC); its year numbers the invoices")
    cmd.set_defaults(handler=cmd_finalize)


def cmd_invoices(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.periods import month_key
    from billing_pipelines.storage import billing_db

    month = month_key(parse_month_arg(args.month))
    invoices = billing_db.list_invoices(settings.engine(), month)
    if args.format == "json":
        print(json.dumps(invoices, indent=1))
        return
    for i in invoices:
        print(f"{i['org_id']:<24} {i['status']:<6} {i['number'] or '-':<16} {i['currency']} {i['total']:>12}")


def cmd_finalize(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.cli.delivery import delivery_summary
    from billing_pipelines.invoicing.filing import today
    from billing_pipelines.invoicing.finalize import check_issue_date
    from billing_pipelines.periods import month_key
    from billing_pipelines.storage import billing_db

    month = parse_month_arg(args.month)
    try:
        check_issue_date(month, args.issue_date or today())
    except ValueError as exc:
        raise SystemExit(f"billing: {exc}") from exc
    config = {"month": month_key(month), "issue_date": (args.issue_date or today()).isoformat()}
    run_job("finalize_invoices", None, settings, {"ops": {"finalize_month_invoices": {"config": config}}})
    documents = billing_db.list_invoices(settings.engine(), month_key(month))
    final = [d for d in documents if d["status"] == "final"]
    print(f"{month_key(month)}: {len(final)} final documents, PDFs in {settings.warehouse().store.url('invoices')}")
    for d in final:
        print(f"  {d['org_id']:<24} {d.get('kind', 'invoice'):<12} {d['number']:<16} {d['currency']} {d['total']:>12}")
    print(delivery_summary(settings))


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc
