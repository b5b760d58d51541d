"""Benchmark of issue 3: close a month of DAYS x EVENTS_PER_DAY billed events for CUSTOMERS.

The billed events are generated directly as the ledger's input DataFrame (seeded, so every run
sees the same data) with the example price book and plans; customers start the month before,
so the month opens with rollover grants, and some buy credits mid-month. Prints the wall and CPU
time of close_month and the peak resident memory (ru_maxrss) after generating and closing.

    python bench/close_month.py [--events-per-day 1000000] [--customers 10000] [--days 30] [--plan-changes]
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from dataclasses import replace
from datetime import date, datetime, timezone
from decimal import Decimal
from pathlib import Path

import polars as pl

from billing_pipelines.close import close_month
from billing_pipelines.config import CreditPurchase, Customer, PlanChange, load_config
from billing_pipelines.ledger.checks import conservation_problems, invoice_total_problems
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA

CONFIG = Path(__file__).resolve().parents[1] / "tests" / "data" / "examples"  # the example price book and plans
MONTH = date(2026, 11, 1)
PLAN_MIX = ("free", "pro", "pro", "pro", "enterprise")


def bench_config(customers: int, seed: int):
    """The example price book and plans with `customers` customers and a purchase for 1 in 10."""
    base = load_config(CONFIG)
    start = date(2026, 10, 1)
    people = {
        f"org-{i:05d}": Customer(f"org-{i:05d}", f"Org {i}", PLAN_MIX[(i * 7 + seed) % 5], start, Decimal("0.10"))
        for i in range(customers)
    }
    purchases = tuple(
        CreditPurchase(f"p-{i:05d}", f"org-{i:05d}",
                       datetime(2026, 11, 1 + i % 28, 12, tzinfo=timezone.utc), 10000, Decimal("100.00"), 12)
        for i in range(0, customers, 10)
    )
    return replace(base, customers=people, purchases=purchases)


def with_plan_changes(config):
    """1 customer in 10 moves to the next plan of PLAN_MIX on the 16th of MONTH, 1 in 50 cancels
    on the 21st (SPEC §7)."""
    mix = sorted(set(PLAN_MIX))
    changes = [PlanChange(o, MONTH.replace(day=16), mix[(mix.index(c.plan) + 1) % len(mix)])
               for i, (o, c) in enumerate(sorted(config.customers.items())) if i % 10 == 5]
    changes += [PlanChange(o, MONTH.replace(day=21), None)
                for i, o in enumerate(sorted(config.customers)) if i % 50 == 3]
    cancelled = {c.org_id for c in changes if c.plan is None}
    return replace(config, plan_changes=tuple(changes),
                   purchases=tuple(p for p in config.purchases if p.org_id not in cancelled))


def within_subscriptions(config, events: pl.DataFrame) -> pl.DataFrame:
    """The events before their customer's cancellation (ingest quarantines the others)."""
    ends = pl.DataFrame({"org_id": [c.org_id for c in config.plan_changes if c.plan is None],
                         "end": [c.effective_from for c in config.plan_changes if c.plan is None]},
                        schema={"org_id": pl.Utf8, "end": pl.Date})
    return events.join(ends, on="org_id", how="left").filter(
        pl.col("end").is_null() | (pl.col("ts").dt.date() < pl.col("end"))).drop("end")


def _uniform(column: str, seed: int, modulo: int) -> pl.Expr:
    return (pl.col(column).hash(seed) % modulo).cast(pl.Int64)


def _pick(column: str, seed: int, names: list[str]) -> pl.Expr:
    return _uniform(column, seed, len(names)).replace_strict(dict(enumerate(names)), return_dtype=pl.Utf8)


def _cost_e12(config) -> pl.Expr:
    """Exact COGS in 1e-12 USD: tokens x rate in 1e-9 USD per 1,000 tokens (SPEC §1.4)."""
    expr = pl.lit(None, dtype=pl.Int64)
    for rate in sorted(config.price_book.models, key=lambda r: r.effective_from):
        applies = (pl.col("model") == rate.model) & (pl.col("ts").dt.date() >= rate.effective_from)
        cost = (pl.col("input_tokens") * int(rate.input_usd_per_1k.scaleb(9))
                + pl.col("output_tokens") * int(rate.output_usd_per_1k.scaleb(9)))
        expr = pl.when(applies).then(cost).otherwise(expr)
    return expr


def _credits(config) -> pl.Expr:
    expr = pl.lit(None, dtype=pl.Int64)
    for tier in config.price_book.actions:
        credits = pl.lit(tier.credits, dtype=pl.Int64)
        if tier.tokens_per_credit:
            tokens = pl.col("input_tokens") + pl.col("output_tokens")
            credits = pl.max_horizontal(credits, (tokens + tier.tokens_per_credit - 1) // tier.tokens_per_credit)
        expr = pl.when(pl.col("action") == tier.action).then(credits).otherwise(expr)
    return expr


def billed_events(config, days: int, per_day: int, seed: int) -> pl.DataFrame:
    """days x per_day billed events landing in MONTH: 1 in 100 lands a day after its ts (inside
    the grace), 1 in 1,000 happened 30 days before landing (late usage from the month before,
    billed in MONTH at its first instant where it landed after the grace period)."""
    orgs = sorted(config.customers)
    models = sorted({r.model for r in config.price_book.models})
    actions = [a.action for a in config.price_book.actions]
    n = days * per_day
    frame = pl.DataFrame({"i": pl.int_range(n, eager=True, dtype=pl.Int64)}).with_columns(
        request_id=pl.format("req-{}", pl.col("i")),
        org_id=_pick("i", seed, orgs),
        user_id=pl.format("u-{}", _uniform("i", seed + 1, 50)),
        ts=pl.lit(datetime(MONTH.year, MONTH.month, 1))
        + pl.duration(days=pl.col("i") // per_day, microseconds=_uniform("i", seed + 2, 86_400_000_000)),
        model=_pick("i", seed + 3, models),
        action=_pick("i", seed + 4, actions),
        input_tokens=_uniform("i", seed + 5, 4000),
        output_tokens=_uniform("i", seed + 6, 1000),
        latency_ms=_uniform("i", seed + 7, 5000),
    )
    late = (_uniform("i", seed + 8, 100) == 0).cast(pl.Int32)
    backdated = _uniform("i", seed + 9, 1000) == 0
    return frame.with_columns(
        landing_date=pl.col("ts").dt.date() + pl.duration(days=late),
        ts=pl.when(backdated).then(pl.col("ts") - pl.duration(days=30)).otherwise("ts"),
    ).with_columns(
        cost_usd=_cost_e12(config).cast(pl.Decimal(38, 0))
        * pl.lit(Decimal("1e-12"), dtype=pl.Decimal(38, 12)),
        credits=_credits(config),
    ).select(list(BILLED_EVENT_SCHEMA)).cast(BILLED_EVENT_SCHEMA)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def cpu_seconds() -> float:
    """User + system CPU time of this process (all threads): comparable on a busy machine."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-per-day", type=int, default=1_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--plan-changes", action="store_true", help="some customers change plan or cancel")
    args = parser.parse_args(argv)

    config = bench_config(args.customers, args.seed)
    if args.plan_changes:
        config = with_plan_changes(config)
    started = time.perf_counter()
    events = within_subscriptions(config, billed_events(config, args.days, args.events_per_day, args.seed))
    generated = time.perf_counter() - started
    print(f"generated {events.height:,} billed events for {args.customers:,} customers "
          f"in {generated:.1f} s; peak RSS {peak_mib():,.0f} MiB ({events.estimated_size('mb'):,.0f} MB of events)")

    started, cpu = time.perf_counter(), cpu_seconds()
    close = close_month(config, events, MONTH, grace_days=3)
    elapsed, cpu = time.perf_counter() - started, cpu_seconds() - cpu
    problems = conservation_problems(close.credit_summaries) + invoice_total_problems(close.invoices)
    print(f"close_month {MONTH:%Y-%m}: {elapsed:.1f} s wall, {cpu:.1f} s CPU; peak RSS {peak_mib():,.0f} MiB; "
          f"{len(close.invoices):,} invoices, {close.allocations.height:,} allocation rows, "
          f"{len(problems)} check problems")
    if problems:
        sys.exit("; ".join(problems[:5]))


if __name__ == "__main__":
    main()
