"""Invoice numbers under concurrent finalization, stored PDF names of any org id, and the
Dagster asset, job and command that finance uses (SQLite and PostgreSQL)."""

from __future__ import annotations

import argparse
import multiprocessing
import re
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import dagster as dg
import pytest
from sqlmodel import Session, select

from billing_pipelines.cli.invoices import register
from billing_pipelines.invoicing.finalize import file_draft_pdfs, finalize_month
from billing_pipelines.month_close import assets
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import billing_db
from tests.db_support import DATABASE_KINDS, fresh_database
from tests.finalize_support import finalize_months, pdf_text, seed_month, write_config

ORGS = [f"org-{i:02d}" for i in range(4)]
MONTHS = [f"2026-{m:02d}" for m in range(1, 7)]
NUMBER = re.compile(r"INV-(\d{4})-(\d{6})")


def issue_date(month: str) -> str:
    """Odd months are finalized in December 2026, even ones in January 2027."""
    return "2026-12-01" if int(month[-2:]) % 2 else "2027-01-10"


@pytest.fixture(params=DATABASE_KINDS)
def env(request, tmp_path) -> dict:
    with fresh_database(request.param, tmp_path) as url:
        yield {"BILLING_HOME": str(tmp_path / "home"), "BILLING_CONFIG": str(tmp_path / "config"),
               "BILLING_LANDING": str(tmp_path / "landing"), "BILLING_DATABASE_URL": url}


def seeded(env: dict, org_ids: list[str], months: list[str]) -> BillingSettings:
    write_config(Path(env["BILLING_CONFIG"]), org_ids)
    settings = BillingSettings.from_env(env)
    for month in months:
        seed_month(settings, month, org_ids)
    return settings


def final_rows(settings: BillingSettings) -> list[billing_db.InvoiceRow]:
    engine = billing_db.engine_from_url(settings.database_url)
    with Session(engine) as session:
        rows = list(session.exec(select(billing_db.InvoiceRow)))
    engine.dispose()
    return rows


def test_concurrent_finalizations_number_without_gaps(env):
    settings = seeded(env, ORGS, MONTHS)
    # Three processes, every month finalized by two of them at once.
    plans = [MONTHS[0:4], [MONTHS[3], MONTHS[2], MONTHS[4], MONTHS[5]], [MONTHS[5], MONTHS[4], MONTHS[1], MONTHS[0]]]
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(len(plans))
    workers = [context.Process(target=finalize_months, args=(env, [(m, issue_date(m)) for m in plan], barrier))
               for plan in plans]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert [w.exitcode for w in workers] == [0] * len(workers)

    rows = final_rows(settings)
    assert len(rows) == len(ORGS) * len(MONTHS) and {r.status for r in rows} == {"final"}
    by_year = Counter()
    for row in rows:
        year, sequence = NUMBER.fullmatch(row.number).groups()
        assert year == issue_date(row.month)[:4] and row.issue_date.isoformat() == issue_date(row.month)
        by_year[year] += 1
    for year, count in by_year.items():
        assert sorted(int(r.number[-6:]) for r in rows if r.number[4:8] == year) == list(range(1, count + 1))
    assert by_year == {"2026": 12, "2027": 12}
    store = settings.warehouse().store
    assert all(store.exists(row.pdf_key) and row.pdf_sha256 for row in rows)


def test_numbering_transactions_serialize_and_rollbacks_leave_no_gap(env):
    """Twelve transactions on different months (different PostgreSQL month locks) take three
    numbers each, slowly; every third rolls back. The year's counter row serializes them."""
    engine = billing_db.engine_from_url(env["BILLING_DATABASE_URL"])

    def take_numbers(i: int) -> list[str]:
        numbers = []
        try:
            with billing_db.invoicing_transaction(engine, f"2025-{i + 1:02d}") as session:
                for _ in range(3):
                    numbers += billing_db.next_document_numbers(session, 2026, 1)
                    time.sleep(0.01)
                if i % 3 == 0:
                    raise RuntimeError("rolled back")
        except RuntimeError:
            return []
        return numbers

    with ThreadPoolExecutor(6) as pool:
        taken = list(pool.map(take_numbers, range(12)))
    engine.dispose()
    sequences = [[int(n[-6:]) for n in numbers] for numbers in taken if numbers]
    assert len(sequences) == 8 and all(s == list(range(s[0], s[0] + 3)) for s in sequences)
    assert sorted(n for s in sequences for n in s) == list(range(1, 25))


@pytest.mark.parametrize("env", ["sqlite"], indirect=True)
def test_org_ids_with_path_characters_cannot_leave_the_invoice_folder(env):
    org_ids = ["../../escape", "a/b", "..", "c\\d", "/etc/passwd", "Acme", "acme", "日本"]
    settings = seeded(env, org_ids, ["2026-01"])
    drafts = file_draft_pdfs(settings, date(2026, 1, 1), {})
    filed = finalize_month(settings, date(2026, 1, 1), {}, date(2026, 2, 1))

    root = Path(settings.warehouse_root).resolve() / "invoices" / "2026-01"
    keys = drafts + [f["pdf_key"] for f in filed]
    folders = {Path(settings.warehouse_root, key).resolve().parent for key in keys}
    assert all(folder.parent == root for folder in folders) and len(folders) == len(org_ids)
    stored = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.pdf"))
    assert stored == sorted(key.removeprefix("invoices/2026-01/") for key in (f["pdf_key"] for f in filed))
    assert not list(Path(settings.warehouse_root).resolve().parent.parent.glob("escape*"))
    for f in filed:
        assert f["number"] in pdf_text(settings.warehouse().store.read_bytes(f["pdf_key"]))


def definitions(settings: BillingSettings) -> dg.Definitions:
    return dg.Definitions(assets=[assets.invoice_pdfs, assets.finalized_invoices],
                          jobs=[assets.finalize_invoices], resources={"billing": settings})


def test_draft_pdfs_asset_and_finalize_job_through_dagster(env, tmp_path):
    settings = seeded(env, ORGS[:2], ["2026-03"])
    defs = definitions(settings)
    instance = dg.DagsterInstance.ephemeral()
    drafts = dg.materialize([assets.invoice_pdfs], partition_key="2026-03", resources={"billing": settings},
                            instance=instance)
    assert drafts.success
    store = settings.warehouse().store
    assert [f.key for f in store.list("invoices/2026-03")] == [
        "invoices/2026-03/org-00/invoice-draft.pdf", "invoices/2026-03/org-01/invoice-draft.pdf"]

    config = {"ops": {"finalize_month_invoices": {"config": {"month": "2026-03", "issue_date": "2026-04-02"}}}}
    result = defs.resolve_job_def("finalize_invoices").execute_in_process(run_config=config, instance=instance)
    assert result.success
    [materialization] = result.asset_materializations_for_node("finalize_month_invoices")
    assert materialization.partition == "2026-03"
    metadata = materialization.metadata
    assert metadata["documents"].value == 2
    assert metadata["numbers"].value == "INV-2026-000001 .. INV-2026-000002"
    table = [(r.data["org_id"], r.data["number"], r.data["status"]) for r in metadata["by_customer"].records]
    assert table == [("org-00", "INV-2026-000001", "final"), ("org-01", "INV-2026-000002", "final")]
    assert [f.key for f in store.list("invoices/2026-03")] == [
        "invoices/2026-03/org-00/INV-2026-000001.pdf", "invoices/2026-03/org-01/INV-2026-000002.pdf"]


def test_billing_finalize_runs_the_job(env, tmp_path, monkeypatch, capsys):
    settings = seeded(env, ORGS[:2], ["2026-03"])
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster"))
    monkeypatch.setattr("billing_pipelines.definitions.defs", definitions(settings))
    parser = argparse.ArgumentParser(prog="billing")
    register(parser.add_subparsers())
    args = parser.parse_args(["finalize", "2026-03", "--issue-date", "2026-04-02"])
    args.handler(args, settings)
    out = capsys.readouterr().out
    assert "2026-03: 2 final documents" in out and "INV-2026-000002" in out
    with pytest.raises(SystemExit):
        parser.parse_args(["finalize", "2026-03", "--issue-date", "April"])
    args = parser.parse_args(["finalize", "2026-04", "--issue-date", "2026-04-02"])
    with pytest.raises(SystemExit, match="cannot be finalized before it has ended"):
        args.handler(args, settings)


def test_the_finalize_job_refuses_a_month_whose_blocking_check_failed(env):
    settings = seeded(env, ORGS[:2], ["2026-03"])
    instance = dg.DagsterInstance.ephemeral()
    instance.report_runless_asset_event(dg.AssetCheckEvaluation(
        asset_key=dg.AssetKey("draft_invoices"), check_name="totals_add_up", passed=False, partition="2026-03"))
    config = {"ops": {"finalize_month_invoices": {"config": {"month": "2026-03", "issue_date": "2026-04-02"}}}}
    job = definitions(settings).resolve_job_def("finalize_invoices")
    refused = job.execute_in_process(run_config=config, instance=instance, raise_on_error=False)
    assert not refused.success
    [failure] = [e for e in refused.all_events if e.is_step_failure]
    assert "blocking check draft_invoices.totals_add_up failed on 2026-03" in str(failure.event_specific_data.error)
    assert {i["status"] for i in billing_db.list_invoices(settings.engine(), "2026-03")} == {"draft"}
