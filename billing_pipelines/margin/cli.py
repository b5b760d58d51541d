"""`billing margin-report YYYY-MM [--out DIR]`: the monthly margin report (PDF and HTML) of a
closed month, materialized as the `margin_report_pdf` asset (job `render_margin_report`) in the Dagster
instance."""

from __future__ import annotations

import argparse
from pathlib import Path

from billing_pipelines.resources import BillingSettings


def cmd_margin_report(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.cli import parse_month_arg, run_job
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
    """Add `margin-report` to the `billing` command's subparsers."""
    cmd = subparsers.add_parser("margin-report", help="the margin report of a closed month as PDF and HTML")
    cmd.add_argument("month", help="YYYY-MM")
    cmd.add_argument("--out", help="also copy the PDF and HTML into this folder")
    cmd.set_defaults(handler=cmd_margin_report)
