"""What every `billing` command shares: its arguments parsed with clear errors, the config
checked, and its work launched as runs of the Dagster definitions in the instance the UI shows
(DAGSTER_HOME, default $BILLING_HOME/dagster)."""

from __future__ import annotations

import os
import re
import sys
from datetime import date
from pathlib import Path

from billing_pipelines.resources import BillingSettings


def parse_dates(specs: list[str]) -> list[date]:
    """`2026-11-03` and `2026-11-01..2026-11-30` into a sorted list of distinct dates."""
    from billing_pipelines.periods import parse_date_ranges

    try:
        return parse_date_ranges(specs)
    except ValueError as exc:
        raise SystemExit(f"billing: {exc}") from exc


def parse_month_arg(text: str) -> date:
    from billing_pipelines.periods import parse_month

    try:
        return parse_month(text)
    except ValueError as exc:
        raise SystemExit(f"billing: {exc}") from exc


def dagster_instance(settings: BillingSettings):
    """The Dagster instance of DAGSTER_HOME, defaulting to $BILLING_HOME/dagster (its dagster.yaml
    written where there is none: see instance.py), with the runs whose process died marked failed."""
    from dagster import DagsterInstance

    from billing_pipelines.instance import fail_dead_runs, write_embedded_instance

    write_embedded_instance(Path(os.environ.setdefault("DAGSTER_HOME", str(Path(settings.home) / "dagster"))))
    instance = DagsterInstance.get()
    for run_id in fail_dead_runs(instance):
        print(f"billing: run {run_id} was left STARTED by a process that is gone: marked failed "
              "(re-running its partition is safe)", file=sys.stderr)
    return instance


def check_config(settings: BillingSettings) -> None:
    """Validate the config files before any run: a bad one exits with its one message, nothing run."""
    from billing_pipelines.config import ConfigError
    from billing_pipelines.invoicing.seller import load_seller

    try:
        settings.billing_config()
        load_seller(settings.config_dir)
    except ConfigError as exc:
        raise SystemExit(f"billing: bad config in {settings.config_dir}: {exc}") from None


def require_partitions(partitions_def, keys: list[str]) -> None:
    """Refuse keys that are not partitions, saying which are and how to go further back."""
    import dagster as dg

    outside = [key for key in keys if not partitions_def.has_partition_key(key)]
    if not outside:
        return
    monthly = isinstance(partitions_def, dg.MonthlyPartitionsDefinition)
    shown = (lambda key: key[:7]) if monthly else str
    what, last = ("billing month", "this month") if monthly else ("landing date", "today, UTC")
    raise SystemExit(
        f"billing: {', '.join(map(shown, outside[:5]))} not a {what} partition: valid are "
        f"{shown(partitions_def.get_first_partition_key())} to {shown(partitions_def.get_last_partition_key())} "
        f"(up to {last}; for earlier ones set BILLING_FIRST_DAY=YYYY-MM-DD, by default the first landed "
        "date, or the first day of the earliest customer's start month)")


def run_job(job_name: str, partition_key: str | None, settings: BillingSettings,
            run_config: dict | None = None) -> None:
    """Launch one partition of a job (None: an unpartitioned job) in this process, recorded in the
    Dagster instance."""
    from billing_pipelines.definitions import defs
    from billing_pipelines.instance import host_tags

    job = defs.resolve_job_def(job_name)
    if job.partitions_def is not None:
        require_partitions(job.partitions_def, [partition_key])
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    result = job.execute_in_process(
        partition_key=partition_key,
        instance=dagster_instance(settings),
        run_config={**quiet, **(run_config or {})},
        resources={"billing": settings},
        raise_on_error=False,
        tags=host_tags(),
    )
    if not result.success:
        errors = [e.event_specific_data.error for e in result.all_events if e.is_step_failure]
        causes = [what_failed(err) for err in errors if err] or [f"see Dagster run {result.run_id}"]
        raise SystemExit(f"billing: {' '.join(filter(None, [job_name, partition_key]))} failed: " + "; ".join(causes))


def what_failed(error) -> str:
    """The first line of a step failure's cause that says something (never a caret line), with
    the exception's class name but not its module: `ConfigError: customers.yaml: ...`."""
    cause = error.cause or error
    line = next((line.strip() for line in cause.message.splitlines() if re.search(r"\w", line)), cause.cls_name)
    return re.sub(r"^[\w.]+\.(?=\w+: )", "", line)


def listing_command(subparsers, name: str, what: str, handler) -> None:
    """A `billing NAME YYYY-MM [--format text|json]` command that only reads stored results."""
    cmd = subparsers.add_parser(name, help=what)
    cmd.add_argument("month", help="YYYY-MM")
    cmd.add_argument("--format", choices=["text", "json"], default="text")
    cmd.set_defaults(handler=handler, needs_config=False)
