"""`billing close-month`, `billing finalize` and `billing invoices` on a copy of the conformance
landing zone, through the Dagster definitions and instance: finalization, then a late file for
October and a re-close that issues exactly one adjustment."""

from __future__ import annotations

import json
import shutil
from datetime import date
from decimal import Decimal

import pytest

from billing_pipelines import cli
from billing_pipelines.month_close.documents import stored_month_close
from billing_pipelines.resources import BillingSettings
from tests.common import CONFORMANCE, Landing, config_with_seller, event


@pytest.fixture
def landing(tmp_path, monkeypatch) -> Landing:
    root = CONFORMANCE
    shutil.copytree(root / "landing", tmp_path / "landing")
    config = config_with_seller(root / "config", tmp_path / "config")
    for name, value in {"BILLING_HOME": tmp_path / "home", "BILLING_CONFIG": config,
                        "BILLING_LANDING": tmp_path / "landing", "BILLING_GRACE_DAYS": "3",
                        "DAGSTER_HOME": tmp_path / "dagster"}.items():
        monkeypatch.setenv(name, str(value))
    return Landing(tmp_path / "landing")


def invoices(capsys, month: str) -> list[dict]:
    capsys.readouterr()
    cli.main(["invoices", month, "--format", "json"])
    return json.loads(capsys.readouterr().out)


def test_finalize_then_backfill_lists_one_adjustment(landing, capsys):
    cli.main(["ingest", "2026-10-01..2026-11-03"])
    cli.main(["close-month", "2026-10"])
    cli.main(["finalize", "2026-10", "--issue-date", "2026-11-05"])
    assert "INV-2026-000002" in capsys.readouterr().out
    final = invoices(capsys, "2026-10")
    assert [(i["org_id"], i["status"], i["number"]) for i in final] == [
        ("acme", "final", "INV-2026-000001"), ("globex", "final", "INV-2026-000002")]

    late = [event(f"late-{i}", "acme", "2026-10-05T12:00:00Z", action="complex") for i in range(500)]
    landing.jsonl("2026-10-05", "late-backfill.jsonl", late)  # 2,500 credits: beyond the balance
    with pytest.raises(SystemExit, match="run `billing ingest 2026-10-05` first"):
        cli.main(["close-month", "2026-10"])
    cli.main(["ingest", "2026-10-05"])
    cli.main(["close-month", "2026-10"])
    cli.main(["close-month", "2026-10"])  # current: closes nothing, issues nothing

    listed = invoices(capsys, "2026-10")
    assert listed[:2] == final
    [adjustment] = listed[2:]
    recomputed = next(i for i in stored_month_close(BillingSettings.from_env().warehouse(),
                                                    date(2026, 10, 1))["invoices"]
                      if i["org_id"] == "acme")
    assert (adjustment["kind"], adjustment["refers_to"]) == ("adjustment", "INV-2026-000001")
    assert Decimal(adjustment["total"]) == Decimal(recomputed["total"]) - Decimal(final[0]["total"]) > 0
    [overage] = adjustment["lines"]
    assert overage["kind"] == "overage" and overage["quantity"] == str(recomputed["credits"]["overage"])
    from dagster import DagsterInstance

    assert {r.job_name for r in DagsterInstance.get().get_runs()} == {
        "daily_ingest", "start_month_close", "close_month_shard", "close_month_documents", "finalize_invoices"}
