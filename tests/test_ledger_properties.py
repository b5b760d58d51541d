"""Property tests over random histories, plans, plan changes and cancellations: the credit summary
balances every month (conservation identity) and carries over, no grant goes below zero, a
month's plan grants hold its prorated included credits, the vectorized ledger allocates exactly
as a per-event walk would, and closing month by month equals closing from the full history."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from fractions import Fraction

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipelines.config import Customer
from billing_pipelines.ledger.events import with_ledger_time
from billing_pipelines.ledger.grants import month_instant, plan_grant, purchase_grant, rollover_grant
from billing_pipelines.ledger.subscriptions import month_days
from billing_pipelines.month_close.checks import conservation_problems, negative_grant_problems
from billing_pipelines.month_close.compute import close_month
from billing_pipelines.periods import add_months
from tests.ledger_helpers import change, config, events, plan, purchase

FIRST = datetime(2026, 10, 1)
MONTHS = [date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)]
ACME_START, BETA_START = date(2026, 10, 1), date(2026, 10, 20)

minutes = st.integers(0, 92 * 24 * 60 - 1)


def plans_named(name: str):
    return st.builds(
        plan,
        name=st.just(name),
        fee=st.sampled_from(["0.00", "10.00", "1500.00"]),
        included=st.sampled_from([0, 5, 50, 180000]),
        overage=st.sampled_from([None, "0.0120"]),
        rollover_max=st.sampled_from([0, 3, 100]),
        rollover_months=st.integers(1, 3),
    )


three_plans = st.tuples(plans_named("p0"), plans_named("p1"), plans_named("p2"))
# per customer: (days after its start, plan index; 3 = a cancellation), at most one a day
changes = st.lists(st.tuples(st.integers(1, 70), st.integers(0, 3)), max_size=3, unique_by=lambda c: c[0])
purchases = st.lists(
    st.tuples(st.sampled_from(["acme", "beta"]), minutes, st.integers(1, 40), st.integers(1, 2)),
    max_size=3,
)
usage = st.lists(
    st.tuples(st.sampled_from(["acme", "beta"]), minutes, st.integers(0, 6), st.integers(0, 15)),
    max_size=40,
)


def plan_changes(org_id: str, start: date, drawn) -> list:
    """Valid changes of `org_id` (SPEC §7): after its start, none after a cancellation."""
    made = []
    for offset, index in sorted(drawn):
        made.append(change((start + timedelta(days=offset)).isoformat(), None if index == 3 else f"p{index}", org_id))
        if index == 3:
            break
    return made


def scenario(the_plans, acme_changes, beta_changes, bought, beta_start=BETA_START):
    """A config of acme and beta on p0 with their changes and the purchases within their
    subscriptions."""
    starts = {"acme": ACME_START, "beta": beta_start}
    changed = plan_changes("acme", ACME_START, acme_changes) + plan_changes("beta", beta_start, beta_changes)
    ends = {c.org_id: c.effective_from for c in changed if c.plan is None}
    made = []
    for i, (org, minute, credits, months) in enumerate(bought):
        at = max(FIRST + timedelta(minutes=minute), datetime.combine(starts[org], datetime.min.time()))
        if org not in ends or at.date() < ends[org]:
            made.append(purchase(f"p-{i}", at.isoformat(), credits, "3.00", months, org))
    beta = Customer("beta", "Beta", "p0", beta_start)
    return config(the_plans[0], purchases=made, extra_customers=[beta], other_plans=the_plans[1:], changes=changed)


def history_of(cfg, rows, permutation_seed: int) -> pl.DataFrame:
    """Billed events within each customer's subscription (ingest quarantines the others);
    request_ids shuffled so that their order is not the generation order."""
    made = []
    for i, (org, minute, delay, credits) in enumerate(rows):
        start = datetime.combine(cfg.customers[org].start_date, datetime.min.time())
        ts = max(FIRST + timedelta(minutes=minute), start)
        end = cfg.cancelled_on(org)
        if end is not None and ts.date() >= end:
            continue
        rid = f"r{(i * 7919 + permutation_seed) % 10007:05d}"
        landing = (ts + timedelta(days=delay)).date().isoformat()
        made.append((rid, ts.isoformat(), credits, landing, "0.001", "big", "simple", org))
    return events(*made)


def naive_walk(cfg, history: pl.DataFrame, month: date) -> tuple[list[tuple], dict[str, int]]:
    """Event by event, in (ledger time, request_id) order: draw from the active grants in SPEC
    order, rolling each month's plan grants over at the next month's start (by the plan of the
    month's last day, latest start first) and cutting every grant at a cancellation; returns the
    month's allocations (request_id, grant_id, credits, unit price) and the credits left at the
    next month's first instant by grant."""
    until = month_instant(add_months(month, 1))
    grants, ends, months_of = [], {}, {}
    for org_id, customer in cfg.customers.items():
        end = cfg.cancelled_on(org_id)
        ends[org_id] = None if end is None else datetime.combine(end, datetime.min.time())
        m, months_of[org_id] = customer.start_date.replace(day=1), []
        while month_instant(m) < until:
            grants += [g for g in (plan_grant(org_id, p) for p in cfg.plan_periods(org_id, m)) if g.credits]
            months_of[org_id].append(add_months(m, 1))
            m = add_months(m, 1)
    grants += [purchase_grant(p) for p in cfg.purchases]

    def cut(g):
        end = ends[g.org_id]
        g.expiry = g.expiry if end is None else min(g.expiry, end)
        return g

    grants = [cut(g) for g in grants]
    rolled = set()

    def roll_over_until(t):
        for org_id, starts in months_of.items():
            for boundary in (month_instant(b) for b in starts):
                if boundary > t or (org_id, boundary) in rolled:
                    continue
                rolled.add((org_id, boundary))
                if ends[org_id] is not None and boundary >= ends[org_id]:
                    continue
                last_day_plan = cfg.plan_on(org_id, (boundary - timedelta(days=1)).date())
                room = last_day_plan.rollover_max_credits
                sources = [g for g in grants if g.org_id == org_id and g.kind == "plan" and g.expiry == boundary]
                for g in sorted(sources, key=lambda g: g.start, reverse=True):
                    credits = min(g.credits - g.consumed, room)
                    if credits > 0:
                        room -= credits
                        grants.append(cut(rollover_grant(g, last_day_plan, credits)))

    out = []
    timed = with_ledger_time(history, 3).filter(pl.col("ledger_time") < until)
    for e in timed.sort("ledger_time", "request_id").iter_rows(named=True):
        t, need = e["ledger_time"], e["credits"]
        roll_over_until(t)
        active = sorted(
            (g for g in grants if g.org_id == e["org_id"] and g.start <= t < g.expiry and g.consumed < g.credits),
            key=lambda g: g.priority,
        )
        for g in active:
            take = min(need, g.credits - g.consumed)
            if take:
                g.consumed += take
                need -= take
                if e["billing_month"] == month:
                    out.append((e["request_id"], g.grant_id, take, g.unit_price))
        if need and e["billing_month"] == month:
            ended = ends[e["org_id"]] is not None and t >= ends[e["org_id"]]
            priced = cfg.last_plan(e["org_id"]) if ended else cfg.plan_on(e["org_id"], t.date())
            out.append((e["request_id"], None, need, Fraction(priced.overage_credit_price or 0)))
    roll_over_until(until)
    closing = {g.grant_id: g.credits - g.consumed for g in grants if g.credits > g.consumed
               and (g.start < until or g.kind == "rollover") and g.start <= until < g.expiry}
    return sorted(out, key=lambda r: (r[0], r[1] or "")), closing


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(three_plans, changes, changes, purchases, usage, st.sampled_from(MONTHS), st.integers(0, 10006))
def test_ledger_matches_a_per_event_walk(the_plans, acme_changes, beta_changes, bought, used, month, seed):
    cfg = scenario(the_plans, acme_changes, beta_changes, bought)
    history = history_of(cfg, used, seed)
    close = close_month(cfg, history, month)

    got = sorted(
        ((rid, grant_id, credits, Fraction(num, den)) for rid, grant_id, credits, num, den in
         close.allocations.select("request_id", "grant_id", "credits", "unit_price_num", "unit_price_den").rows()),
        key=lambda r: (r[0], r[1] or ""),
    )
    allocations, closing = naive_walk(cfg, history, month)
    assert got == allocations
    until = month_instant(add_months(month, 1))
    assert {g.grant_id: g.left for g in close.grants if g.left and g.start <= until < g.expiry} == closing
    for org_id, summary in close.credit_summaries.items():
        mine = close.allocations.filter(pl.col("org_id") == org_id)
        assert summary.consumed == mine["credits"].sum()
        assert summary.overage == mine.filter(pl.col("grant_id").is_null())["credits"].sum()


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(three_plans, changes, changes, purchases, usage, st.integers(0, 10006))
def test_credits_balance_every_month_and_plan_grants_hold_the_prorated_credits(
    the_plans, acme_changes, beta_changes, bought, used, seed
):
    cfg = scenario(the_plans, acme_changes, beta_changes, bought)
    history = history_of(cfg, used, seed)
    previous = None
    for month in MONTHS:
        close = close_month(cfg, history, month)
        assert conservation_problems(close.credit_summaries) == []
        assert negative_grant_problems(close.grants) == []
        for org_id, summary in close.credit_summaries.items():
            if previous is not None and org_id in previous.credit_summaries:
                assert summary.opening == previous.credit_summaries[org_id].closing
            periods = cfg.plan_periods(org_id, month)
            granted = sum(g.credits for g in close.grants
                          if g.org_id == org_id and g.kind == "plan" and g.start.date().replace(day=1) == month)
            prorated = sum(Fraction(p.plan.included_credits * p.days, month_days(month)) for p in periods)
            assert granted == summary.granted and abs(granted - prorated) <= Fraction(len(periods), 2)
        previous = close


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(three_plans, changes, changes, purchases, usage, st.integers(0, 10006))
def test_closing_from_the_previous_close_equals_closing_from_the_full_history(
    the_plans, acme_changes, beta_changes, bought, used, seed
):
    cfg = scenario(the_plans, acme_changes, beta_changes, bought, beta_start=date(2026, 11, 5))
    history = history_of(cfg, used, seed)
    previous = None
    for month in MONTHS + [date(2027, 1, 1)]:
        full = close_month(cfg, history, month)
        chained = close_month(cfg, history, month, previous=previous)
        assert chained.invoices == full.invoices
        assert chained.margin == full.margin
        assert chained.allocations.equals(full.allocations)
        previous = chained
