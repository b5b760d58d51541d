"""The monthly margin report (HTML, PDF, Dagster asset, CLI) from months closed by the real
pipeline over the conformance landing zone; the PDF is parsed back with pypdf."""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
from datetime import date
from decimal import Decimal

import dagster as dg
import polars as pl
import pytest
from pypdf import PdfReader

from billing_pipelines.cli import margin as margin_cli
from billing_pipelines.config import load_config
from billing_pipelines.ingest.landing import landing_dates
from billing_pipelines.ingest.pipeline import ingest
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA
from billing_pipelines.margin.examples import example_closes, example_config
from billing_pipelines.margin.report import plan_changes_in
from billing_pipelines.margin.report_document import (
    CHART_CUSTOMERS,
    TREND_MONTHS,
    build_margin_report,
    load_margin_report,
    margin_report_html,
    report_key,
    stored_simulation,
    write_margin_report,
)
from billing_pipelines.margin.report_document import margin_report_pdf as print_pdf
from billing_pipelines.month_close.assets import MARGIN_CHECK as CHECK
from billing_pipelines.month_close.assets import margin_report_pdf
from billing_pipelines.month_close.compute import advise_tiers, close_month
from billing_pipelines.month_close.documents import closes_through, stored_month_close
from billing_pipelines.month_close.run import close_months
from billing_pipelines.month_close.usage import month_events_sql
from billing_pipelines.ratelimit.simulation import rate_limit_simulation
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import duck
from tests.common import CONFORMANCE, CONFORMANCE_PLAN_CHANGES  # noqa: E402  (tests/data)
from tests.reference_ingest import load_landing

OCT, NOV = date(2026, 10, 1), date(2026, 11, 1)
NAMES = {"acme": "Acme Corp", "globex": "Globex Corporation", "initech": "Initech"}


@pytest.fixture(scope="module")
def closed(tmp_path_factory) -> BillingSettings:
    """Settings over the conformance landing zone (as conftest's conformance_settings, from the
    tests/data) with September to November 2026 closed by the real month close, shared by
    this module's tests."""
    root = CONFORMANCE
    settings = BillingSettings.from_env({
        "BILLING_HOME": str(tmp_path_factory.mktemp("margin-report") / "home"),
        "BILLING_CONFIG": str(root / "config"), "BILLING_LANDING": str(root / "landing"),
        "BILLING_GRACE_DAYS": "3",
    })
    ingest(settings, sorted(landing_dates(settings.landing_store())))
    close_months(settings, NOV)  # and the months before it, from September (globex's start)
    return settings


def trend(settings: BillingSettings, month: date) -> list[dict]:
    return closes_through(settings.warehouse(), month, TREND_MONTHS)


@pytest.fixture(scope="module")
def expected_margin() -> dict[str, dict]:
    expected = json.loads((CONFORMANCE / "expected.json").read_text())
    return {m["org_id"]: m for m in expected["margin"]["2026-11"]}


@pytest.fixture(scope="module")
def november_pdf(closed) -> list[str]:
    """Text of each page of November's PDF, as written to the warehouse store."""
    _, keys = write_margin_report(closed, trend(closed, NOV))
    reader = PdfReader(io.BytesIO(closed.warehouse().store.read_bytes(keys["pdf"])))
    return [" ".join(page.extract_text().split()) for page in reader.pages]


def amount(text: str) -> str:
    return f"{Decimal(text):,.2f}"


def test_pdf_shows_every_customers_revenue_and_ratio(november_pdf, expected_margin):
    text = " ".join(november_pdf)
    for org_id, name in NAMES.items():
        m = expected_margin[org_id]
        row = re.search(rf"{name} {org_id} \w+ ([\d,.-]+) ([\d,.-]+) ([\d,.-]+) ([\d.]+) ([\d,.-]+) (\S+) (\S+)", text)
        assert row, f"no margin row for {name}"
        usage, breakage, revenue, cogs, gross, pct, ratio = row.groups()
        assert (breakage, revenue, cogs, gross) == (
            amount(m["breakage"]), amount(m["revenue"]), m["cogs_usd"], amount(m["gross_margin"]))
        assert Decimal(usage.replace(",", "")) == Decimal(m["revenue"]) - Decimal(m["breakage"])
        assert pct == (f"{m['margin_pct']}%" if m["margin_pct"] else "—")
        assert ratio == f"{m['credit_to_cost_ratio']}×"


def test_first_page_lists_the_customer_below_target(november_pdf, expected_margin):
    assert [o for o, m in expected_margin.items() if m["below_target"]] == ["initech"]
    first = november_pdf[0]
    below = first[first.index("Customers below target"):first.index("Revenue, COGS and margin %")]
    # Initech: no revenue (free plan, overage written off) against 1.3469 of COGS; 3 x 1.3469 = 4.04 short
    assert "Initech initech free 0.00 1.3469 0.00× 4.04 frontier-large" in below
    assert "Acme" not in below and "Globex" not in below
    assert "1 of 3" in first
    assert "Example AI Ltd" in first  # the default seller: the conformance config has no seller.yaml
    assert "November 2026" in first and "Page 1 of" in first


def test_totals_foot_the_customer_rows(closed, expected_margin):
    report = load_margin_report(closed, trend(closed, NOV))
    assert report.totals.revenue == sum(Decimal(m["revenue"]) for m in expected_margin.values())
    assert report.totals.cogs == sum(Decimal(m["cogs_usd"]) for m in expected_margin.values())
    assert report.totals.ratio == Decimal("31.15")  # 1045.57 / 33.5647
    assert [t.month for t in report.trend] == ["2026-09", "2026-10", "2026-11"]
    assert [c.org_id for c in report.below_target] == ["initech"]


def test_html_embeds_the_charts_as_svg(closed):
    html = margin_report_html(load_margin_report(closed, trend(closed, NOV)))
    images = re.findall(r'<img class="chart[^"]*" src="data:image/svg\+xml;base64,([^"]+)" alt="([^"]+)"', html)
    assert [alt.split(" ")[0] for _, alt in images] == ["Credit-to-cost", "Revenue,", "Revenue,", "Cost"]
    ratio_chart = base64.b64decode(images[0][0]).decode()
    assert ratio_chart.startswith("<?xml") and "<svg" in ratio_chart
    assert all(name in ratio_chart for name in NAMES.values())
    assert "target 3.0×" in ratio_chart
    cost_chart = base64.b64decode(images[3][0]).decode()
    assert all(tier in cost_chart for tier in ("simple", "complex", "document", "embedding", "frontier-large"))
    assert "Rate-limit simulation" not in html


def test_rendering_is_deterministic(closed):
    report = load_margin_report(closed, trend(closed, NOV))
    first, second = margin_report_html(report), margin_report_html(load_margin_report(closed, trend(closed, NOV)))
    assert first == second
    assert print_pdf(first) == print_pdf(second)


def test_advisor_lines_give_per_tier_advice(closed):
    report = load_margin_report(closed, trend(closed, NOV))
    tiers = {t["action"]: t for t in report.tiers}
    assert set(tiers) == {"complex", "document", "embedding", "simple"}
    for tier in tiers.values():
        assert tier["cost_per_credit_median"] <= tier["cost_per_credit_p90"] <= tier["cost_per_credit_p99"]
    # simple charges 1 credit an event but needs 3 for its cost to meet the target
    assert (tiers["simple"]["credits_per_event"], tiers["simple"]["verdict"]) == (Decimal("1.00"), "raise to 3")
    assert tiers["complex"]["verdict"] == "meets target"
    assert report.cost_ceiling == Decimal("0.002686")  # 0.008059 / 3


def test_rate_limit_simulation_is_shown_when_given(closed):
    con = duck.connect()
    month_events = con.sql(month_events_sql(con, closed.warehouse(), NOV, 1)).pl().cast(BILLED_EVENT_SCHEMA)
    simulation = rate_limit_simulation(month_events, closed.billing_config())
    html = margin_report_html(load_margin_report(closed, trend(closed, NOV), simulation))
    assert html.count('<img class="chart') == 5
    text = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(print_pdf(html))).pages)
    section = text[text.index("Rate-limit simulation"):]
    for row in simulation.iter_rows(named=True):
        assert (f"{NAMES[row['org_id']]} {row['org_id']} {row['requests']:,} {row['degraded']:,} "
                f"{row['rejected']:,} {row['cogs_saved_usd']} {amount(row['revenue_at_risk'])}") in section
    assert f"Total (USD) {simulation['requests'].sum():,}" in section


def test_a_simulation_without_its_columns_is_refused(closed):
    with pytest.raises(ValueError, match="lacks column.*degraded"):
        load_margin_report(closed, trend(closed, NOV), [{"org_id": "acme", "requests": 1}])
    with pytest.raises(ValueError, match="lacks column.*revenue_at_risk"):
        load_margin_report(closed, trend(closed, NOV), pl.DataFrame(schema={"org_id": pl.String, "requests": pl.Int64}))


def test_a_month_not_closed_is_a_clear_error(closed):
    with pytest.raises(LookupError, match="2026-12 is not closed yet"):
        load_margin_report(closed, trend(closed, date(2026, 12, 1)))


def test_every_customer_meeting_the_target_is_said_so(closed):
    close = stored_month_close(closed.warehouse(), NOV)
    close = {**close, "margin": [m for m in close["margin"] if not m["below_target"]]}
    report = build_margin_report(closed.billing_config(), [close])
    assert report.totals.below_target == 0
    assert "Every customer meets the 3.0× target this month." in margin_report_html(report)


def test_asset_stores_the_report_and_warns_on_customers_below_target(closed):
    result = dg.materialize([margin_report_pdf], partition_key="2026-11", resources={"billing": closed},
                            instance=dg.DagsterInstance.ephemeral())
    assert result.success
    [check] = result.get_asset_check_evaluations()
    assert (check.check_name, check.passed, check.severity) == (CHECK, False, dg.AssetCheckSeverity.WARN)
    assert "Initech (`initech`)" in check.metadata["below_target"].value
    metadata = result.asset_materializations_for_node("margin_report_pdf")[0].metadata
    assert "| 1,045.57 | 933.72 | 33.5647 | 1,012.01 | 96.79 | 31.15 | 1 of 3 |" in metadata["summary"].value
    assert metadata["customers_below_target"].value == 1
    assert [metadata[k].value for k in ("customers_upgraded", "customers_cancelled", "monthly_fee_difference")] == [
        0, 0, "0.00"]
    store = closed.warehouse().store
    assert store.read_bytes(report_key(NOV, "pdf")).startswith(b"%PDF-")
    assert b"Customers below target" in store.read_bytes(report_key(NOV, "html"))


def run_cli(settings: BillingSettings, *argv: str) -> None:
    parser = argparse.ArgumentParser(prog="billing")
    margin_cli.register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(list(argv))
    args.handler(args, settings)


def test_cli_writes_the_pdf_and_html_into_a_folder(closed, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    run_cli(closed, "margin-report", "2026-10", "--out", str(tmp_path / "out"))
    pdf, html = tmp_path / "out" / "margin-report-2026-10.pdf", tmp_path / "out" / "margin-report-2026-10.html"
    assert capsys.readouterr().out.split() == [str(pdf), str(html)]
    assert "October 2026" in PdfReader(pdf).pages[0].extract_text()
    assert "Margin report, October 2026" in html.read_text()


def test_cli_refuses_a_month_not_closed(closed, tmp_path, monkeypatch):
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    with pytest.raises(SystemExit, match="2026-12"):
        run_cli(closed, "margin-report", "2026-12")


def test_the_month_close_job_runs_the_report_after_the_documents_and_the_simulation(closed):
    from billing_pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    assert graph.get(dg.AssetKey("margin_report_pdf")).parent_keys == {
        dg.AssetKey("margin_report"), dg.AssetKey("rate_limit_simulation")}
    try:
        result = defs.resolve_job_def("close_month_documents").execute_in_process(
            partition_key="2026-11", instance=dg.DagsterInstance.ephemeral(), resources={"billing": closed})
        assert result.success
        materialized = [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()]
        assert materialized[-1] == "margin_report_pdf"
        assert {"draft_invoices", "margin_report", "rate_limit_simulation"} < set(materialized)
        stored = stored_simulation(closed, NOV)
        assert stored["org_id"].to_list() == ["acme", "globex", "initech"]
        html = closed.warehouse().store.read_bytes(report_key(NOV, "html")).decode()
        assert f"Total (USD)</td>\n      <td class=\"num\">{stored['requests'].sum():,}</td>" in html
        assert stored_simulation(closed, OCT) is None
    finally:  # the other tests see the month without a simulation
        closed.warehouse().store.delete_dir("rate_limit_simulation")


def test_charts_of_a_large_customer_base_show_the_largest_and_the_tables_everyone():
    config = example_config(45)
    report = build_margin_report(config, example_closes(config, OCT, 3))
    html = margin_report_html(report)
    ratio_chart = base64.b64decode(re.search(r'src="data:image/svg\+xml;base64,([^"]+)" alt="Credit-to-cost',
                                             html).group(1)).decode()
    charted = {c.org_id for c in report.customers if c.name in ratio_chart}
    costliest = sorted(report.customers, key=lambda c: c.cogs, reverse=True)[:CHART_CUSTOMERS]
    assert charted == {c.org_id for c in costliest}
    assert "Showing the 30 customers with the most COGS; the tables list all 45." in " ".join(html.split())
    assert all(f'<span class="id">{org_id}</span>' in html for org_id in config.customers)


def test_the_months_plan_changes_are_counted_and_listed():
    config = load_config(CONFORMANCE_PLAN_CHANGES / "config")
    history = load_landing(CONFORMANCE / "landing", config).frame()
    close = close_month(config, history, NOV)
    stored = {"month": "2026-11", "margin": [m.to_json() for m in close.margin],
              "invoices": [i.to_json() for i in close.invoices],
              "advisor": advise_tiers(config, history, close).to_json(),
              "credit_summaries": {o: s.as_dict() for o, s in close.credit_summaries.items()}}
    report = build_margin_report(config, [stored])
    changes = report.plan_changes
    assert (changes.upgraded, changes.downgraded, changes.cancelled) == (("acme",), ("globex",), ("initech",))
    assert changes.fee_difference == Decimal("0.00")  # +1,951.00 (acme), -1,951.00 (globex), -0.00 (initech)
    assert changes.as_metadata() == {"customers_upgraded": 1, "customers_downgraded": 1, "customers_cancelled": 1,
                                     "monthly_fee_difference": "0.00"}
    assert plan_changes_in(config, OCT).changes == ()
    assert {c.org_id: c.plan for c in report.customers} == {"acme": "pro → enterprise", "globex": "pro",
                                                            "initech": "free"}
    text = " ".join(" ".join(p.extract_text().split()) for p in PdfReader(io.BytesIO(print_pdf(
        margin_report_html(report)))).pages)
    section = text[text.index("Plan changes and cancellations"):]
    assert "1 customer upgraded, 1 downgraded and 1 cancelled this month" in section
    for row in ("Globex Corporation globex 2026-11-01 downgrade enterprise pro -1,951.00",
                "Acme Corp acme 2026-11-16 upgrade pro enterprise +1,951.00",
                "Initech initech 2026-11-20 cancelled free — +0.00"):
        assert row in section
