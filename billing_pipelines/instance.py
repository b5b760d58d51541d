"""The embedded Dagster instance (`make demo`, the CLI): SQLite storage in DAGSTER_HOME, with the
queue rules and run monitoring of deploy/dagster.yaml, at this machine's core count; and the run
launcher that lets run monitoring see a run whose process died on this machine."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import yaml
from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter
from dagster._core.launcher import DefaultRunLauncher, LaunchRunContext
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus

from billing_pipelines.paths import resource_dir

MARKER = "# Embedded instance written by billing (rewritten while this line is first)."
HOST_TAG = "billing/host"  # the machine whose process runs the run: only there is its pid meaningful


def embedded_instance_yaml(cores: int | None = None) -> str:
    """deploy/dagster.yaml's run queue (at most `cores` runs at once, default the CPUs this
    process may use), run monitoring and retries, over the default SQLite storage."""
    deploy = yaml.safe_load((resource_dir("deploy") / "dagster.yaml").read_text())
    coordinator = deploy["run_coordinator"]
    coordinator["config"]["max_concurrent_runs"] = cores or len(os.sched_getaffinity(0))
    embedded = {"run_coordinator": coordinator, "run_launcher": deploy["run_launcher"],
                "run_monitoring": deploy["run_monitoring"], "run_retries": deploy["run_retries"],
                "telemetry": {"enabled": False}}
    return f"{MARKER}\n" + yaml.safe_dump(embedded, sort_keys=False)


def write_embedded_instance(home: Path) -> None:
    """Write DAGSTER_HOME/dagster.yaml where there is none, or where it is one written here."""
    home.mkdir(parents=True, exist_ok=True)
    config = home / "dagster.yaml"
    if not config.exists() or config.read_text().startswith(MARKER):
        config.write_text(embedded_instance_yaml())


class LocalRunLauncher(DefaultRunLauncher):
    """Dagster's DefaultRunLauncher (each run in a process on this machine) with a health check,
    so run monitoring marks a run failed once the process that started it is gone (SIGKILL, OOM)
    instead of leaving it STARTED. Each run it launches is tagged with this machine (HOST_TAG)."""

    def launch_run(self, context: LaunchRunContext) -> None:
        self._instance.add_run_tags(context.dagster_run.run_id, host_tags())
        super().launch_run(context)

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        return run_worker_health(self._instance, run)


def host_tags() -> dict[str, str]:
    """The tag that says a run's process runs on this machine."""
    return {HOST_TAG: socket.gethostname()}


def run_worker_health(instance: DagsterInstance, run: DagsterRun) -> CheckRunHealthResult:
    """RUNNING while the process that logged the run's start lives on this machine, else FAILED;
    UNKNOWN for a run of another machine (an instance shared over PostgreSQL)."""
    if run.tags.get(HOST_TAG) != socket.gethostname():
        return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run's process is not on this machine")
    [*start] = instance.get_records_for_run(run.run_id, of_type=DagsterEventType.RUN_START, limit=1).records
    pid = start[0].event_log_entry.dagster_event.pid if start else None
    if pid is None:
        return CheckRunHealthResult(WorkerStatus.UNKNOWN, "the run has not logged its start yet")
    if _alive(pid):
        return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
    return CheckRunHealthResult(WorkerStatus.FAILED, f"its process {pid} is gone (killed, or out of memory); "
                                "re-running its partition is safe", run_worker_id=str(pid))


def _alive(pid: int) -> bool:
    """Whether process `pid` exists and is not a zombie (killed, not reaped yet)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False
    except OSError:  # no /proc: ask the kernel
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True


def fail_dead_runs(instance: DagsterInstance) -> list[str]:
    """Mark failed every STARTED run whose process is gone, as the daemon's run monitoring would:
    the CLI runs in-process without a daemon, so it checks before each command. The run ids."""
    if not isinstance(instance.run_launcher, LocalRunLauncher):
        return []
    failed = []
    for run in instance.get_runs(RunsFilter(statuses=[DagsterRunStatus.STARTED])):
        health = run_worker_health(instance, run)
        if health.status == WorkerStatus.FAILED:
            instance.report_run_failed(run, f"Run worker gone: {health.msg}")
            failed.append(run.run_id)
    return failed
