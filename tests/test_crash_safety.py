"""A run killed with SIGKILL in the middle of a partition leaves nothing that anything reads:
`billing ingest` runs in a subprocess that pauses at a chosen rename (an injected pause in the
child only) and is killed there; then the warehouse still shows only complete commits, and a
re-run sweeps the leftovers and gives the bytes of a run that was never killed."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterEventType, DagsterInstance, DagsterRunStatus
from dagster._daemon.monitoring.run_monitoring import monitor_started_run

from billing_pipelines.cli import main
from billing_pipelines.generate import GeneratorSpec, generate
from billing_pipelines.ingest.pipeline import BILLED, PRICED, LandingZone, ingest, summary_of
from billing_pipelines.instance import HOST_TAG, LocalRunLauncher, fail_dead_runs
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import duck
from billing_pipelines.storage.objects import is_temporary
from billing_pipelines.storage.warehouse import MANIFEST, STALE_TEMPORARY_SECONDS
from tests.common import event

ROOT = Path(__file__).resolve().parents[1]
SPEC = GeneratorSpec(seed=5, orgs=6, start=date(2026, 10, 1), days=2, events_per_day=20_000)
DAY = SPEC.start
PART = f"dt={DAY.isoformat()}"

# Runs `billing ingest DAY` and stops for good just before renaming a warehouse file whose name
# contains argv[1] into place, after printing "paused".
CHILD = """
import os, sys, time
real_replace = os.replace
def replace(src, dst, *args, **kwargs):
    if "/warehouse/" in str(dst) and sys.argv[1] in os.path.basename(str(dst)):
        print("paused", flush=True)
        time.sleep(600)
    return real_replace(src, dst, *args, **kwargs)
os.replace = replace
from billing_pipelines.cli import main
main(["ingest", sys.argv[2]])
"""


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    generate(SPEC, root / "config", str(root / "landing"))
    return root


def _env(generated: Path, home: Path) -> dict:
    return {"BILLING_HOME": str(home), "BILLING_CONFIG": str(generated / "config"),
            "BILLING_LANDING": str(generated / "landing"), "DAGSTER_HOME": str(home / "dagster")}


def _kill_at(env: dict, pause_at: str) -> None:
    """Run `billing ingest DAY` in a subprocess and SIGKILL it when it pauses before `pause_at`."""
    child = subprocess.Popen([sys.executable, "-c", CHILD, pause_at, DAY.isoformat()], cwd=ROOT,
                             env={**os.environ, **env}, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "paused", "the child finished without reaching the pause"
    finally:
        child.send_signal(signal.SIGKILL)
        assert child.wait(timeout=30) == -signal.SIGKILL


def _files(settings: BillingSettings) -> list[Path]:
    return sorted(p for p in Path(settings.warehouse_root).rglob("*") if p.is_file())


def _committed_bytes(settings: BillingSettings) -> dict[str, bytes]:
    wh = settings.warehouse()
    return {f"{dataset}/{part}/{name}": wh.store.read_bytes(f"{dataset}/{part}/{file}")
            for dataset in (PRICED, BILLED) for part in wh.partitions(dataset)
            for name, file in wh.manifest(dataset, part)["files"].items()}


def _age(paths: list[Path]) -> None:
    """Make leftover temporary files older than the sweep's threshold."""
    past = time.time() - STALE_TEMPORARY_SECONDS - 60
    for path in paths:
        os.utime(path, (past, past))


@pytest.fixture
def clean_run(tmp_path, generated) -> BillingSettings:
    settings = BillingSettings.from_env(_env(generated, tmp_path / "clean"))
    ingest(settings, [DAY])
    return settings


@pytest.mark.parametrize("pause_at", ["priced_events-", "quarantine-", MANIFEST])
def test_a_run_killed_mid_partition_leaves_nothing_readable_and_reruns_identically(
        tmp_path, generated, clean_run, pause_at):
    settings = BillingSettings.from_env(_env(generated, tmp_path / "killed"))
    _kill_at(_env(generated, tmp_path / "killed"), pause_at)

    leftovers = _files(settings)
    assert any(is_temporary(p.name) for p in leftovers)  # the file being renamed when killed
    assert not any(p.name == MANIFEST for p in leftovers)  # nothing committed
    assert settings.warehouse().partitions(PRICED) == [] and summary_of(settings, DAY) is None
    assert not LandingZone(settings).is_staged(DAY)

    _age([p for p in leftovers if is_temporary(p.name)])
    assert [s.to_json() for s in ingest(settings, [DAY])] == [summary_of(clean_run, DAY).to_json()]
    assert _committed_bytes(settings) == _committed_bytes(clean_run)
    assert [p.relative_to(settings.warehouse_root) for p in _files(settings)] == \
        [p.relative_to(clean_run.warehouse_root) for p in _files(clean_run)]  # leftovers swept


def test_a_killed_reingest_keeps_the_previous_commit_readable(tmp_path, generated):
    env = _env(generated, tmp_path / "home") | {"BILLING_LANDING": str(tmp_path / "landing")}
    shutil.copytree(generated / "landing", tmp_path / "landing")
    settings = BillingSettings.from_env(env)
    before = ingest(settings, [DAY])[0].to_json()
    committed = _committed_bytes(settings)
    late = Path(settings.landing) / PART / "late.jsonl"
    late.write_text(json.dumps(event("late-1", org=_an_org(generated), ts=f"{DAY}T08:00:00Z")) + "\n")
    _kill_at(env, MANIFEST)  # before the new priced_events commit
    assert _committed_bytes(settings) == committed  # the old manifest and all its files
    assert summary_of(settings, DAY).to_json() == before
    con = duck.connect()
    wh = settings.warehouse()
    valid = con.execute(f"SELECT count(*) FROM {wh.relation(con, wh.file_paths(PRICED, 'priced_events', [PART]))}")
    assert valid.fetchone()[0] == wh.manifest(PRICED, PART)["meta"]["valid"]

    after = ingest(settings, [DAY])[0].to_json()
    assert after["rows_read"] == before["rows_read"] + 1 and after["billed"] == before["billed"] + 1


def _an_org(generated: Path) -> str:
    from billing_pipelines.config import load_config

    return sorted(load_config(generated / "config").customers)[0]


def _started_run(dagster_home: str):
    """The embedded instance the killed `billing ingest` wrote, and its one run, left STARTED."""
    instance = DagsterInstance.from_config(dagster_home)
    [run] = instance.get_runs()
    assert run.status == DagsterRunStatus.STARTED and isinstance(instance.run_launcher, LocalRunLauncher)
    return instance, run


def test_run_monitoring_marks_a_killed_run_failed_in_the_embedded_instance(tmp_path, generated):
    env = _env(generated, tmp_path / "home")
    _kill_at(env, MANIFEST)
    instance, run = _started_run(env["DAGSTER_HOME"])
    # what the daemon's run monitoring (`dagster dev`, `dagster-daemon run`) does with each STARTED run
    monitor_started_run(instance, None, instance.get_run_record_by_id(run.run_id), logging.getLogger("monitor"))
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.FAILURE
    [failure] = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_FAILURE).records
    assert "is gone (killed, or out of memory)" in failure.event_log_entry.message


def test_a_run_of_another_machine_is_left_to_that_machine(tmp_path, generated):
    """An instance shared over PostgreSQL: a pid is only meaningful on the machine that ran it."""
    env = _env(generated, tmp_path / "home")
    _kill_at(env, MANIFEST)
    instance, run = _started_run(env["DAGSTER_HOME"])
    instance.add_run_tags(run.run_id, {HOST_TAG: "another-machine"})
    assert fail_dead_runs(instance) == []
    assert instance.get_run_by_id(run.run_id).status == DagsterRunStatus.STARTED
    instance.add_run_tags(run.run_id, {HOST_TAG: socket.gethostname()})
    assert fail_dead_runs(instance) == [run.run_id]


def test_the_next_command_marks_a_killed_run_failed_without_a_daemon(tmp_path, generated, monkeypatch, capsys):
    env = _env(generated, tmp_path / "home")
    _kill_at(env, "priced_events-")
    instance, killed = _started_run(env["DAGSTER_HOME"])
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    main(["ingest", DAY.isoformat()])
    assert f"run {killed.run_id} was left STARTED by a process that is gone: marked failed" in capsys.readouterr().err
    statuses = {r.run_id: r.status for r in instance.get_runs()}
    assert statuses.pop(killed.run_id) == DagsterRunStatus.FAILURE
    assert list(statuses.values()) == [DagsterRunStatus.SUCCESS]  # the re-run
