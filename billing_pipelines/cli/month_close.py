"""`billing close-month YYYY-MM`: the month's close through Dagster (SPEC §6)."""

from __future__ import annotations

import argparse
from decimal import Decimal

from billing_pipelines.cli.runs import parse_month_arg, require_partitions, run_job
from billing_pipelines.resources import BillingSettings


def cmd_close_month(args: argparse.Namespace, settings: BillingSettings) -> None:
    """Close the month through Dagster: first every earlier month whose close is missing or out of
    date, in order; each month as its runs (pin its landing dates, one per customer shard, documents)."""
    from dagster import MultiPartitionKey

    from billing_pipelines.month_close.chain import months_to_close
    from billing_pipelines.month_close.documents import ClosedMonth, stored_month_close
    from billing_pipelines.partitions import billing_months, close_shard_count
    from billing_pipelines.periods import month_key

    month, shards = parse_month_arg(args.month), close_shard_count()
    require_partitions(billing_months, [month_key(month)])  # before closing any month before it
    for each in months_to_close(settings.warehouse(), settings.billing_config(), month, shards, settings.grace_days):
        run_job("start_month_close", month_key(each), settings)
        for shard in range(shards):
            run_job("close_month_shard", MultiPartitionKey({"month": month_key(each), "shard": str(shard)}), settings)
        run_job("close_month_documents", month_key(each), settings)
        if each < month:
            print(f"{month_key(each)} closed first (its close was missing or out of date)")
    closed = ClosedMonth.from_json(stored_month_close(settings.warehouse(), month))
    total = sum((i.total for i in closed.invoices), Decimal("0.00"))
    print(f"{args.month} closed: {len(closed.invoices)} draft invoices, total {total:.2f}; "
          f"{sum(m.below_target for m in closed.margin)} customers below the target ratio")
    print(f"  invoices: billing invoices {args.month} --format json   (database {settings.database_url})")
    print(f"  margin:   billing margin {args.month} --format json")


def register(subparsers) -> None:
    """Add `close-month` to the `billing` command line."""
    close = subparsers.add_parser("close-month", help="ledger, draft invoices and margin of a month "
                                  "(and of every earlier month whose close is missing or out of date)")
    close.add_argument("month", help="YYYY-MM")
    close.set_defaults(handler=cmd_close_month)
