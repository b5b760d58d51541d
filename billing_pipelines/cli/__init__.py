"""`billing`: the command line of SPEC §6. Every command runs through the Dagster definitions and
instance the UI shows (DAGSTER_HOME, default $BILLING_HOME/dagster), so every run is visible there.

One module per stage adds its commands (`register`); `runs` holds what they share."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from datetime import date
from pathlib import Path

from billing_pipelines.cli import backfill, delivery, ingest, invoices, margin, month_close, serve
from billing_pipelines.cli.runs import check_config
from billing_pipelines.resources import BillingSettings

COMMANDS = (ingest, backfill, month_close, invoices, margin, serve, delivery)


def cmd_demo(args: argparse.Namespace, settings: BillingSettings) -> None:
    """Generate a landing zone where there is none (from the first day of the month before last),
    ingest it, and close every billing month up to the one landing dates go into now."""
    from billing_pipelines.ingest.landing import landing_dates
    from billing_pipelines.partitions import billing_months
    from billing_pipelines.periods import add_months, month_key

    today = date.today()
    start = add_months(today.replace(day=1), -2)
    if not Path(settings.config_dir, "customers.yaml").exists():
        print(f"generating a landing zone from {start} to {today} in {settings.landing}, "
              f"config in {settings.config_dir}")
        main(["generate", "--start", start.isoformat(), "--days", str((today - start).days + 1)])
        # the Dagster partitions start with the customers: load them afresh, over the new config
        raise SystemExit(subprocess.run([sys.executable, "-m", "billing_pipelines.cli", "demo"]).returncode)
    days = sorted(landing_dates(settings.landing_store()))
    print(f"ingesting {len(days)} landing dates through Dagster ({days[0]}..{days[-1]})")
    main(["ingest", f"{days[0]}..{days[-1]}"])
    main(["close-month", billing_months.get_last_partition_key()])  # and every month before it
    print(f"margin report of {month_key(start)}:")
    main(["margin-report", month_key(start)])
    print(f"""
Results (BILLING_HOME={settings.home}):
  warehouse (Parquet, query with DuckDB): {settings.warehouse_root}
  draft invoice PDFs:                     {settings.warehouse().store.url('invoices')}
  billing database:                       {settings.database_url}
  invoices:  .venv/bin/billing invoices {month_key(start)}
  margin:    .venv/bin/billing margin {month_key(start)}
  finalize:  write {settings.config_dir}/seller.yaml (docs/invoices.md),
             then .venv/bin/billing finalize {month_key(start)}
  portal:    .venv/bin/billing serve; .venv/bin/billing portal-link <org_id> (or billing tokens create <org_id>)
  gateway:   .venv/bin/billing gateway-keys create <name> (for /v1/ratelimit/)
  Dagster UI on the same instance: DAGSTER_HOME={os.environ['DAGSTER_HOME']} .venv/bin/dagster dev -w workspace.yaml""")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="billing", description=__doc__.split("\n\n")[0])
    parser.set_defaults(needs_config=True)  # commands that only read stored results, or write the config, say False
    sub = parser.add_subparsers(dest="command", required=True)
    for commands in COMMANDS:
        commands.register(sub)
    demo = sub.add_parser("demo", help="a demo billing cycle on the embedded default (no service needed)")
    demo.set_defaults(handler=cmd_demo, needs_config=False)  # generates one, or checks it in each step
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = BillingSettings.from_env()
    if args.needs_config:
        check_config(settings)
    args.handler(args, settings)
