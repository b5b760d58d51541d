"""`billing margin YYYY-MM` (a closed month's margin rows, SPEC §6) and `billing margin-report
YYYY-MM [--out DIR]`: the monthly margin report (PDF and HTML) of a closed month, materialized as
the `margin_report_pdf` asset (job `render_margin_report`) in the Dagster instance."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from billing_pipelines.cli.runs import listing_command, parse_month_arg, run_job
from billing_pipelines.resources import BillingSettings


def cmd_margin(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.month_close.documents import stored_month_close

    try:
        margin = stored_month_close(settings.warehouse(), parse_month_arg(args.month))["margin"]
    except LookupError as exc:
        raise SystemExit(f"billing: {exc}") from exc
    if args.format == "json":
        print(json.dumps(margin, indent=1))
        return
    for m in margin:
        flag = "  BELOW TARGET" if m["below_target"] else ""
        print(f"{m['org_id']:<24} revenue {m['revenue']:>10} cogs {m['cogs_usd']:>10} "
              f"margin {m['margin_pct'] or '-':>6}% ratio {m['credit_to_cost_ratio'] or '-':>6}{flag}")


def cmd_margin_report(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.margin.report_document import report_key
    from billing_pipelines.periods import month_key

    month = parse_month_arg(args.month)
    run_job("render_margin_report", month_key(month), settings)
    store = settings.warehouse().store
    for suffix in ("pdf", "html"):
        key = report_key(month, suffix)
        if args.out:
            target = Path(args.out) / f"margin-report-{args.month}.{suffix}"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(store.read_bytes(key))
            print(target)
        else:
            print(store.url(key))


def register(subparsers) -> None:
    """Add `margin` and `margin-report` to the `billing` command line."""
    listing_command(subparsers, "margin", "the margin report of a month", cmd_margin)
    cmd = subparsers.add_parser("margin-report", help="the margin report of a closed month as PDF and HTML")
    cmd.add_argument("month", help="YYYY-MM")
    cmd.add_argument("--out", help="also copy the PDF and HTML into this folder")
    cmd.set_defaults(handler=cmd_margin_report)
