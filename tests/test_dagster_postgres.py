"""deploy/dagster.yaml on the real PostgreSQL: run, event and schedule storage through
dagster-postgres, the queued run coordinator with its limits, and the billing database on the
same server; a partition of daily_ingest and a month close run through that instance."""

from __future__ import annotations

import json
from datetime import date

import dagster as dg
import pytest
from dagster._core.run_coordinator import QueuedRunCoordinator
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage, PostgresScheduleStorage

from billing_pipelines.definitions import defs
from billing_pipelines.ingest.landing import landing_dates
from billing_pipelines.ingest.pipeline import ingest, summary_of
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import billing_db
from tests.production_support import dagster_home, pg_database  # noqa: F401  (fixtures)

pytestmark = pytest.mark.postgres

from tests.common import CONFORMANCE  # noqa: E402  (tests/data/conformance)

EXPECTED = json.loads((CONFORMANCE / "expected.json").read_text())
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def test_instance_from_deploy_yaml_uses_postgres_and_the_queue(dagster_home):
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        assert isinstance(instance.run_storage, PostgresRunStorage)
        assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
        assert isinstance(instance.schedule_storage, PostgresScheduleStorage)
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, QueuedRunCoordinator)
        assert coordinator.get_run_queue_config().max_concurrent_runs == 4
        assert coordinator.get_run_queue_config().tag_concurrency_limits == [
            {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1},
            {"key": "billing/lane", "value": "month_close", "limit": 1},
        ]


def test_daily_ingest_and_month_close_through_the_postgres_instance(tmp_path, dagster_home, pg_database):
    settings = BillingSettings.from_env({
        "BILLING_HOME": str(tmp_path / "home"), "BILLING_CONFIG": str(CONFORMANCE / "config"),
        "BILLING_LANDING": str(CONFORMANCE / "landing"), "BILLING_GRACE_DAYS": "3",
        "BILLING_DATABASE_URL": pg_database,
    })
    day = "2026-10-02"
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        result = defs.resolve_job_def("daily_ingest").execute_in_process(
            partition_key=day, instance=instance, resources={"billing": settings}, run_config=QUIET,
        )
        assert result.success
        assert summary_of(settings, date.fromisoformat(day)).to_json() == EXPECTED["ingest"][day]
        run = instance.get_run_by_id(result.run_id)
        assert run.status == dg.DagsterRunStatus.SUCCESS and run.tags["dagster/partition"] == day
        materialized = instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("billed_usage"), asset_partitions=[day]), limit=1
        ).records
        assert materialized[0].asset_materialization.metadata["billed"].value == EXPECTED["ingest"][day]["billed"]

        ingest(settings, sorted(landing_dates(settings.landing_store())))
        for month in ("2026-09", "2026-10"):  # globex started in September
            for job, key in (("start_month_close", month), ("close_month_shard", f"{month}|0"),
                             ("close_month_documents", month)):
                close = defs.resolve_job_def(job).execute_in_process(
                    partition_key=key, instance=instance, resources={"billing": settings}, run_config=QUIET)
                assert close.success, (job, key)
        assert len(instance.get_runs()) == 1 + 2 * 3

    invoices = billing_db.list_invoices(billing_db.engine_from_url(settings.database_url), "2026-10")
    assert {i["org_id"]: i["total"] for i in invoices} == {
        i["org_id"]: i["total"] for i in EXPECTED["invoices"]["2026-10"]
    }
