"""Property tests over random histories: the credit summary balances (conservation identity), no
grant goes below zero, and the vectorized ledger allocates exactly as a per-event walk would."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from billing_pipelines.close import close_month
from billing_pipelines.config import Customer
from billing_pipelines.ledger.checks import conservation_problems, negative_grant_problems
from billing_pipelines.ledger.grants import month_instant, plan_grant, purchase_grant, rollover_grant
from billing_pipelines.ledger.events import with_ledger_time
from billing_pipelines.periods import add_months
from ledger_helpers import config, events, plan, purchase

FIRST = datetime(2026, 10, 1)
MONTHS = [date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)]
BETA_START = date(2026, 10, 20)

minutes = st.integers(0, 92 * 24 * 60 - 1)
plans = st.builds(
    plan,
    fee=st.sampled_from(["0.00", "10.00", "1500.00"]),
    included=st.sampled_from([0, 5, 50, 180000]),
    overage=st.sampled_from([None, "0.0120"]),
    rollover_max=st.sampled_from([0, 3, 100]),
    rollover_months=st.integers(1, 3),
)
purchases = st.lists(
    st.tuples(st.sampled_from(["acme", "beta"]), minutes, st.integers(1, 40), st.integers(1, 2)),
    max_size=3,
)
usage = st.lists(
    st.tuples(st.sampled_from(["acme", "beta"]), minutes, st.integers(0, 6), st.integers(0, 15)),
    max_size=40,
)


def history_of(rows, permutation_seed: int) -> pl.DataFrame:
    """Billed events; request_ids shuffled so that their order is not the generation order."""
    made = []
    for i, (org, minute, delay, credits) in enumerate(rows):
        ts = FIRST + timedelta(minutes=minute)
        if org == "beta" and ts.date() < BETA_START:
            ts = datetime.combine(BETA_START, ts.time())
        rid = f"r{(i * 7919 + permutation_seed) % 10007:05d}"
        landing = (ts + timedelta(days=delay)).date().isoformat()
        made.append((rid, ts.isoformat(), credits, landing, "0.001", "big", "simple", org))
    return events(*made)


def naive_allocations(cfg, history: pl.DataFrame, month: date) -> list[tuple]:
    """Event by event, in (ledger time, request_id) order: draw from the active grants in SPEC
    order, rolling plan grants over at each month start; returns the month's allocations."""
    until = month_instant(add_months(month, 1))
    grants = []
    for org_id, customer in cfg.customers.items():
        the_plan = cfg.plan_of(org_id)
        m = customer.start_date.replace(day=1)
        while month_instant(m) < until:
            if the_plan.included_credits:
                grants.append(plan_grant(org_id, the_plan, m))
            m = add_months(m, 1)
    grants += [purchase_grant(p) for p in cfg.purchases]
    rolled = set()

    def roll_over_until(t):
        for g in list(grants):
            if g.kind == "plan" and g.expiry <= t and g.grant_id not in rolled:
                rolled.add(g.grant_id)
                credits = min(g.credits - g.consumed, cfg.plan_of(g.org_id).rollover_max_credits)
                if credits > 0:
                    grants.append(rollover_grant(g, cfg.plan_of(g.org_id), credits))

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
                    out.append((e["request_id"], g.grant_id, take))
        if need and e["billing_month"] == month:
            out.append((e["request_id"], None, need))
    return sorted(out, key=lambda r: (r[0], r[1] or ""))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans, purchases, usage, st.sampled_from(MONTHS), st.integers(0, 10006))
def test_ledger_balances_and_matches_a_per_event_walk(the_plan, bought, used, month, seed):
    beta = Customer("beta", "Beta", the_plan.plan, BETA_START)
    bought_grants = [
        purchase(f"p-{i}", (max(FIRST + timedelta(minutes=minute), datetime(2026, 10, 20)) if org == "beta"
                            else FIRST + timedelta(minutes=minute)).isoformat(), credits, "3.00", months, org)
        for i, (org, minute, credits, months) in enumerate(bought)
    ]
    cfg = config(the_plan, purchases=bought_grants, extra_customers=[beta])
    history = history_of(used, seed)
    close = close_month(cfg, history, month)

    assert conservation_problems(close.credit_summaries) == []
    assert negative_grant_problems(close.grants) == []
    got = sorted(
        close.allocations.select("request_id", "grant_id", "credits").rows(),
        key=lambda r: (r[0], r[1] or ""),
    )
    assert got == naive_allocations(cfg, history, month)
    for org_id, summary in close.credit_summaries.items():
        mine = close.allocations.filter(pl.col("org_id") == org_id)
        assert summary.consumed == mine["credits"].sum()
        assert summary.overage == mine.filter(pl.col("grant_id").is_null())["credits"].sum()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans, purchases, usage, st.integers(0, 10006))
def test_closing_from_the_previous_close_equals_closing_from_the_full_history(the_plan, bought, used, seed):
    beta = Customer("beta", "Beta", the_plan.plan, date(2026, 11, 5))
    bought_grants = [
        purchase(f"p-{i}", (FIRST + timedelta(minutes=minute)).isoformat(), credits, "3.00", months, "acme")
        for i, (_, minute, credits, months) in enumerate(bought)
    ]
    cfg = config(the_plan, purchases=bought_grants, extra_customers=[beta])
    history = history_of([(org, minute + (44640 if org == "beta" else 0), delay, credits)
                          for org, minute, delay, credits in used if minute < 40000], seed)
    previous = None
    for month in MONTHS:
        full = close_month(cfg, history, month)
        chained = close_month(cfg, history, month, previous=previous)
        assert chained.invoices == full.invoices
        assert chained.margin == full.margin
        assert chained.allocations.equals(full.allocations)
        previous = chained
