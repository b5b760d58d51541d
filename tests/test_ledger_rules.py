"""Worked examples, by hand, of every rule of SPEC §2-4 (issue 3's acceptance)."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import polars as pl
import pytest

from billing_pipelines.config import Customer
from billing_pipelines.month_close.compute import close_month
from tests.ledger_helpers import assert_consistent, config, credits_of, events, lines, plan, purchase, shares

OCT, NOV, DEC = date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1)


def test_purchase_mid_month_starts_at_its_time_and_is_used_after_the_plan_grant():
    cfg = config(plan(included=100), purchases=[purchase("p-1", "2026-10-10T12:00", 500, "20.00")])
    history = events(
        ("a", "2026-10-10T11:59:59", 80),     # before the purchase: plan grant only
        ("b", "2026-10-10T12:00:00", 60),     # splits: 20 from the plan grant, 40 purchased
        ("c", "2026-10-20T00:00:00", 5),
    )
    close = close_month(cfg, history, OCT)
    assert shares(close, "b") == [("plan", "plan:acme:2026-10", 20), ("purchase", "purchase:p-1", 40)]
    assert shares(close, "c") == [("purchase", "purchase:p-1", 5)]
    assert credits_of(close) == dict(
        opening=0, rolled_over_in=0, granted=100, purchased=500, consumed=145, overage=0,
        expired=0, rolled_over_out=0, closing=455,
    )
    assert lines(close) == [("plan_fee", "49.00"), ("credit_purchase", "20.00")]
    assert close.invoices[0].to_json()["total"] == "69.00"
    assert_consistent(close)


def test_overage_before_a_purchase_stays_overage():
    cfg = config(plan(included=10), purchases=[purchase("p-1", "2026-10-10T00:00", 100, "5.00")])
    history = events(("a", "2026-10-05T00:00:00", 15), ("b", "2026-10-12T00:00:00", 3))
    close = close_month(cfg, history, OCT)
    assert shares(close, "a") == [("plan", "plan:acme:2026-10", 10), ("overage", None, 5)]
    assert shares(close, "b") == [("purchase", "purchase:p-1", 3)]
    assert credits_of(close)["overage"] == 5
    assert credits_of(close)["closing"] == 97
    # 5 x 0.0120 = 0.06
    assert lines(close) == [("plan_fee", "49.00"), ("credit_purchase", "5.00"), ("overage", "0.06")]
    assert_consistent(close)


def test_overage_amount_rounds_half_up():
    cfg = config(plan(included=0, fee="0.00", overage="0.0130"))
    close = close_month(cfg, events(("a", "2026-10-05T00:00:00", 5)), OCT)
    assert lines(close) == [("plan_fee", "0.00"), ("overage", "0.07")]  # 0.065 -> 0.07
    line = close.invoices[0].to_json()["lines"][1]
    assert (line["quantity"], line["unit_price"]) == ("5", "0.0130")


def test_rollover_is_capped_and_the_rest_expires():
    cfg = config(plan(included=100, rollover_max=30))
    history = events(("a", "2026-10-05T00:00:00", 20), ("b", "2026-11-02T00:00:00", 1))
    october = close_month(cfg, history, OCT)
    assert credits_of(october) == dict(
        opening=0, rolled_over_in=0, granted=100, purchased=0, consumed=20, overage=0,
        expired=50, rolled_over_out=30, closing=30,
    )
    november = close_month(cfg, history, NOV)
    assert credits_of(november)["opening"] == credits_of(november)["rolled_over_in"] == 30
    assert shares(november, "b") == [("rollover", "rollover:acme:2026-10", 1)]
    assert_consistent(october)
    assert_consistent(november)


def test_rollover_expires_after_its_months_and_is_never_rolled_again():
    cfg = config(plan(included=100, rollover_max=50))
    history = events(("a", "2026-11-03T00:00:00", 10))
    november = close_month(cfg, history, NOV)
    # October's 100 unused: 50 roll into November, 50 expire in October. In November the
    # rollover (same expiry and start as the plan grant) is used first, its 40 left expire,
    # and 50 of November's 100 roll over.
    assert shares(november, "a") == [("rollover", "rollover:acme:2026-10", 10)]
    assert credits_of(november) == dict(
        opening=50, rolled_over_in=50, granted=100, purchased=0, consumed=10, overage=0,
        expired=90, rolled_over_out=50, closing=50,
    )
    assert_consistent(november)


def test_longer_rollover_is_used_after_the_new_plan_grant():
    cfg = config(plan(included=100, rollover_max=100, rollover_months=3))
    history = events(("a", "2026-11-03T00:00:00", 120))
    november = close_month(cfg, history, NOV)
    # November's plan grant expires Dec 1, October's rollover Feb 1: earliest expiry first.
    assert shares(november, "a") == [
        ("plan", "plan:acme:2026-11", 100), ("rollover", "rollover:acme:2026-10", 20),
    ]
    assert credits_of(november)["closing"] == 80
    assert credits_of(close_month(cfg, history, date(2027, 1, 1)))["expired"] == 80


def test_plan_without_included_credits_bills_all_usage_as_overage():
    cfg = config(plan(fee="10.00", included=0, overage="0.0100"))
    close = close_month(cfg, events(("a", "2026-10-05T00:00:00", 250)), OCT)
    assert shares(close, "a") == [("overage", None, 250)]
    assert lines(close) == [("plan_fee", "10.00"), ("overage", "2.50")]
    assert close.grants == []
    assert close.margin[0].to_json()["revenue"] == "2.50"
    assert_consistent(close)


def test_free_plan_without_overage_price_writes_overage_off():
    cfg = config(plan(name="free", fee="0.00", included=100, overage=None))
    close = close_month(cfg, events(("a", "2026-10-05T00:00:00", 150, None, "0.5000")), OCT)
    assert credits_of(close)["overage"] == 50
    assert lines(close) == [("plan_fee", "0.00")]
    assert close.invoices[0].to_json()["total"] == "0.00"
    assert close.invoices[0].to_json()["lines"][0]["description"] == "Free plan, October 2026"
    margin = close.margin[0].to_json()
    assert (margin["revenue"], margin["credit_to_cost_ratio"], margin["margin_pct"]) == ("0.00", "0.00", None)
    assert margin["below_target"] is True


@pytest.mark.parametrize(
    ("landing", "billed_in", "ledger_time"),
    [
        ("2026-11-03", OCT, "2026-10-31 23:00:00"),   # inside the 3 grace days: its own month
        ("2026-11-04", NOV, "2026-11-01 00:00:00"),   # after: late usage, at November's start
    ],
)
def test_late_usage_inside_and_after_the_grace_period(landing, billed_in, ledger_time):
    cfg = config(plan(included=100, rollover_max=100))
    history = events(("late", "2026-10-31T23:00:00", 7, landing), ("nov", "2026-11-01T00:00:00", 1))
    close = close_month(cfg, history, billed_in)
    row = close.allocations.filter(pl.col("request_id") == "late").row(0, named=True)
    assert str(row["ledger_time"]) == ledger_time
    assert credits_of(close)["consumed"] == (7 if billed_in == OCT else 8)
    if billed_in == NOV:
        # at 00:00 both events tie on time: request_id order puts "late" first
        assert shares(close, "late") == [("rollover", "rollover:acme:2026-10", 7)]
        assert credits_of(close)["opening"] == 100


def test_grace_days_is_a_setting():
    cfg = config(plan(included=100))
    history = events(("late", "2026-10-31T23:00:00", 7, "2026-11-04"))
    assert credits_of(close_month(cfg, history, OCT, grace_days=5))["consumed"] == 7
    assert credits_of(close_month(cfg, history, OCT, grace_days=3))["consumed"] == 0
    with pytest.raises(ValueError, match="grace_days"):
        close_month(cfg, history, OCT, grace_days=-1)


def test_customer_starting_mid_month_gets_the_full_fee_and_credits():
    cfg = config(plan(included=100), start="2026-10-15")
    close = close_month(cfg, events(("a", "2026-10-15T08:00:00", 30)), OCT)
    assert credits_of(close)["granted"] == 100
    assert lines(close) == [("plan_fee", "49.00")]
    assert close_month(cfg, events(), date(2026, 9, 1)).invoices == []


def test_tax_rounds_half_up():
    cfg = config(plan(fee="10.50", included=10), tax="0.05")
    invoice = close_month(cfg, events(), OCT).invoices[0].to_json()
    # 10.50 x 0.05 = 0.525 -> 0.53 (banker's rounding would give 0.52)
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == ("10.50", "0.53", "11.03")


def test_invoice_json_has_the_fields_and_order_of_spec_6():
    close = close_month(config(plan(), tax="0.20"), events(("a", "2026-10-02T00:00:00", 5)), OCT)
    invoice = close.invoices[0].to_json()
    assert list(invoice) == [
        "org_id", "month", "status", "number", "currency", "lines", "subtotal", "tax", "total",
        "cogs_usd", "credits",
    ]
    assert invoice["lines"][0] == {
        "kind": "plan_fee", "description": "Pro plan, October 2026", "quantity": "1",
        "unit_price": "49.00", "amount": "49.00",
    }
    assert (invoice["status"], invoice["number"], invoice["cogs_usd"]) == ("draft", None, "0.0010")
    assert list(invoice["credits"]) == [
        "opening", "rolled_over_in", "granted", "purchased", "consumed", "overage", "expired",
        "rolled_over_out", "closing",
    ]


def test_purchases_at_the_same_time_are_used_by_id():
    cfg = config(plan(included=0), purchases=[
        purchase("p-2", "2026-10-10T00:00", 10, "1.00"), purchase("p-1", "2026-10-10T00:00", 10, "1.00"),
    ])
    close = close_month(cfg, events(("a", "2026-10-11T00:00:00", 15)), OCT)
    assert shares(close, "a") == [("purchase", "purchase:p-1", 10), ("purchase", "purchase:p-2", 5)]


def test_purchase_expiry_is_clamped_to_the_month_end():
    cfg = config(plan(included=0), start="2026-01-01",
                 purchases=[purchase("p-1", "2026-01-31T10:00", 10, "1.00", months=1)])
    history = events(("a", "2026-02-28T09:59:59", 1), ("b", "2026-02-28T10:00:00", 1))
    close = close_month(cfg, history, date(2026, 2, 1))
    assert shares(close, "a") == [("purchase", "purchase:p-1", 1)]
    assert shares(close, "b") == [("overage", None, 1)]
    assert credits_of(close)["expired"] == 9


def test_closing_twice_gives_identical_results():
    cfg = config(plan(included=100, rollover_max=50), purchases=[purchase("p-1", "2026-10-10T00:00", 10, "1.00")])
    history = events(*[(f"r{i:03d}", f"2026-10-{1 + i % 28:02d}T10:00:00", 1 + i % 7) for i in range(60)])
    first, again = close_month(cfg, history, OCT), close_month(cfg, history.reverse(), OCT)
    assert first.invoices == again.invoices and first.margin == again.margin
    assert first.allocations.equals(again.allocations)


def test_events_of_unknown_or_not_yet_started_customers_are_rejected():
    late_starter = Customer("globex", "Globex", "pro", date(2026, 12, 1))
    cfg = config(plan(), extra_customers=[late_starter])
    history = events(("a", "2026-10-05T00:00:00", 1, None, "0", "big", "simple", "globex"))
    with pytest.raises(ValueError, match="globex"):
        close_month(cfg, history, OCT)


def test_missing_column_is_a_clear_error():
    with pytest.raises(ValueError, match="credits"):
        close_month(config(plan()), events().drop("credits"), OCT)


def test_events_with_a_model_outside_the_price_book_are_rejected():
    history = events(("a", "2026-10-05T00:00:00", 1, None, "0", "gpt-x"))
    with pytest.raises(ValueError, match="price book"):
        close_month(config(plan()), history, OCT)


def test_closing_from_a_previous_close_needs_the_month_before():
    cfg = config(plan(included=100, rollover_max=50))
    history = events(("a", "2026-10-05T00:00:00", 10), ("b", "2026-11-05T00:00:00", 70))
    october = close_month(cfg, history, OCT)
    november = close_month(cfg, history, NOV, previous=october)
    assert credits_of(november) == credits_of(close_month(cfg, history, NOV))
    with pytest.raises(ValueError, match="month before"):
        close_month(cfg, history, DEC, previous=october)
    with pytest.raises(ValueError, match="acme: no closing state"):
        close_month(cfg, history, NOV, previous=replace(october, credit_summaries={}))
