"""Worked examples, by hand, of SPEC §7: plan changes and cancellations (issue 16's acceptance).

Plans: basic (30.00, 300 credits, overage 0.0200, rollover 100 for 1 month), premium (120.00, 900
credits, overage 0.0100, rollover 480 for 2 months), free (0.00, 100 credits, overage not
billed). November 2026 has 30 days, so a period of d days gets d/30 of the fee and credits;
basic's credits cost 0.1 each, premium's 2/15.
"""

from __future__ import annotations

from datetime import date, datetime
from fractions import Fraction

import polars as pl
import pytest

from billing_pipelines.balances.balances import current_balances
from billing_pipelines.month_close.compute import advise_tiers, close_month
from tests.ledger_helpers import assert_consistent, change, config, credits_of, events, lines, plan, purchase, shares

OCT, NOV, DEC, JAN = date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1)
BASIC = plan("basic", fee="30.00", included=300, overage="0.0200", rollover_max=100, rollover_months=1)
PREMIUM = plan("premium", fee="120.00", included=900, overage="0.0100", rollover_max=480, rollover_months=2)
FREE = plan("free", fee="0.00", included=100, overage=None)


def subscribed(first, *changes, start="2026-11-01", purchases=()):
    """acme on `first` from `start`, then `changes` ((day, plan name or None), ...)."""
    others = [p for p in (BASIC, PREMIUM, FREE) if p is not first]
    return config(first, start=start, other_plans=others, purchases=purchases,
                  changes=[change(day, name) for day, name in changes])


def descriptions(close, org_id="acme") -> list[str]:
    invoice = next(i.to_json() for i in close.invoices if i.org_id == org_id)
    return [line["description"] for line in invoice["lines"]]


def grant(close, grant_id):
    return next(g for g in close.grants if g.grant_id == grant_id)


def test_upgrade_mid_month_bills_each_period_with_prorated_credits():
    cfg = subscribed(BASIC, ("2026-11-16", "premium"))
    history = events(("a", "2026-11-05T00:00:00", 100), ("b", "2026-11-20T00:00:00", 200))
    close = close_month(cfg, history, NOV)
    assert lines(close) == [("plan_fee", "15.00"), ("plan_fee", "60.00")]
    assert descriptions(close) == ["Basic plan, 1-15 November 2026 (15 of 30 days)",
                                   "Premium plan, 16-30 November 2026 (15 of 30 days)"]
    # both plan grants expire on 1 December: the earlier start is drawn first
    assert shares(close, "b") == [("plan", "plan:acme:2026-11-01", 50), ("plan", "plan:acme:2026-11-16", 150)]
    assert (grant(close, "plan:acme:2026-11-01").credits, grant(close, "plan:acme:2026-11-16").credits) == (150, 450)
    assert grant(close, "plan:acme:2026-11-16").unit_price == Fraction(2, 15)
    assert credits_of(close) == dict(
        opening=0, rolled_over_in=0, granted=600, purchased=0, consumed=300, overage=0,
        expired=0, rolled_over_out=300, closing=300,
    )
    assert close.margin[0].to_json()["revenue"] == "35.00"  # 150 x 0.1 + 150 x 2/15
    assert_consistent(close)


def test_downgrade_on_the_first_is_one_period_and_the_rollover_follows_the_old_plan():
    cfg = subscribed(PREMIUM, ("2026-11-01", "basic"), start="2026-10-01")
    history = events(("a", "2026-10-10T00:00:00", 100), ("b", "2026-11-05T00:00:00", 350))
    october, november = close_month(cfg, history, OCT), close_month(cfg, history, NOV)
    assert lines(october) == [("plan_fee", "120.00")]
    # October's last day is on premium: 480 of its 800 unused credits roll over, for 2 months
    assert credits_of(october)["rolled_over_out"] == 480 and credits_of(october)["expired"] == 320
    assert grant(november, "rollover:acme:2026-10").expiry.date() == JAN
    assert lines(november) == [("plan_fee", "30.00")]
    assert descriptions(november) == ["Basic plan, November 2026"]
    assert shares(november, "b") == [("plan", "plan:acme:2026-11", 300), ("rollover", "rollover:acme:2026-10", 50)]
    assert credits_of(november) == dict(
        opening=480, rolled_over_in=480, granted=300, purchased=0, consumed=350, overage=0,
        expired=0, rolled_over_out=0, closing=430,
    )
    assert_consistent(november)


def test_a_change_in_the_first_month_prorates_from_the_first_of_the_month():
    cfg = subscribed(BASIC, ("2026-11-20", "premium"), start="2026-11-10")
    close = close_month(cfg, events(("a", "2026-11-12T00:00:00", 10)), NOV)
    # the plan a customer starts on counts from the 1st: 19 days of basic, then 11 of premium
    assert lines(close) == [("plan_fee", "19.00"), ("plan_fee", "44.00")]
    assert descriptions(close) == ["Basic plan, 1-19 November 2026 (19 of 30 days)",
                                   "Premium plan, 20-30 November 2026 (11 of 30 days)"]
    assert credits_of(close)["granted"] == 190 + 330
    assert_consistent(close)


def test_a_one_day_period_has_its_fee_credits_and_overage_price():
    cfg = subscribed(BASIC, ("2026-11-15", "premium"), ("2026-11-16", "basic"))
    close = close_month(cfg, events(("a", "2026-11-15T10:00:00", 200)), NOV)
    assert lines(close) == [("plan_fee", "14.00"), ("plan_fee", "4.00"), ("plan_fee", "15.00"), ("overage", "0.30")]
    assert descriptions(close) == [
        "Basic plan, 1-14 November 2026 (14 of 30 days)", "Premium plan, 15 November 2026 (1 of 30 days)",
        "Basic plan, 16-30 November 2026 (15 of 30 days)",
        "Overage, Premium plan, 15 November 2026: 30 credits",
    ]
    assert shares(close, "a") == [
        ("plan", "plan:acme:2026-11-01", 140), ("plan", "plan:acme:2026-11-15", 30), ("overage", None, 30),
    ]
    # the last day is on basic: at most 100 roll over, from the latest plan grant (16-30) first
    assert credits_of(close) == dict(
        opening=0, rolled_over_in=0, granted=320, purchased=0, consumed=200, overage=30,
        expired=50, rolled_over_out=100, closing=100,
    )
    assert grant(close, "rollover:acme:2026-11-16").credits == 100
    assert_consistent(close)


def test_free_to_paid_writes_off_the_free_period_overage_and_bills_the_paid_one():
    cfg = subscribed(FREE, ("2026-11-16", "basic"))
    history = events(("a", "2026-11-03T00:00:00", 70), ("b", "2026-11-20T00:00:00", 200))
    close = close_month(cfg, history, NOV)
    assert lines(close) == [("plan_fee", "0.00"), ("plan_fee", "15.00"), ("overage", "1.00")]
    overage = close.invoices[0].to_json()["lines"][2]
    assert (overage["description"], overage["quantity"], overage["unit_price"]) == (
        "Overage, Basic plan, 16-30 November 2026: 50 credits", "50", "0.0200")
    prices = close.allocations.filter(pl.col("grant_kind") == "overage").select(
        "request_id", "credits", "unit_price_num", "unit_price_den").rows()
    assert sorted(prices) == [("a", 20, 0, 1), ("b", 50, 1, 50)]
    assert credits_of(close)["granted"] == 50 + 150 and credits_of(close)["overage"] == 70
    assert close.margin[0].to_json()["revenue"] == "16.00"  # 150 x 0.1 + 50 x 0.02
    assert_consistent(close)


def test_overage_in_two_periods_is_billed_at_two_prices():
    cfg = subscribed(BASIC, ("2026-11-16", "premium"))
    history = events(("a", "2026-11-05T00:00:00", 200), ("b", "2026-11-20T00:00:00", 500))
    close = close_month(cfg, history, NOV)
    assert lines(close) == [("plan_fee", "15.00"), ("plan_fee", "60.00"), ("overage", "1.00"), ("overage", "0.50")]
    overage = [(line["quantity"], line["unit_price"]) for line in close.invoices[0].to_json()["lines"][2:]]
    assert overage == [("50", "0.0200"), ("50", "0.0100")]
    assert credits_of(close)["overage"] == 100 and credits_of(close)["closing"] == 0
    assert close.margin[0].to_json()["revenue"] == "76.50"  # 15 + 60 + 1.00 + 0.50
    assert_consistent(close)


def test_rollover_is_capped_by_the_plan_of_the_last_day():
    cfg = subscribed(PREMIUM, ("2026-11-16", "basic"))
    history = events(("a", "2026-11-02T00:00:00", 10))
    november = close_month(cfg, history, NOV)
    assert credits_of(november) == dict(
        opening=0, rolled_over_in=0, granted=450 + 150, purchased=0, consumed=10, overage=0,
        expired=440 + 50, rolled_over_out=100, closing=100,
    )
    rollover = grant(november, "rollover:acme:2026-11-16")
    assert (rollover.credits, rollover.unit_price, rollover.expiry.date()) == (100, Fraction(1, 10), JAN)
    assert credits_of(close_month(cfg, history, DEC))["rolled_over_in"] == 100


def test_rollover_parts_keep_their_prices_and_are_drawn_in_the_order_of_their_sources():
    cfg = subscribed(BASIC, ("2026-11-16", "premium"))
    history = events(("a", "2026-11-05T00:00:00", 100), ("b", "2026-12-03T00:00:00", 940))
    december = close_month(cfg, history, DEC)
    # premium's cap of 480: its own 450 unused (latest start) first, then 30 of basic's 50
    parts = {g.grant_id: (g.credits, g.unit_price) for g in december.grants if g.kind == "rollover"}
    assert parts == {"rollover:acme:2026-11-16": (450, Fraction(2, 15)),
                     "rollover:acme:2026-11-01": (30, Fraction(1, 10))}
    assert shares(december, "b") == [
        ("plan", "plan:acme:2026-12", 900), ("rollover", "rollover:acme:2026-11-01", 30),
        ("rollover", "rollover:acme:2026-11-16", 10),
    ]
    assert credits_of(close_month(cfg, history, NOV))["expired"] == 20
    assert_consistent(december)


def test_cancellation_mid_month_expires_a_purchase_still_valid():
    bought = [purchase("p-1", "2026-11-05T12:00", 1000, "10.00", months=12)]
    cfg = subscribed(BASIC, ("2026-11-21", None), start="2026-10-01", purchases=bought)
    history = events(("a", "2026-11-10T00:00:00", 350))
    november = close_month(cfg, history, NOV)
    assert lines(november) == [("plan_fee", "20.00"), ("credit_purchase", "10.00")]
    assert descriptions(november)[0] == "Basic plan, 1-20 November 2026 (20 of 30 days)"
    assert shares(november, "a") == [
        ("rollover", "rollover:acme:2026-10", 100), ("plan", "plan:acme:2026-11-01", 200),
        ("purchase", "purchase:p-1", 50),
    ]
    assert grant(november, "purchase:p-1").expiry.isoformat() == "2026-11-21T00:00:00"
    assert credits_of(november) == dict(
        opening=100, rolled_over_in=100, granted=200, purchased=1000, consumed=350, overage=0,
        expired=950, rolled_over_out=0, closing=0,
    )
    margin = november.margin[0].to_json()
    assert (margin["breakage"], margin["revenue"]) == ("9.50", "40.00")  # 950 x 0.01; 30.50 + 9.50
    assert_consistent(november)
    assert close_month(cfg, history, DEC).invoices == []


def test_cancellation_on_the_first_expires_everything_and_rolls_nothing_over():
    bought = [purchase("p-1", "2026-10-10T00:00", 500, "5.00", months=12)]
    cfg = subscribed(BASIC, ("2026-12-01", None), start="2026-10-01", purchases=bought)
    history = events(("a", "2026-10-20T00:00:00", 10), ("b", "2026-11-03T00:00:00", 50))
    november = close_month(cfg, history, NOV)
    assert lines(november) == [("plan_fee", "30.00")]
    assert credits_of(november) == dict(
        opening=600, rolled_over_in=100, granted=300, purchased=0, consumed=50, overage=0,
        expired=850, rolled_over_out=0, closing=0,
    )
    # cut to the cancellation, the purchase expires with the rollover and the plan grant, and
    # its earlier start puts it first
    assert shares(november, "b") == [("purchase", "purchase:p-1", 50)]
    assert november.margin[0].to_json()["breakage"] == "44.50"  # 300 x 0.1 + 100 x 0.1 + 450 x 0.01
    december = close_month(cfg, history, DEC)
    assert (december.invoices, december.margin) == ([], [])
    with pytest.raises(ValueError, match="after_customer_end"):
        close_month(cfg, events(("c", "2026-12-01T00:00:00", 1)), DEC)


def test_late_usage_after_the_last_month_gets_an_invoice_without_a_plan_fee():
    cfg = subscribed(BASIC, ("2026-11-21", None), start="2026-10-01")
    history = events(("late", "2026-11-20T23:00:00", 30, "2026-12-05"))
    november, december = close_month(cfg, history, NOV), close_month(cfg, history, DEC)
    assert lines(november) == [("plan_fee", "20.00")]
    assert lines(december) == [("overage", "0.60")]  # at basic's price, the last plan's
    assert descriptions(december) == ["Overage after the subscription ended (Basic plan price): 30 credits"]
    assert credits_of(december) == dict(
        opening=0, rolled_over_in=0, granted=0, purchased=0, consumed=30, overage=30,
        expired=0, rolled_over_out=0, closing=0,
    )
    assert december.margin[0].to_json()["revenue"] == "0.60"
    assert advise_tiers(cfg, history, december).to_json()["revenue_per_credit"] == "0.020000"
    assert close_month(cfg, history, JAN).invoices == []
    chained = None
    for month in (OCT, NOV, DEC, JAN):
        chained = close_month(cfg, history, month, previous=chained)
        assert chained.invoices == close_month(cfg, history, month).invoices
    assert_consistent(december)


def test_a_purchase_after_the_cancellation_is_refused():
    bought = [purchase("p-9", "2026-11-22T00:00", 10, "1.00")]
    cfg = subscribed(BASIC, ("2026-11-21", None), purchases=bought)
    with pytest.raises(ValueError, match="p-9 is at or after acme's cancellation"):
        close_month(cfg, events(), NOV)


def test_live_balances_follow_the_plan_in_effect_now():
    cfg = subscribed(FREE, ("2026-11-16", "basic"), ("2026-12-01", None))
    early, late = ("a", "2026-11-03T00:00:00", 70), ("b", "2026-11-20T00:00:00", 200)
    free = current_balances(cfg, events(early), {"acme"}, datetime(2026, 11, 10), 3)["acme"]
    assert (free.plan, free.overage_credits, free.overage_amount) == ("free", 20, None)
    basic = current_balances(cfg, events(early, late), {"acme"}, datetime(2026, 11, 20, 12), 3)["acme"]
    assert (basic.plan, basic.overage_credits, basic.overage_amount) == ("basic", 70, "1.00")
    assert [(g.grant_id, g.credits_left) for g in basic.grants] == [
        ("plan:acme:2026-11-01", 0), ("plan:acme:2026-11-16", 0)]
    ended = current_balances(cfg, events(early, late), {"acme"}, datetime(2026, 12, 2), 3)["acme"]
    assert (ended.plan, ended.grants, ended.overage_amount) == ("basic", [], "0.00")
