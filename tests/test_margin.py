"""Revenue recognition on hand-made histories (issue 5's acceptance) and the margin JSON."""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from fractions import Fraction

from billing_pipelines.ledger.grants import Grant, rollover_grant
from billing_pipelines.ledger.usage import recognized_revenue
from billing_pipelines.month_close.compute import advise_tiers, close_month
from tests.ledger_helpers import config, events, plan, purchase

OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)


def margin_of(close, org_id="acme") -> dict:
    return next(m.to_json() for m in close.margin if m.org_id == org_id)


def test_plan_credits_are_recognized_exactly_at_fee_over_included():
    cfg = config(plan(fee="1500.00", included=180000))
    close = close_month(cfg, events(("a", "2026-10-05T00:00:00", 40005, None, "100")), OCT)
    margin = margin_of(close)
    # 40,005 x 1500/180000 = 333.375 -> 333.38; the 139,995 that expire: 1166.625 -> 1166.63
    assert margin["by_action"][0]["revenue"] == "333.38"
    assert margin["breakage"] == "1166.63"
    assert margin["revenue"] == "1500.00"
    assert (margin["gross_margin"], margin["margin_pct"], margin["credit_to_cost_ratio"]) == (
        "1400.00", "93.33", "15.00",
    )
    assert margin["below_target"] is False


def test_purchased_credits_are_recognized_at_price_over_credits():
    cfg = config(plan(fee="0.00", included=0), purchases=[purchase("p-1", "2026-10-02T00:00", 1000, "30.00")])
    close = close_month(cfg, events(("a", "2026-10-05T00:00:00", 333, None, "1.00")), OCT)
    assert margin_of(close)["revenue"] == "9.99"
    assert margin_of(close)["breakage"] == "0.00"


def test_rollover_credits_keep_the_unit_price_of_their_origin():
    source = Grant("plan:acme:2026-10", "acme", "plan", datetime(2026, 10, 1), datetime(2026, 11, 1),
                   100, Fraction(3, 100), "2026-10")
    repriced = plan(fee="99.00", included=100, rollover_max=100)
    assert rollover_grant(source, repriced, 40).unit_price == Fraction(3, 100)

    cfg = config(plan(fee="3.00", included=100, rollover_max=100))
    close = close_month(cfg, events(("a", "2026-11-05T00:00:00", 150)), NOV)
    rows = close.allocations.select("grant_kind", "credits", "unit_price_num", "unit_price_den").rows()
    assert rows == [("rollover", 100, 3, 100), ("plan", 50, 3, 100)]
    assert margin_of(close)["revenue"] == "4.50"


def test_overage_is_recognized_at_the_overage_price():
    cfg = config(plan(fee="1.00", included=10, overage="0.05"))
    close = close_month(cfg, events(("a", "2026-10-05T00:00:00", 30)), OCT)
    # 10 x 0.10 + 20 x 0.05
    assert margin_of(close)["revenue"] == "2.00"


def test_breakage_is_recognized_in_the_month_the_expiry_falls_in():
    cfg = config(plan(fee="0.00", included=0),
                 purchases=[purchase("p-1", "2026-10-15T00:00", 100, "10.00", months=1)])
    history = events(("a", "2026-10-20T00:00:00", 30), ("b", "2026-11-02T00:00:00", 20))
    october, november = close_month(cfg, history, OCT), close_month(cfg, history, NOV)
    assert (margin_of(october)["revenue"], margin_of(october)["breakage"]) == ("3.00", "0.00")
    assert (margin_of(november)["revenue"], margin_of(november)["breakage"]) == ("7.00", "5.00")
    assert november.credit_summaries["acme"].expired == 50


def test_splits_by_model_and_by_action_sum_to_the_usage_revenue():
    cfg = config(plan(fee="10.00", included=30, overage="0.0700"),
                 purchases=[purchase("p-1", "2026-10-10T00:00", 7, "1.00")])
    history = events(
        ("a", "2026-10-02T00:00:00", 13, None, "0.01", "big", "complex"),
        ("b", "2026-10-03T00:00:00", 11, None, "0.02", "small", "simple"),
        ("c", "2026-10-11T00:00:00", 9, None, "0.03", "big", "simple"),
        ("d", "2026-10-12T00:00:00", 17, None, "0.04", "small", "complex"),
    )
    close = close_month(cfg, history, OCT)
    total = recognized_revenue(close.revenue_shares)[("acme",)]
    for field in ("model", "action"):
        split = recognized_revenue(close.revenue_shares, field)
        assert sum(split.values()) == total
    # 30 plan credits at 1/3, 7 purchased at 1/7, 13 overage at 0.07
    assert total == 10 + 1 + Fraction(91, 100)
    margin = margin_of(close)
    assert [r["model"] for r in margin["by_model"]] == ["big", "small"]
    assert [r["action"] for r in margin["by_action"]] == ["complex", "simple"]
    assert sum(r["credits"] for r in margin["by_model"]) == 50
    assert sum(Decimal(r["cogs_usd"]) for r in margin["by_action"]) == Decimal("0.1000")
    assert list(margin) == [
        "org_id", "month", "revenue", "breakage", "cogs_usd", "gross_margin", "margin_pct",
        "credit_to_cost_ratio", "below_target", "by_model", "by_action",
    ]


def test_no_cost_means_no_ratio_and_not_below_target():
    close = close_month(config(plan()), events(("a", "2026-10-05T00:00:00", 5, None, "0")), OCT)
    margin = margin_of(close)
    assert (margin["credit_to_cost_ratio"], margin["below_target"]) == (None, False)


def test_advisor_gives_percentiles_and_credits_needed():
    cfg = config(plan(fee="1.00", included=100))
    history = events(*[(f"r{i:02d}", "2026-10-05T00:00:00", 1, None, f"0.{i:04d}") for i in range(1, 101)])
    advice = advise_tiers(cfg, history, close_month(cfg, history, OCT)).to_json()
    row = advice["by_action"][0]
    # cost per credit 0.0001 .. 0.0100; nearest rank: 50th, 90th, 99th
    assert (row["cost_per_credit_median"], row["cost_per_credit_p90"], row["cost_per_credit_p99"]) == (
        "0.005000", "0.009000", "0.009900",
    )
    # revenue per credit 0.01; mean event cost 0.00505; 3 x 0.00505 / 0.01 = 1.515 -> 2 credits
    assert advice["revenue_per_credit"] == "0.010000"
    assert row["credits_needed_for_target"] == 2
