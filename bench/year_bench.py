"""Benchmark of issue 14: a simulated year at one fixed daily volume, to show that no cost grows
with the length of history.

Writes, for each of DAYS landing dates of 2025, one Parquet file of EVENTS events (seeded):
300 customers on the example plans (free, pro, enterprise), a few purchases, 0.5 % redeliveries
of the previous three days' request_ids, 0.1 % usage a month late. Each date is ingested as it
lands (validate, price, dedupe against the request index, commit) and each month is closed
(collect, credit ledger, documents) once its grace period is over. To fit the disk, the landed
file and the priced events of a date are deleted once its month is closed (the request index,
the closes and the dates measured below stay): nothing the measured runs read is deleted.

Then, side by side in one run (rounds alternate, each run a fresh process, its peak RSS from
the OS): the ingest of dates 10, 100 and 365 (priced again from their files, decided against
every earlier date) and the close of months 1, 6 and 12 (collected, ledger and documents again).

    .venv/bin/python bench/year_bench.py [--events 1000000] [--days 365] [--rounds 3] [--out DIR] [--reuse]

--reuse takes the year an earlier run left in DIR and repeats only the side-by-side rounds (report in
DIR/report-reuse.json); --only ingest (or close) measures one kind.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from bench_support import ROOT, fresh_home, fresh_process, home

sys.path.insert(0, str(ROOT))
YEAR = date(2025, 1, 1)
MEASURED_DAYS = (10, 100, 365)
MEASURED_MONTHS = (1, 6, 12)
MODELS = ["frontier-large", "balanced-medium", "small-fast", "embed-v3"]
ACTIONS = ["simple", "complex", "document", "embedding"]

RUN = """
import json, sys, time
from datetime import date
from billing_pipelines.ingest.pipeline import LandingZone, ingest
from billing_pipelines.month_close.documents import close_documents
from billing_pipelines.month_close.ledger import close_ledger_shard
from billing_pipelines.month_close.usage import collect_month_usage, pin_landing_dates
from billing_pipelines.resources import BillingSettings
settings = BillingSettings.from_env(json.loads(sys.argv[1]))
kind, value = sys.argv[2], sys.argv[3]
start = time.perf_counter()
if kind == "ingest":
    [summary] = ingest(settings, [date.fromisoformat(value)])
    what = summary.to_json()
else:
    month, config = date.fromisoformat(value), settings.billing_config()
    zone = LandingZone(settings, config)
    pin_landing_dates(zone, month, settings.grace_days)
    usage = collect_month_usage(zone, month, 0, 1)
    close_ledger_shard(settings, config, month, 0, 1)
    documents = close_documents(settings, config, month, 1)
    what = {"events": usage["meta"]["events"], "invoices": len(documents.invoices)}
"""


def write_config(folder: Path, customers: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    examples = ROOT / "tests" / "data" / "examples"
    shutil.copy(examples / "plans.yaml", folder / "plans.yaml")
    book = (examples / "pricebook.yaml").read_text().replace("effective_from: 2026-01-01", "effective_from: 2024-01-01")
    (folder / "pricebook.yaml").write_text(book.replace("effective_from: 2026-11-15", "effective_from: 2025-11-15"))
    plans = ["free", "pro", "pro", "pro", "enterprise"]
    lines = ["customers:"] + [
        f"  - {{org_id: org-{i:03d}, name: Org {i}, plan: {plans[i % 5]}, start_date: 2025-01-01, tax_rate: '0.10'}}"
        for i in range(customers)]
    lines += ["credit_purchases:"] + [
        f"  - {{purchase_id: p-{i:03d}, org_id: org-{i:03d}, purchased_at: '2025-{1 + i % 12:02d}-15T12:00:00Z', "
        f"credits: 50000, price: '400.00', expires_after_months: {1 + i % 12}}}" for i in range(0, customers, 10)]
    (folder / "customers.yaml").write_text("\n".join(lines) + "\n")


def landing_file(path: Path, day: date, n: int, customers: int, seed: int) -> None:
    """One landing date's events: fresh ids, 0.5 % redeliveries of the last three days' ids, and
    0.1 % of them 20-40 days old (late usage)."""
    rng = np.random.default_rng(seed * 100_000 + (day - YEAR).days)
    index = (day - YEAR).days
    redelivered = rng.random(n) < 0.005
    back = rng.integers(1, 4, n)
    source_day = np.where(redelivered & (index >= back), index - back, index)
    source_row = np.where(redelivered & (index >= back), rng.integers(0, n, n), np.arange(n))
    ids = _joined("r", source_day, "-", source_row)
    seconds = rng.integers(0, 86_400, n) - np.where(rng.random(n) < 0.001, rng.integers(20, 40, n) * 86_400, 0)
    ts = (np.datetime64(day.isoformat()) + seconds.astype("timedelta64[s]")).astype("datetime64[us]")
    ts = np.maximum(ts, np.datetime64(YEAR.isoformat()))
    orgs = pc.utf8_lpad(pc.cast(pa.array(rng.integers(0, customers, n)), pa.string()), 3, "0")
    orgs = pc.binary_join_element_wise("org-", orgs, "")
    table = pa.table({
        "request_id": ids, "org_id": orgs, "user_id": _joined("u", rng.integers(0, 50, n)),
        "ts": pa.array(ts, pa.timestamp("us", "UTC")),
        "model": pa.array(np.array(MODELS)[rng.integers(0, 4, n)]).dictionary_encode(),
        "action": pa.array(np.array(ACTIONS)[rng.integers(0, 4, n)]).dictionary_encode(),
        "input_tokens": rng.integers(0, 4000, n), "output_tokens": rng.integers(0, 1000, n),
        "latency_ms": rng.integers(10, 5000, n),
    })
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)



def _joined(*parts) -> pa.Array:
    """Strings and integer arrays joined element-wise into one string array (Arrow: 20 times
    faster than numpy's char functions for a million rows)."""
    strings = [part if isinstance(part, str) else pc.cast(pa.array(part), pa.string()) for part in parts]
    return pc.binary_join_element_wise(*strings, "")


def forget_stage(home: Path, day: date) -> None:
    """Make the next ingest of `day` price it again (its outputs are pure: the same bytes)."""
    for dataset in ("priced_events", "billed_usage"):
        (home / "warehouse" / dataset / f"dt={day}" / "_manifest.json").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--customers", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "year"))
    parser.add_argument("--reuse", action="store_true", help="only the side-by-side rounds, on the year in --out")
    parser.add_argument("--only", choices=["ingest", "close"], help="measure one kind side by side")
    args = parser.parse_args(argv)

    out = Path(args.out)
    days = [YEAR + timedelta(days=n) for n in range(args.days)]
    if args.reuse:
        env = home(out, BILLING_GRACE_DAYS="3")
        timeline = json.loads((out / "report.json").read_text())["timeline"]
    else:
        env = fresh_home(out, BILLING_GRACE_DAYS="3")
        timeline = simulate_year(out, env, args, days)
    side_by_side(out, env, args, days, timeline)


def simulate_year(out: Path, env: dict, args, days: list[date]) -> dict:
    """Land, ingest and close every date and month of the year; the seconds of each."""
    from billing_pipelines.ingest.pipeline import ingest
    from billing_pipelines.month_close.run import close_months
    from billing_pipelines.periods import add_months
    from billing_pipelines.resources import BillingSettings

    write_config(out / "config", args.customers)
    settings = BillingSettings.from_env(env)
    keep = {days[n - 1] for n in MEASURED_DAYS if n <= args.days} | _window_days(settings, MEASURED_MONTHS)
    timeline = {"ingest": {}, "close": {}}
    for day in days + [days[-1] + timedelta(days=n) for n in range(1, 4)]:
        if day in days:
            landing_file(out / "landing" / f"dt={day}" / "events.parquet", day, args.events, args.customers, args.seed)
            started = time.perf_counter()
            [summary] = ingest(settings, [day])
            timeline["ingest"][day.isoformat()] = round(time.perf_counter() - started, 3)
            if summary.billed < args.events // 2:  # the simulation must bill, or nothing is measured
                sys.exit(f"{day}: only {summary.billed:,} of {summary.rows_read:,} events billed: {summary.to_json()}")
        if day.day == 3 and day > YEAR + timedelta(days=3):  # the grace period of the month before is over
            month = add_months(day.replace(day=1), -1)
            started = time.perf_counter()
            close_months(settings, month, shards=1)
            timeline["close"][f"{month:%Y-%m}"] = round(time.perf_counter() - started, 3)
            _free_month(out, settings, month, keep)
        print(f"{datetime.now():%H:%M:%S} {day}: {timeline['ingest'].get(day.isoformat(), '-')} s "
              f"{timeline['close'].get(f'{add_months(day.replace(day=1), -1):%Y-%m}', '') if day.day == 3 else ''}",
              flush=True)
    return timeline


def side_by_side(out: Path, env: dict, args, days: list[date], timeline: dict) -> None:
    """The measured dates and months again, rounds alternating, each run a fresh process."""
    from billing_pipelines.periods import add_months

    measured_days = [n for n in MEASURED_DAYS if n <= args.days and args.only != "close"]
    measured_months = [n for n in MEASURED_MONTHS
                       if f"{add_months(YEAR, n - 1):%Y-%m}" in timeline["close"] and args.only != "ingest"]
    side = {"ingest": {n: [] for n in measured_days}, "close": {n: [] for n in measured_months}}
    for _ in range(args.rounds):
        for n in measured_days:
            forget_stage(out / "home", days[n - 1])
            side["ingest"][n].append(fresh_process(RUN, env, "ingest", days[n - 1].isoformat()))
        for n in measured_months:
            side["close"][n].append(fresh_process(RUN, env, "close", add_months(YEAR, n - 1).isoformat()))
    report = {"events_per_date": args.events, "customers": args.customers, "timeline": timeline,
              "side_by_side": {kind: {n: _summary(runs) for n, runs in by.items()} for kind, by in side.items()}}
    (out / ("report-reuse.json" if args.reuse else "report.json")).write_text(json.dumps(report, indent=1, default=str))
    _print(report)


def _window_days(settings, months: tuple[int, ...]) -> set[date]:
    """The landing dates the closes of `months` (numbers in the year) read."""
    from billing_pipelines.partitions import month_window
    from billing_pipelines.periods import add_months

    kept = set()
    for n in months:
        first, end = month_window(add_months(YEAR, n - 1), settings.grace_days)
        kept |= {first + timedelta(days=d) for d in range((end - first).days)}
    return kept


def _free_month(out: Path, settings, month: date, keep: set[date]) -> None:
    """Delete the landed files and priced events of the dates whose events are all closed now (a
    month's partition ends 3 days into the next), but those the measured runs read."""
    from billing_pipelines.partitions import month_window

    first, end = month_window(month, settings.grace_days)
    for n in range((end - first).days):
        day = first + timedelta(days=n)
        if day not in keep:
            shutil.rmtree(out / "landing" / f"dt={day}", ignore_errors=True)
            shutil.rmtree(out / "home" / "warehouse" / "priced_events" / f"dt={day}", ignore_errors=True)


def _summary(runs: list[dict]) -> dict:
    return {"median_seconds": round(statistics.median(r["seconds"] for r in runs), 3),
            "seconds": [round(r["seconds"], 3) for r in runs],
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs), "what": runs[-1]["what"]}


def _print(report: dict) -> None:
    side = report["side_by_side"]
    print(f"\n{report['events_per_date']:,} events a date, {report['customers']} customers")
    for kind, label in (("ingest", "date"), ("close", "month")):
        first = None
        for n, s in side[kind].items():
            first = first or s["median_seconds"]
            print(f"{kind:<7} {label} {n:>3}: median {s['median_seconds']:7.2f} s ({s['seconds']}), "
                  f"x{s['median_seconds'] / first:.2f} of the first, peak RSS {s['peak_rss_mib']:,} MiB")


if __name__ == "__main__":
    main()
