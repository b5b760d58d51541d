"""The conformance examples (tests/data/conformance and conformance-plan-changes, on the same
landing zone): the reference ingest prints the expected counts, and closing 2026-10 and 2026-11
gives the expected invoices and margin (the fields expected.json compares)."""

from __future__ import annotations

import json
from datetime import date
from functools import cache

import polars as pl
import pytest

from billing_pipelines.config import load_config
from billing_pipelines.month_close.checks import conservation_problems, invoice_total_problems, negative_grant_problems
from billing_pipelines.month_close.compute import close_month
from tests.common import CONFORMANCE, CONFORMANCE_PLAN_CHANGES  # noqa: E402  (tests/data)
from tests.reference_ingest import load_landing

EXAMPLES = {"conformance": CONFORMANCE, "plan-changes": CONFORMANCE_PLAN_CHANGES}
INVOICE_FIELDS = ("org_id", "month", "subtotal", "tax", "total", "cogs_usd", "credits")
MONTHS = ["2026-10", "2026-11"]


@cache
def expected(example: str) -> dict:
    return json.loads((EXAMPLES[example] / "expected.json").read_text())


@cache
def landed(example: str):
    config = load_config(EXAMPLES[example] / "config")
    return config, load_landing(CONFORMANCE / "landing", config)


@cache
def closed(example: str, month: str):
    config, ingest = landed(example)
    return close_month(config, ingest.frame(), date.fromisoformat(f"{month}-01"), grace_days=3)


def compared(typed) -> dict:
    invoice = typed.to_json()
    picked = {k: invoice[k] for k in INVOICE_FIELDS}
    picked["lines"] = [{"kind": line["kind"], "amount": line["amount"]} for line in invoice["lines"]]
    return picked


every_example = pytest.mark.parametrize("example", list(EXAMPLES))
every_month = pytest.mark.parametrize("month", MONTHS)


@every_example
def test_reference_ingest_counts_match_expected(example):
    _, ingest = landed(example)
    got = {day: ingest.counts(date.fromisoformat(day)) for day in expected(example)["ingest"]}
    assert got == expected(example)["ingest"]


@every_example
@every_month
def test_invoices_match_expected(example, month):
    assert [compared(i) for i in closed(example, month).invoices] == expected(example)["invoices"][month]


@every_example
@every_month
def test_margin_matches_expected(example, month):
    assert [m.to_json() for m in closed(example, month).margin] == expected(example)["margin"][month]


@every_example
@every_month
def test_month_close_checks_pass(example, month):
    close = closed(example, month)
    assert conservation_problems(close.credit_summaries) == []
    assert invoice_total_problems(close.invoices) == []
    assert negative_grant_problems(close.grants) == []


@every_example
def test_allocations_trace_every_credit_of_the_month(example):
    close = closed(example, "2026-11")
    _, ingest = landed(example)
    per_event = close.allocations.group_by("request_id").agg(credits=pl.col("credits").sum())
    billed = {e["request_id"]: e["credits"] for e in ingest.billed}
    assert all(billed[rid] == credits for rid, credits in per_event.iter_rows())
    assert per_event["credits"].sum() == sum(s.consumed for s in close.credit_summaries.values())


@every_example
def test_closing_month_by_month_from_the_previous_close_gives_the_same_results(example):
    config, ingest = landed(example)
    events, previous = ingest.frame(), None
    for month in (date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)):
        previous = close_month(config, events, month, grace_days=3, previous=previous)
    assert [compared(i) for i in previous.invoices] == expected(example)["invoices"]["2026-11"]
    assert [m.to_json() for m in previous.margin] == expected(example)["margin"]["2026-11"]


def test_plan_changes_bill_each_period_with_its_own_description():
    descriptions = {i.org_id: [line.description for line in i.lines]
                    for i in closed("plan-changes", "2026-11").invoices}
    assert descriptions == {
        "acme": ["Pro plan, 1-15 November 2026 (15 of 30 days)",
                 "Enterprise plan, 16-30 November 2026 (15 of 30 days)",
                 "Credit purchase p-1001: 10,000 credits"],
        "globex": ["Pro plan, November 2026"],
        "initech": ["Free plan, 1-19 November 2026 (19 of 30 days)"],
    }
