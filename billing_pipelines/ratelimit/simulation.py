"""Replay a month of billed events through each customer's plan limits (the monthly
``rate_limit_simulation``): what would have been degraded or rejected, the COGS degrading
would have saved, and the revenue put at risk by rejections.

Each event holds a concurrency slot from ``ts`` to ``ts + latency_ms`` on a simulated clock;
a slot ending at an instant is free for a request starting at that instant. Rules and burst
model as in `limiter` and `policy`, with the in-process backend, under the plan in effect at
each event's ts (SPEC §7); credits are not checked (the replay knows no balances). Events with
equal ts are replayed in their input order. COGS is SPEC §1.4's, from the tokens and the price
book (a provider-reported cost_usd is not used).
"""

from __future__ import annotations

import heapq
from datetime import UTC, datetime
from decimal import Decimal
from fractions import Fraction

import polars as pl

from billing_pipelines.config import BillingConfig
from billing_pipelines.money import round_half_up
from billing_pipelines.ratelimit.backends import MemoryBackend
from billing_pipelines.ratelimit.limiter import ALLOW, DEGRADE, REJECT, RateLimiter
from billing_pipelines.ratelimit.policy import MICROS, SimClock

SIMULATION_DATASET = "rate_limit_simulation"  # warehouse dataset of the monthly simulation
EVENT_COLUMNS = ("org_id", "model", "ts", "latency_ms", "input_tokens", "output_tokens", "credits")
MONEY_PLACES, COST_PLACES = 2, 4


def replay_rate_limits(events: pl.DataFrame, config: BillingConfig) -> pl.DataFrame:
    """The events in ts order with `outcome` (allow/degrade/reject), `served_model` (null on
    reject) and `reason` added."""
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise ValueError(f"rate limit simulation: events lack column(s) {', '.join(missing)}")
    unknown = set(events["org_id"].unique().to_list()) - set(config.customers)
    if unknown:
        raise ValueError(f"rate limit simulation: unknown org(s) {', '.join(sorted(unknown))}")
    ordered = events.sort("ts", maintain_order=True)
    starts = ordered.select(pl.col("ts").dt.epoch("us"))["ts"].to_list()
    latencies = ordered["latency_ms"].to_list()
    clock = SimClock()
    ttl = (max(latencies, default=0) + 1000) / 1000
    limiter = RateLimiter(config, MemoryBackend(clock), lease_ttl=ttl, clock=clock)
    running: list = []  # (end_us, seq, lease), a heap
    outcome, served, reason = [], [], []
    for seq, (org, model, start, latency) in enumerate(
        zip(ordered["org_id"].to_list(), ordered["model"].to_list(), starts, latencies)
    ):
        while running and running[0][0] <= start:
            limiter.release(heapq.heappop(running)[2])
        clock.now = start / MICROS
        decision = limiter.decide(org, model)
        if decision.lease is not None:
            heapq.heappush(running, (start + latency * 1000, seq, decision.lease))
        outcome.append(decision.outcome)
        served.append(decision.model)
        reason.append(decision.reason)
    return ordered.with_columns(
        outcome=pl.Series(outcome, dtype=pl.String),
        served_model=pl.Series(served, dtype=pl.String),
        reason=pl.Series(reason, dtype=pl.String),
    )


def rate_limit_simulation(events: pl.DataFrame, config: BillingConfig) -> pl.DataFrame:
    """Per org (sorted): plan (in effect at its last event), requests, allowed, degraded,
    rejected (rejected_rate, rejected_concurrency), credits_rejected, cogs_usd, cogs_saved_usd
    (degraded events at the served model's rates, 4 places) and revenue_at_risk (2 places).

    Revenue at risk is the `revenue` column of rejected events where the events carry one
    (recognized revenue per event), else their credits at the unit price (monthly_fee /
    included_credits) of the plan in effect on each event's date (SPEC §7).
    """
    replayed = replay_rate_limits(events, config)
    rows = []
    for org, group in sorted(replayed.partition_by("org_id", as_dict=True).items()):
        rows.append(_org_summary(org[0], group, config))
    return pl.DataFrame(rows, schema=_SUMMARY_SCHEMA, orient="row")


_SUMMARY_SCHEMA = {
    "org_id": pl.String, "plan": pl.String, "requests": pl.Int64, "allowed": pl.Int64,
    "degraded": pl.Int64, "rejected": pl.Int64, "rejected_rate": pl.Int64,
    "rejected_concurrency": pl.Int64, "credits_rejected": pl.Int64,
    "cogs_usd": pl.Decimal(38, 4), "cogs_saved_usd": pl.Decimal(38, 4), "revenue_at_risk": pl.Decimal(38, 2),
}


def _org_summary(org: str, group: pl.DataFrame, config: BillingConfig) -> tuple:
    plans = [config.plan_on(org, _utc(ts).date()) for ts in group["ts"].to_list()]
    counts = group["outcome"].value_counts()
    count = dict(zip(counts["outcome"].to_list(), counts["count"].to_list()))
    rejected = group.filter(pl.col("outcome") == REJECT)
    degraded = group.filter(pl.col("outcome") == DEGRADE)
    cogs = sum((_cost(row, row["model"], config) for row in group.iter_rows(named=True)), Decimal(0))
    saved = sum(
        (_cost(row, row["model"], config) - _cost(row, row["served_model"], config)
         for row in degraded.iter_rows(named=True)),
        Decimal(0),
    )
    if "revenue" in group.columns:
        at_risk = Fraction(sum(rejected["revenue"].to_list(), Decimal(0)))
    else:
        outcomes, credits = group["outcome"].to_list(), group["credits"].to_list()
        at_risk = sum((n * plan.unit_price for n, plan, outcome in zip(credits, plans, outcomes)
                       if outcome == REJECT and plan is not None), Fraction(0))
    last_plan = plans[-1] or config.last_plan(org)
    return (
        org, last_plan.plan, group.height, count.get(ALLOW, 0), count.get(DEGRADE, 0), rejected.height,
        rejected.filter(pl.col("reason") == "rate_limited").height,
        rejected.filter(pl.col("reason") == "concurrency").height,
        int(rejected["credits"].sum()),
        round_half_up(cogs, COST_PLACES),
        round_half_up(saved, COST_PLACES),
        round_half_up(at_risk, MONEY_PLACES),
    )


def _cost(event: dict, model: str, config: BillingConfig) -> Decimal:
    """The event's tokens at `model`'s rates on the event's date (SPEC §1.4), exact."""
    rate = config.price_book.rate_at(model, _utc(event["ts"]).date())
    return (event["input_tokens"] * rate.input_usd_per_1k + event["output_tokens"] * rate.output_usd_per_1k) / 1000


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
