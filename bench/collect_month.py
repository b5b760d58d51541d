"""Benchmark of issue 14: the collection of one billing month's events (`month_usage`) in 1
customer shard and in SHARDS, side by side, each shard's run a fresh process (its peak RSS from
the OS).

Lands and ingests the landing dates of January 2025 and its grace days (EVENTS events a date,
the landing files of bench/year_bench.py; customers start 2025-01-01), pins the landing dates
of January and of its lead-in month (December 2024, which takes in January 1-3) and collects
the lead-in month in 1 and in SHARDS shards, then collects January again and again: rounds
alternate between 1 shard and SHARDS shards run one after another (in parallel pods each
shard's run is its own: the month's collection takes the slowest shard's time).

    .venv/bin/python bench/collect_month.py [--events 1000000] [--shards 4] [--rounds 2] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import timedelta
from pathlib import Path

from bench_support import ROOT, fresh_home, fresh_process
from year_bench import YEAR, landing_file, write_config

sys.path.insert(0, str(ROOT))
GRACE_DAYS = 3

COLLECT = """
import json, sys, time
from datetime import date
from billing_pipelines.ingest.pipeline import LandingZone
from billing_pipelines.month_close.usage import collect_month_usage
from billing_pipelines.resources import BillingSettings
settings = BillingSettings.from_env(json.loads(sys.argv[1]))
month, shard, shards = date.fromisoformat(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
start = time.perf_counter()
what = {"events": collect_month_usage(LandingZone(settings), month, shard, shards)["meta"]["events"]}
"""


def land_month(out: Path, env: dict, events: int, customers: int, shard_counts: list[int]) -> None:
    """Land and ingest the month's landing dates, pin them and the lead-in month's, and collect
    the lead-in month for each of `shard_counts`."""
    from billing_pipelines.ingest.pipeline import LandingZone, ingest
    from billing_pipelines.month_close.usage import collect_month_usage, pin_landing_dates
    from billing_pipelines.partitions import month_window
    from billing_pipelines.periods import add_months
    from billing_pipelines.resources import BillingSettings

    write_config(out / "config", customers)
    settings = BillingSettings.from_env(env)
    first, end = month_window(YEAR, GRACE_DAYS)
    days = [YEAR + timedelta(days=n) for n in range((end - YEAR).days)]
    for day in days:
        landing_file(out / "landing" / f"dt={day}" / "events.parquet", day, events, customers, seed=14)
    ingest(settings, days)
    zone, lead_in = LandingZone(settings), add_months(YEAR, -1)
    for month in (lead_in, YEAR):
        pin_landing_dates(zone, month, GRACE_DAYS)
    for shards in shard_counts:
        for shard in range(shards):
            collect_month_usage(zone, lead_in, shard, shards)
    print(f"landed and ingested {len(days)} dates of {events:,} events; January's window {first}..{end}", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "collect"))
    args = parser.parse_args(argv)

    out = Path(args.out)
    env = fresh_home(out, BILLING_GRACE_DAYS=str(GRACE_DAYS))
    runs = {1: [], args.shards: []}
    land_month(out, env, args.events, args.customers, list(runs))
    for _ in range(args.rounds):
        for shards in runs:
            runs[shards].append([fresh_process(COLLECT, env, YEAR.isoformat(), str(s), str(shards))
                                 for s in range(shards)])
    report = {shards: {"seconds_by_shard": [statistics.median(r[s]["seconds"] for r in rounds) for s in range(shards)],
                       "peak_rss_mib_by_shard": [max(r[s]["peak_rss_mib"] for r in rounds) for s in range(shards)],
                       "events": sum(rounds[0][s]["what"]["events"] for s in range(shards))}
              for shards, rounds in runs.items()}
    (out / "report.json").write_text(json.dumps(report, indent=1))
    for shards, figures in report.items():
        seconds = figures["seconds_by_shard"]
        print(f"{shards} shard(s): {figures['events']:,} events; {[round(s, 1) for s in seconds]} s "
              f"(sum {sum(seconds):.1f} s, slowest {max(seconds):.1f} s), "
              f"peak RSS {figures['peak_rss_mib_by_shard']} MiB")


if __name__ == "__main__":
    main()
