"""The conformance landing zone (../shared/conformance): the reference
ingest prints the expected counts, and closing 2026-10 and 2026-11 gives the expected invoices
and margin (the fields expected.json compares)."""

from __future__ import annotations

import json
from datetime import date
from functools import cache

import polars as pl
import pytest

from billing_pipelines.close import close_month
from billing_pipelines.config import load_config
from billing_pipelines.ledger.checks import (
    conservation_problems, invoice_total_problems, negative_grant_problems,
)
from reference_ingest import load_landing

from conftest import CONFORMANCE  # noqa: E402  (tests/data/conformance)
EXPECTED = json.loads((CONFORMANCE / "expected.json").read_text())
INVOICE_FIELDS = ("org_id", "month", "subtotal", "tax", "total", "cogs_usd", "credits")


@cache
def landed():
    config = load_config(CONFORMANCE / "config")
    return config, load_landing(CONFORMANCE / "landing", config)


@cache
def closed(month: str):
    config, ingest = landed()
    return close_month(config, ingest.frame(), date.fromisoformat(f"{month}-01"), grace_days=3)


def compared(invoice: dict) -> dict:
    picked = {k: invoice[k] for k in INVOICE_FIELDS}
    picked["lines"] = [{"kind": line["kind"], "amount": line["amount"]} for line in invoice["lines"]]
    return picked


def test_reference_ingest_counts_match_expected():
    _, ingest = landed()
    got = {day: ingest.counts(date.fromisoformat(day)) for day in EXPECTED["ingest"]}
    assert got == EXPECTED["ingest"]


@pytest.mark.parametrize("month", ["2026-10", "2026-11"])
def test_invoices_match_expected(month):
    assert [compared(i) for i in closed(month).invoices] == EXPECTED["invoices"][month]


@pytest.mark.parametrize("month", ["2026-10", "2026-11"])
def test_margin_matches_expected(month):
    assert closed(month).margin == EXPECTED["margin"][month]


@pytest.mark.parametrize("month", ["2026-10", "2026-11"])
def test_month_close_checks_pass(month):
    close = closed(month)
    assert conservation_problems(close.credit_summaries) == []
    assert invoice_total_problems(close.invoices) == []
    assert negative_grant_problems(close.grants) == []


def test_allocations_trace_every_credit_of_the_month():
    close = closed("2026-11")
    _, ingest = landed()
    per_event = close.allocations.group_by("request_id").agg(credits=pl.col("credits").sum())
    billed = {e["request_id"]: e["credits"] for e in ingest.billed}
    assert all(billed[rid] == credits for rid, credits in per_event.iter_rows())
    assert per_event["credits"].sum() == sum(s.consumed for s in close.credit_summaries.values())


def test_closing_month_by_month_from_the_previous_close_gives_the_same_results():
    config, ingest = landed()
    events, previous = ingest.frame(), None
    for month in (date(2026, 9, 1), date(2026, 10, 1), date(2026, 11, 1)):
        previous = close_month(config, events, month, grace_days=3, previous=previous)
    assert [compared(i) for i in previous.invoices] == EXPECTED["invoices"]["2026-11"]
    assert previous.margin == EXPECTED["margin"]["2026-11"]
