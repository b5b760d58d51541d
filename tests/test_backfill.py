"""A backfill of 31 daily partitions, 4 runs at once through the PostgreSQL-backed Dagster
instance (billing_pipelines.cli.backfill: 4 worker processes, each taking the next partition), gives
exactly the outputs of a sequential run: every summary and every output file, byte for byte."""

from __future__ import annotations

import argparse
import json
import logging
from datetime import date, timedelta

import dagster as dg
import pytest

from billing_pipelines.cli.backfill import register, run_backfill
from billing_pipelines.generate import GeneratorSpec, generate
from billing_pipelines.ingest.pipeline import BILLED, PRICED, ingest, summary_of
from billing_pipelines.resources import BillingSettings
from tests.common import CONFORMANCE
from tests.production_support import dagster_home, pg_database  # noqa: F401  (fixtures)

pytestmark = pytest.mark.postgres

SPEC = GeneratorSpec(seed=11, orgs=6, start=date(2026, 10, 1), days=31, events_per_day=600,
                     files_per_day=3, duplicate_rate=0.03, late_rate=0.05)
DAYS = [SPEC.start + timedelta(n) for n in range(SPEC.days)]
WORKERS = 4
OUTPUTS = [(PRICED, "priced_events"), (PRICED, "quarantine"), (BILLED, "cross_day_duplicates")]


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("backfill")
    stats = generate(SPEC, root / "config", str(root / "landing"))
    assert stats["duplicates"] > 0 and stats["landing_dates"] == 31
    return root


def _env(generated, home) -> dict:
    return {"BILLING_HOME": str(home), "BILLING_CONFIG": str(generated / "config"),
            "BILLING_LANDING": str(generated / "landing")}


def _outputs(settings: BillingSettings) -> dict[str, bytes]:
    wh = settings.warehouse()
    files = {}
    for day in DAYS:
        part = f"dt={day.isoformat()}"
        for dataset, name in OUTPUTS:
            stored = wh.manifest(dataset, part)["files"][name]
            files[f"{dataset}/{part}/{name}"] = wh.store.read_bytes(f"{dataset}/{part}/{stored}")
    return files


def test_31_partitions_4_at_once_equal_a_sequential_run(tmp_path, generated, dagster_home, pg_database):
    sequential = BillingSettings.from_env(_env(generated, tmp_path / "sequential"))
    expected = {s.landing_date: s.to_json() for s in ingest(sequential, DAYS)}
    assert sum(s["duplicates"] for s in expected.values()) > 0

    parallel = BillingSettings.from_env(_env(generated, tmp_path / "parallel"))
    keys = [d.isoformat() for d in DAYS]
    runs = run_backfill("daily_ingest", keys, parallel, workers=WORKERS, backfill_id="october")
    assert [r.partition_key for r in runs if r.success] == keys

    assert {d.isoformat(): summary_of(parallel, d).to_json() for d in DAYS} == expected
    assert _outputs(parallel) == _outputs(sequential)

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        records = instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": "october"}))
        recorded = [r.dagster_run for r in records]
        assert len(recorded) == 31 and {r.status for r in recorded} == {dg.DagsterRunStatus.SUCCESS}
        assert 2 <= _most_at_once(records) <= WORKERS
        problems = [e.message for r in recorded for e in instance.all_logs(r.run_id)
                    if e.level >= logging.WARNING or "lock" in (e.message or "").lower()]
        assert problems == []


def _most_at_once(records) -> int:
    """The largest number of runs that were in progress at the same moment."""
    moments = sorted([(r.start_time, 1) for r in records] + [(r.end_time, -1) for r in records])
    running = most = 0
    for _, step in moments:
        running += step
        most = max(most, running)
    return most


def test_backfill_command_runs_every_date_and_reports(tmp_path, dagster_home, capsys):
    conformance = CONFORMANCE
    settings = BillingSettings.from_env({"BILLING_HOME": str(tmp_path / "home"),
                                         "BILLING_CONFIG": str(conformance / "config"),
                                         "BILLING_LANDING": str(conformance / "landing")})
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["backfill", "2026-10-01..2026-10-03", "--workers", "2"])
    args.handler(args, settings)
    assert capsys.readouterr().out.startswith("3 of 3 partitions of daily_ingest succeeded (2 at once")
    expected = json.loads((conformance / "expected.json").read_text())["ingest"]
    for day in ("2026-10-01", "2026-10-02", "2026-10-03"):
        assert summary_of(settings, date.fromisoformat(day)).to_json() == expected[day]
