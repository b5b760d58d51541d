"""The embedded Dagster instance (`make demo`, the CLI): SQLite storage in DAGSTER_HOME, with the
queue rules and run monitoring of deploy/dagster.yaml, at this machine's core count."""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from billing_pipelines.paths import resource_dir

MARKER = "# Embedded instance written by billing (rewritten while this line is first)."


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
