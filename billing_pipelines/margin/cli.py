"""`billing margin-report YYYY-MM [--out DIR]`: the monthly margin report (PDF and HTML) of a
closed month, materialized as the `margin_report_pdf` asset in the Dagster instance."""

from __future__ import annotations

import argparse
from pathlib import Path

from billing_pipelines.resources import BillingSettings


def cmd_margin_report(args: argparse.Namespace, settings: BillingSettings) -> None:
    import dagster as dg

    from billing_pipelines.cli import dagster_instance, parse_month_arg
    from billing_pipelines.ledger.month_close import stored_month_close
    from billing_pipelines.margin.assets import margin_report_pdf
    from billing_pipelines.margin.report_document import report_key

    month = parse_month_arg(args.month)
    try:
        stored_month_close(settings, month)
    except LookupError as exc:
        raise SystemExit(f"billing: {exc}") from exc
    result = dg.materialize([margin_report_pdf], partition_key=month.isoformat(), raise_on_error=False,
                           instance=dagster_instance(settings), resources={"billing": settings},
                           run_config={"loggers": {"console": {"config": {"log_level": "WARNING"}}}})
    if not result.success:
        raise SystemExit("billing: margin report failed: " + "; ".join(e.message for e in result.all_events
                                                                       if e.is_failure))
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
