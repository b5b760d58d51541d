"""The Dagster UI as finance and data teams use it: a real `dagster-webserver` and `dagster-daemon`
on the embedded instance `billing` writes (a temporary DAGSTER_HOME), driven through the
webserver's GraphQL API. The conformance landing zone (less 2026-11-20, a missing data drop) with
October ingested and closed by the CLI first; the billing database on PostgreSQL, its URL with a
password. One server for the module: it starts once. The balance sensor and the month-close
automation are stopped (from the UI) before the daemon starts: the tests launch what they need."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.common import CONFORMANCE, config_with_seller
from tests.db_support import fresh_database

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PASSWORD = "s3cret-Pa55"
LOCATION = {"repositoryLocationName": "billing_pipelines", "repositoryName": "__repository__"}
MISSING_DROP = "2026-11-20"


class UI:
    def __init__(self, url: str, env: dict, config: Path):
        self.url, self.env, self.config = url, env, config

    def query(self, text: str, **variables) -> dict:
        body = json.dumps({"query": text, "variables": variables}).encode()
        request = urllib.request.Request(f"{self.url}/graphql", body, {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=120) as response:
            answer = json.loads(response.read())
        assert "errors" not in answer, answer["errors"]
        return answer["data"]

    def launch(self, job: str, run_config: dict | None = None, partition: str | None = None) -> str:
        tags = [{"key": "dagster/partition", "value": partition}] if partition else []
        launched = self.query(LAUNCH, params={
            "selector": {**LOCATION, "jobName": job}, "runConfigData": run_config or {},
            "executionMetadata": {"tags": tags}})["launchRun"]
        assert launched["__typename"] == "LaunchRunSuccess", launched
        return launched["run"]["runId"]

    def stop_sensor(self, name: str) -> None:
        sensor = self.query(SENSOR, selector={**LOCATION, "sensorName": name})["sensorOrError"]
        stopped = self.query(STOP_SENSOR, id=sensor["id"])["stopSensor"]
        assert stopped["instigationState"]["status"] == "STOPPED", stopped

    def wait_for_run(self, run_id: str, timeout: float = 600) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.query(RUN, runId=run_id)["runOrError"]
            if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
                return run
            time.sleep(2)
        raise TimeoutError(f"run {run_id} not finished after {timeout} s")


LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message }
  ... on RunConfigValidationInvalid { errors { message } } } }"""
SENSOR = """query($selector: SensorSelector!) { sensorOrError(sensorSelector: $selector) { ... on Sensor { id } } }"""
STOP_SENSOR = """mutation($id: String) { stopSensor(id: $id) {
  ... on StopSensorMutationResult { instigationState { status } } ... on PythonError { message } } }"""
RUN = """query($runId: ID!) { runOrError(runId: $runId) { ... on Run { status
  eventConnection { events { __typename ... on MessageEvent { message }
    ... on ExecutionStepFailureEvent { error { message } } } } } } }"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def billing(env: dict, *args: str) -> None:
    subprocess.run([BIN / "billing", *args], env=env, cwd=ROOT, check=True, capture_output=True, timeout=900)


def start(env: dict, *command) -> subprocess.Popen:
    return subprocess.Popen([BIN / command[0], *command[1:]], env=env, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until_loaded(ui: UI, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            entries = ui.query("{ workspaceOrError { ... on Workspace { locationEntries { loadStatus } } } }")
            if [e["loadStatus"] for e in entries["workspaceOrError"]["locationEntries"]] == ["LOADED"]:
                return
        except OSError:
            pass
        time.sleep(1)
    raise TimeoutError("the webserver did not load billing_pipelines")


@pytest.fixture(scope="module")
def ui(tmp_path_factory) -> UI:
    work = tmp_path_factory.mktemp("dagster-ui")
    config_with_seller(CONFORMANCE / "config", work / "config")  # final invoices need their seller
    shutil.copytree(CONFORMANCE / "landing", work / "landing")
    shutil.rmtree(work / "landing" / f"dt={MISSING_DROP}")
    with ExitStack() as stack:
        url = stack.enter_context(fresh_database("postgresql"))
        env = {**os.environ, "BILLING_HOME": str(work / "home"), "BILLING_CONFIG": str(work / "config"),
               "BILLING_LANDING": str(work / "landing"), "BILLING_GRACE_DAYS": "3",
               "BILLING_DATABASE_URL": url.replace("postgres@", f"postgres:{PASSWORD}@"),
               "DAGSTER_HOME": str(work / "dagster")}
        env.pop("BILLING_FIRST_DAY", None)
        billing(env, "ingest", "2026-10-01..2026-11-03")  # writes the embedded dagster.yaml too
        billing(env, "close-month", "2026-10")
        port = free_port()
        webserver = start(env, "dagster-webserver", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port))
        stack.callback(_stop, webserver)
        ui = UI(f"http://127.0.0.1:{port}", env, work / "config")
        wait_until_loaded(ui)
        for sensor in ("landed_files_sensor", "month_close_automation"):  # runs the tests do not wait for
            ui.stop_sensor(sensor)
        stack.callback(_stop, start(env, "dagster-daemon", "run", "-w", "workspace.yaml"))
        yield ui


def _stop(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)


RESOURCE = """query($selector: ResourceSelector!) { topLevelResourceDetailsOrError(resourceSelector: $selector) {
  __typename ... on ResourceDetails { name configuredValues { key value type } } } }"""


def test_the_resource_pages_show_no_password(ui):
    pages = [ui.query(RESOURCE, selector={**LOCATION, "resourceName": name})["topLevelResourceDetailsOrError"]
             for name in ("billing", "billing_database", "billing_warehouse", "billing_config")]
    assert [p["__typename"] for p in pages] == ["ResourceDetails"] * 4
    assert PASSWORD not in json.dumps(pages)
    database = {v["key"]: v for v in pages[1]["configuredValues"]}
    assert database["url"]["type"] == "ENV_VAR" and database["url"]["value"] == "BILLING_DATABASE_URL"


SCHEDULE = """query($selector: ScheduleSelector!) { scheduleOrError(scheduleSelector: $selector) {
  ... on Schedule { futureTicks(limit: 2) { results { timestamp
    evaluationResult { error { message } runRequests { tags { key value } } } } } } } }"""


def test_the_daily_schedule_ingests_yesterday(ui):
    schedule = ui.query(SCHEDULE, selector={**LOCATION, "scheduleName": "daily_ingest_schedule"})["scheduleOrError"]
    ticks = schedule["futureTicks"]["results"]
    assert len(ticks) == 2
    for tick in ticks:
        at = datetime.fromtimestamp(tick["timestamp"], UTC)
        assert tick["evaluationResult"]["error"] is None
        partitions = [t["value"] for r in tick["evaluationResult"]["runRequests"] for t in r["tags"]
                      if t["key"] == "dagster/partition"]
        assert (at.hour, at.minute) == (0, 30)
        assert partitions[-1] == (at.date() - timedelta(days=1)).isoformat()


BACKFILL = """mutation($params: LaunchBackfillParams!) { launchPartitionBackfill(backfillParams: $params) {
  __typename ... on LaunchBackfillSuccess { backfillId } ... on PythonError { message } } }"""
BACKFILL_STATUS = """query($id: String!) { partitionBackfillOrError(backfillId: $id) {
  ... on PartitionBackfill { status partitionStatuses { results { partitionName runStatus } } } } }"""


def test_a_backfill_of_five_landing_dates_completes_with_the_daemon(ui):
    dates = [f"2026-11-{day}" for day in range(10, 15)]
    launched = ui.query(BACKFILL, params={
        "selector": {"partitionSetName": "daily_ingest_partition_set", "repositorySelector": LOCATION},
        "partitionNames": dates})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + 900
    while time.monotonic() < deadline:
        backfill = ui.query(BACKFILL_STATUS, id=launched["backfillId"])["partitionBackfillOrError"]
        if backfill["status"] not in ("REQUESTED", "IN_PROGRESS"):
            break
        time.sleep(3)
    assert backfill["status"] == "COMPLETED_SUCCESS"
    statuses = {r["partitionName"]: r["runStatus"] for r in backfill["partitionStatuses"]["results"]}
    assert statuses == dict.fromkeys(dates, "SUCCESS")


CHECK = """query($asset: AssetKeyInput!, $check: String!, $partition: String) {
  assetCheckExecutions(assetKey: $asset, checkName: $check, partition: $partition, limit: 1) {
    status partition evaluation { severity description } } }"""


def test_a_date_without_files_fails_its_check(ui):
    run = ui.wait_for_run(ui.launch("daily_ingest", partition=MISSING_DROP))
    assert run["status"] == "FAILURE"  # the blocking check stops the run before billed_usage
    [check] = ui.query(CHECK, asset={"path": ["priced_events"]}, check="files_landed",
                       partition=MISSING_DROP)["assetCheckExecutions"]
    assert (check["status"], check["partition"]) == ("FAILED", MISSING_DROP)
    assert "BILLING_KNOWN_GAPS" in check["evaluation"]["description"]
    [landed] = ui.query(CHECK, asset={"path": ["priced_events"]}, check="files_landed",
                        partition="2026-11-12")["assetCheckExecutions"]
    assert landed["status"] == "SUCCEEDED"


MATERIALIZATION = """query($asset: AssetKeyInput!, $partition: String!) { assetOrError(assetKey: $asset) {
  ... on Asset { assetMaterializations(partitions: [$partition], limit: 1) { partition
    metadataEntries { label ... on TableMetadataEntry { table { records } } } } } } }"""


def test_finalize_invoices_refuses_stale_drafts_then_finalizes(ui):
    config = {"ops": {"finalize_month_invoices": {"config": {"month": "2026-10", "issue_date": "2026-11-05"}}}}
    plans = ui.config / "plans.yaml"
    reviewed = plans.read_text()
    plans.write_text(reviewed.replace('monthly_fee: "49.00"', 'monthly_fee: "59.00"'))
    refused = ui.wait_for_run(ui.launch("finalize_invoices", config))
    assert refused["status"] == "FAILURE"
    assert "its drafts are stale" in json.dumps(refused)

    plans.write_text(reviewed)  # the config the drafts were made from, as reviewed
    assert ui.wait_for_run(ui.launch("finalize_invoices", config))["status"] == "SUCCESS"
    [final] = ui.query(MATERIALIZATION, asset={"path": ["finalized_invoices"]},
                       partition="2026-10")["assetOrError"]["assetMaterializations"]
    [table] = [e["table"]["records"] for e in final["metadataEntries"] if e["label"] == "by_customer"]
    rows = [json.loads(r) for r in table]
    expected = json.loads((CONFORMANCE / "expected.json").read_text())["invoices"]["2026-10"]
    assert sorted((r["org_id"], r["total"]) for r in rows) == sorted((i["org_id"], i["total"]) for i in expected)
    assert all(r["status"] == "final" and r["number"].startswith("INV-2026-") for r in rows)
    assert len({r["number"] for r in rows}) == len(rows)
