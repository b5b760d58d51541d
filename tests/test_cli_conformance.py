"""The conformance landing zone through the command line, the Dagster definitions and instance:
what `billing ingest`, `billing invoices` and `billing margin` print is what SPEC §6 demands."""

from __future__ import annotations

import json

import pytest

from billing_pipelines import cli
from billing_pipelines.cli import runs
from tests.common import CONFORMANCE, CONFORMANCE_PLAN_CHANGES, config_with_seller

INVOICE_FIELDS = ("org_id", "month", "subtotal", "tax", "total", "cogs_usd", "credits")


@pytest.fixture
def conformance_env(tmp_path, monkeypatch, request):
    """The environment of a conformance example (CONFORMANCE unless the test is parametrized
    with another) on the conformance landing zone; returns its expected.json."""
    example = getattr(request, "param", CONFORMANCE)
    for name, value in {"BILLING_HOME": tmp_path / "home", "BILLING_CONFIG": example / "config",
                        "BILLING_LANDING": CONFORMANCE / "landing", "BILLING_GRACE_DAYS": "3",
                        "DAGSTER_HOME": tmp_path / "dagster"}.items():
        monkeypatch.setenv(name, str(value))
    return json.loads((example / "expected.json").read_text())


def billing(capsys, *args: str):
    cli.main(list(args))
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize("conformance_env", [CONFORMANCE, CONFORMANCE_PLAN_CHANGES], indirect=True,
                         ids=["conformance", "plan-changes"])
def test_ingest_close_and_report_through_dagster(conformance_env, capsys):
    expected = conformance_env
    got = billing(capsys, "ingest", "2026-11-01..2026-11-30", "2026-10-01..2026-10-31", "--format", "json")
    assert {g["landing_date"]: g for g in got} == expected["ingest"]
    for month in ("2026-10", "2026-11"):
        cli.main(["close-month", month])
        capsys.readouterr()
        invoices = billing(capsys, "invoices", month, "--format", "json")
        assert [i["status"] for i in invoices] == ["draft"] * len(invoices)
        trimmed = [{k: i[k] for k in INVOICE_FIELDS} | {"lines": [{"kind": line["kind"], "amount": line["amount"]}
                                                              for line in i["lines"]]} for i in invoices]
        assert trimmed == expected["invoices"][month]
        assert billing(capsys, "margin", month, "--format", "json") == expected["margin"][month]

    from dagster import DagsterInstance

    runs = DagsterInstance.get().get_runs()
    assert {r.job_name for r in runs} == {"daily_ingest", "start_month_close", "close_month_shard",
                                          "close_month_documents"}
    # globex started in September: closing October closes September first, each month in 3 runs
    # (August, the lead-in month, has no landing dates: nothing to close)
    assert len(runs) == 61 + 3 * 3 and all(r.is_success for r in runs)


def test_a_close_never_ingests_and_names_the_dates_to_ingest(conformance_env, capsys):
    with pytest.raises(SystemExit, match=r"run `billing ingest 2026-10-01\.\.2026-10-03` first"):
        cli.main(["close-month", "2026-09"])
    cli.main(["ingest", "2026-10-01..2026-11-30"])
    cli.main(["close-month", "2026-11"])
    capsys.readouterr()
    first = billing(capsys, "invoices", "2026-11", "--format", "json")
    cli.main(["ingest", "2026-11-09", "2026-11-30"])  # again: nothing changes, nothing is closed again
    cli.main(["close-month", "2026-11"])
    assert "closed first" not in capsys.readouterr().out
    assert billing(capsys, "invoices", "2026-11", "--format", "json") == first


def test_bad_arguments_get_clear_errors(conformance_env):
    with pytest.raises(SystemExit, match="not a date"):
        cli.main(["ingest", "2026-13-01"])
    with pytest.raises(SystemExit, match="not a month"):
        cli.main(["invoices", "November"])
    with pytest.raises(SystemExit, match="not a landing date partition"):
        cli.main(["ingest", "1999-01-01"])
    with pytest.raises(SystemExit, match="not closed yet"):
        cli.main(["margin", "2026-11"])


def test_the_billing_cycle_finalizes_only_in_the_finalize_job(conformance_env, capsys, tmp_path, monkeypatch):
    from billing_pipelines.definitions import defs
    from billing_pipelines.resources import BillingSettings

    monkeypatch.setenv("BILLING_CONFIG", str(config_with_seller(CONFORMANCE / "config", tmp_path / "config")))
    settings = BillingSettings.from_env()
    instance = runs.dagster_instance(settings)
    cli.main(["ingest", "2026-10-01..2026-11-03"])
    cli.main(["close-month", "2026-10"])
    capsys.readouterr()
    cycle = defs.resolve_job_def("close_month_documents").execute_in_process(
        partition_key="2026-10", instance=instance, resources={"billing": settings})
    assert cycle.success
    assert "finalized_invoices" not in {e.asset_key.to_user_string() for e in cycle.get_asset_materialization_events()}
    assert {i["status"] for i in billing(capsys, "invoices", "2026-10", "--format", "json")} == {"draft"}

    config = {"ops": {"finalize_month_invoices": {"config": {"month": "2026-10", "issue_date": "2026-11-05"}}}}
    finalize = defs.resolve_job_def("finalize_invoices").execute_in_process(
        run_config=config, instance=instance, resources={"billing": settings})
    assert finalize.success
    invoices = billing(capsys, "invoices", "2026-10", "--format", "json")
    assert {i["status"] for i in invoices} == {"final"}
    [event] = [e for e in finalize.get_asset_materialization_events()
               if e.asset_key.to_user_string() == "finalized_invoices"]
    rows = event.materialization.metadata["by_customer"].records
    assert [(r.data["org_id"], r.data["number"], r.data["total"]) for r in rows] == [
        (i["org_id"], i["number"], i["total"]) for i in invoices]
