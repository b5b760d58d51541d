"""`billing`: the command line of SPEC §6. Every command runs through the Dagster definitions and
instance the UI shows (DAGSTER_HOME, default $BILLING_HOME/dagster), so every run is visible there."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from billing_pipelines.resources import BillingSettings


def parse_dates(specs: list[str]) -> list[date]:
    """`2026-11-03` and `2026-11-01..2026-11-30` into a sorted list of distinct dates."""
    from billing_pipelines.periods import parse_date_ranges

    try:
        return parse_date_ranges(specs)
    except ValueError as exc:
        raise SystemExit(f"billing: {exc}") from exc


def dagster_instance(settings: BillingSettings):
    """The Dagster instance of DAGSTER_HOME, defaulting to $BILLING_HOME/dagster (its dagster.yaml
    written where there is none: see instance.py)."""
    from dagster import DagsterInstance

    from billing_pipelines.instance import write_embedded_instance

    write_embedded_instance(Path(os.environ.setdefault("DAGSTER_HOME", str(Path(settings.home) / "dagster"))))
    return DagsterInstance.get()


def check_config(settings: BillingSettings) -> None:
    """Validate the config files before any run: a bad one exits with its one message, nothing run."""
    from billing_pipelines.config import ConfigError
    from billing_pipelines.invoicing.seller import load_seller

    try:
        settings.billing_config()
        load_seller(settings.config_dir)
    except ConfigError as exc:
        raise SystemExit(f"billing: bad config in {settings.config_dir}: {exc}") from None


def require_partitions(partitions_def, keys: list[str]) -> None:
    """Refuse keys that are not partitions, saying which are and how to go further back."""
    import dagster as dg

    outside = [key for key in keys if not partitions_def.has_partition_key(key)]
    if not outside:
        return
    monthly = isinstance(partitions_def, dg.MonthlyPartitionsDefinition)
    shown = (lambda key: key[:7]) if monthly else str
    what, last = ("billing month", "this month") if monthly else ("landing date", "today, UTC")
    raise SystemExit(
        f"billing: {', '.join(map(shown, outside[:5]))} not a {what} partition: valid are "
        f"{shown(partitions_def.get_first_partition_key())} to {shown(partitions_def.get_last_partition_key())} "
        f"(up to {last}; for earlier ones set BILLING_FIRST_DAY=YYYY-MM-DD, by default the first landed "
        "date, or the first day of the earliest customer's start month)")


def run_job(job_name: str, partition_key: str | None, settings: BillingSettings,
            run_config: dict | None = None) -> None:
    """Launch one partition of a job (None: an unpartitioned job) in this process, recorded in the
    Dagster instance."""
    from billing_pipelines.definitions import defs

    job = defs.resolve_job_def(job_name)
    if job.partitions_def is not None:
        require_partitions(job.partitions_def, [partition_key])
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = job.execute_in_process(
        partition_key=partition_key,
        instance=dagster_instance(settings),
        run_config={**quiet, **(run_config or {})},
        resources={"billing": settings},
        raise_on_error=False,
    )
    if not result.success:
        errors = [e.event_specific_data.error for e in result.all_events if e.is_step_failure]
        causes = [what_failed(err) for err in errors if err] or [f"see Dagster run {result.run_id}"]
        raise SystemExit(f"billing: {' '.join(filter(None, [job_name, partition_key]))} failed: " + "; ".join(causes))


def what_failed(error) -> str:
    """The first line of a step failure's cause that says something (never a caret line), with
    the exception's class name but not its module: `ConfigError: customers.yaml: ...`."""
    cause = error.cause or error
    line = next((line.strip() for line in cause.message.splitlines() if re.search(r"\w", line)), cause.cls_name)
    return re.sub(r"^[\w.]+\.(?=\w+: )", "", line)


def cmd_ingest(args: argparse.Namespace, settings: BillingSettings) -> None:
    """Ingest each date (SPEC §6): print what was ingested; exit 3 where some dates have unreadable
    files (each named on stderr with what to do), 1 where a date could not be ingested at all."""
    from billing_pipelines.ingest.pipeline import summary_of
    from billing_pipelines.partitions import landing_dates

    days = parse_dates(args.dates)
    require_partitions(landing_dates, [d.isoformat() for d in days])
    failed: dict[date, str] = {}
    for day in days:
        try:
            run_job("daily_ingest", day.isoformat(), settings)
        except SystemExit as failure:  # the other dates are still ingested and printed
            failed[day] = str(failure.code)
    summaries = [summary_of(settings, day).to_json() for day in days if day not in failed]
    _print_ingested(summaries, args.format, many=len(days) > 1)
    for s in summaries:
        for f in s.get("unreadable_files", []):
            print(f"billing: {f['key']} is unreadable ({f['error']}), so none of its rows is counted: "
                  f"replace it, then run `billing ingest {s['landing_date']}` again", file=sys.stderr)
    if failed:
        raise SystemExit("\n".join(failed.values()))
    if any(s.get("unreadable_files") for s in summaries):
        raise SystemExit(3)


def _print_ingested(summaries: list[dict], fmt: str, many: bool) -> None:
    if fmt == "json":
        if summaries:
            print(json.dumps(summaries if many else summaries[0], indent=1))
        return
    for s in summaries:
        quarantined = sum(s["quarantined"].values())
        print(f"{s['landing_date']}: {s['rows_read']} read, {s['billed']} billed, "
              f"{s['duplicates']} duplicates, {quarantined} quarantined {s['quarantined'] or ''}".rstrip())
        for f in s.get("skipped_files", []):
            print(f"  skipped {f['key']}: {f['reason']}")


def parse_month_arg(text: str) -> date:
    from billing_pipelines.periods import parse_month

    try:
        return parse_month(text)
    except ValueError as exc:
        raise SystemExit(f"billing: {exc}") from exc


def cmd_close_month(args: argparse.Namespace, settings: BillingSettings) -> None:
    """Close the month through Dagster: first every earlier month whose close is missing or out of
    date, in order; each month as its runs (collect, one per customer shard, documents)."""
    from dagster import MultiPartitionKey

    from billing_pipelines.month_close.chain import months_to_close
    from billing_pipelines.month_close.documents import ClosedMonth, stored_month_close
    from billing_pipelines.partitions import billing_months, close_shard_count
    from billing_pipelines.periods import month_key

    month, shards = parse_month_arg(args.month), close_shard_count()
    require_partitions(billing_months, [month_key(month)])  # before closing any month before it
    for each in months_to_close(settings.warehouse(), settings.billing_config(), month, shards, settings.grace_days):
        run_job("collect_month_usage", month_key(each), settings)
        for shard in range(shards):
            run_job("close_credit_ledger", MultiPartitionKey({"month": month_key(each), "shard": str(shard)}), settings)
        run_job("month_close", month_key(each), settings)
        if each < month:
            print(f"{month_key(each)} closed first (its close was missing or out of date)")
    closed = ClosedMonth.from_json(stored_month_close(settings.warehouse(), month))
    total = sum((i.total for i in closed.invoices), Decimal("0.00"))
    print(f"{args.month} closed: {len(closed.invoices)} draft invoices, total {total:.2f}; "
          f"{sum(m.below_target for m in closed.margin)} customers below the target ratio")
    print(f"  invoices: billing invoices {args.month} --format json   (database {settings.database_url})")
    print(f"  margin:   billing margin {args.month} --format json")


def cmd_invoices(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines import billing_db
    from billing_pipelines.periods import month_key

    month = month_key(parse_month_arg(args.month))
    invoices = billing_db.list_invoices(settings.engine(), month)
    if args.format == "json":
        print(json.dumps(invoices, indent=1))
        return
    for i in invoices:
        print(f"{i['org_id']:<24} {i['status']:<6} {i['number'] or '-':<16} {i['currency']} {i['total']:>12}")


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


def cmd_generate(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.generate import GeneratorSpec, generate

    spec = GeneratorSpec(
        seed=args.seed, orgs=args.orgs, start=date.fromisoformat(args.start), days=args.days,
        events_per_day=args.events_per_day, parquet_share=args.parquet_share, gzip_share=args.gzip_share,
        files_per_day=args.files_per_day,
    )
    stats = generate(spec, Path(args.config_out or settings.config_dir), args.landing_out or settings.landing)
    print(json.dumps(stats, indent=1))


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
    parser = argparse.ArgumentParser(prog="billing", description=__doc__)
    parser.set_defaults(needs_config=True)  # commands that only read stored results, or write the config, say False
    sub = parser.add_subparsers(dest="command", required=True)

    ingest = sub.add_parser("ingest", help="ingest, dedupe and price landing dates (any order, idempotent)")
    ingest.add_argument("dates", nargs="+", help="YYYY-MM-DD or FROM..TO")
    ingest.add_argument("--format", choices=["text", "json"], default="text")
    ingest.set_defaults(handler=cmd_ingest)

    close = sub.add_parser("close-month", help="ledger, draft invoices and margin of a month, from all history")
    close.add_argument("month", help="YYYY-MM")
    close.set_defaults(handler=cmd_close_month)

    for name, handler, what in (("invoices", cmd_invoices, "the invoices of a month"),
                                ("margin", cmd_margin, "the margin report of a month")):
        cmd = sub.add_parser(name, help=what)
        cmd.add_argument("month", help="YYYY-MM")
        cmd.add_argument("--format", choices=["text", "json"], default="text")
        cmd.set_defaults(handler=handler, needs_config=False)

    from billing_pipelines import backfill
    from billing_pipelines.dashboard import cli as dashboard_cli
    from billing_pipelines.delivery import cli as delivery_cli
    from billing_pipelines.invoicing import cli as invoicing_cli
    from billing_pipelines.margin import cli as margin_cli

    for domain in (backfill, invoicing_cli, margin_cli, dashboard_cli, delivery_cli):
        domain.register(sub)

    demo = sub.add_parser("demo", help="a demo billing cycle on the embedded default (no service needed)")
    demo.set_defaults(handler=cmd_demo, needs_config=False)  # generates one, or checks it in each step

    gen = sub.add_parser("generate", help="write a realistic synthetic landing zone and its config")
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--orgs", type=int, default=12)
    gen.add_argument("--start", default=(date.today().replace(day=1) - timedelta(days=1)).replace(day=1).isoformat())
    gen.add_argument("--days", type=int, default=35)
    gen.add_argument("--events-per-day", type=int, default=4000)
    gen.add_argument("--parquet-share", type=float, default=0.4, help="share of files written as Parquet")
    gen.add_argument("--gzip-share", type=float, default=0.5, help="share of JSON files gzipped")
    gen.add_argument("--files-per-day", type=int, default=4)
    gen.add_argument("--config-out", help="default: BILLING_CONFIG")
    gen.add_argument("--landing-out", help="default: BILLING_LANDING")
    gen.set_defaults(handler=cmd_generate, needs_config=False)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    settings = BillingSettings.from_env()
    if args.needs_config:
        check_config(settings)
    args.handler(args, settings)


if __name__ == "__main__":
    sys.exit(main())
