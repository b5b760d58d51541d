"""`billing ingest DATES...` (SPEC §6) and `billing generate` (a synthetic landing zone and its config)."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, timedelta
from pathlib import Path

from billing_pipelines.cli.runs import parse_dates, require_partitions, run_job
from billing_pipelines.resources import BillingSettings


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


def cmd_generate(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.generate import GeneratorSpec, generate

    spec = GeneratorSpec(
        seed=args.seed, orgs=args.orgs, start=date.fromisoformat(args.start), days=args.days,
        events_per_day=args.events_per_day, parquet_share=args.parquet_share, gzip_share=args.gzip_share,
        files_per_day=args.files_per_day,
    )
    stats = generate(spec, Path(args.config_out or settings.config_dir), args.landing_out or settings.landing)
    print(json.dumps(stats, indent=1))


def register(subparsers) -> None:
    """Add `ingest` and `generate` to the `billing` command line."""
    ingest = subparsers.add_parser("ingest", help="ingest, dedupe and price landing dates (any order, idempotent)")
    ingest.add_argument("dates", nargs="+", help="YYYY-MM-DD or FROM..TO")
    ingest.add_argument("--format", choices=["text", "json"], default="text")
    ingest.set_defaults(handler=cmd_ingest)

    gen = subparsers.add_parser("generate", help="write a realistic synthetic landing zone and its config")
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
