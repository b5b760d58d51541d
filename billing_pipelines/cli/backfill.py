"""Backfills without the daemon: many partitions of a job, up to N runs at once, each run in its
own worker process, all recorded in the Dagster instance of DAGSTER_HOME (PostgreSQL in
production, see deploy/dagster.yaml) under one `dagster/backfill` tag.

Any order and any overlap is safe: the warehouse commits whole partitions by manifest, and a
date whose earlier dates are not staged yet stages them itself (the bytes are the same whoever
writes them). With the daemon running, `dagster job backfill` does the same through the queue.
"""

from __future__ import annotations

import argparse
import multiprocessing
import time
import uuid
from dataclasses import dataclass

from billing_pipelines.cli.runs import dagster_instance, parse_dates, require_partitions
from billing_pipelines.resources import BillingSettings

_QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
_worker: dict = {}


@dataclass(frozen=True)
class PartitionRun:
    partition_key: str
    run_id: str
    success: bool
    seconds: float


def run_backfill(job_name: str, partition_keys: list[str], settings: BillingSettings, workers: int = 4,
                 backfill_id: str | None = None) -> list[PartitionRun]:
    """Run `job_name` for every key (taken in order by the next free worker); one result per key."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    tags = {"dagster/backfill": backfill_id or f"billing-{uuid.uuid4().hex[:8]}"}
    context = multiprocessing.get_context("spawn")  # no forked Dagster or DuckDB state
    with context.Pool(min(workers, len(partition_keys)) or 1, _start_worker,
                      (job_name, _settings_fields(settings), tags)) as pool:
        runs = pool.map(_run_partition, partition_keys, chunksize=1)
        # Let the workers exit on their own: a Dagster run leaves SIGTERM raising
        # KeyboardInterrupt, and the terminate() of leaving this block could then hang on a
        # worker killed while holding the task queue's lock.
        pool.close()
        pool.join()
    return runs


def _settings_fields(settings: BillingSettings) -> dict:
    """The settings' resources as (class, values): a ConfigurableResource does not pickle."""
    return {name: (type(part), part.model_dump()) for name in BillingSettings.model_fields
            if (part := getattr(settings, name)) is not None}


def _start_worker(job_name: str, settings_fields: dict, tags: dict) -> None:
    from dagster import DagsterInstance

    from billing_pipelines.definitions import defs

    settings = BillingSettings(**{name: cls(**values) for name, (cls, values) in settings_fields.items()})
    _worker.update(job=defs.resolve_job_def(job_name), settings=settings, instance=DagsterInstance.get(), tags=tags)


def _run_partition(partition_key: str) -> PartitionRun:
    start = time.perf_counter()
    result = _worker["job"].execute_in_process(
        partition_key=partition_key, instance=_worker["instance"], resources={"billing": _worker["settings"]},
        tags=_worker["tags"], run_config=_QUIET, raise_on_error=False,
    )
    return PartitionRun(partition_key, result.run_id, result.success, time.perf_counter() - start)


def cmd_backfill(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.definitions import defs

    keys = [d.isoformat() for d in parse_dates(args.dates)]
    require_partitions(defs.resolve_job_def(args.job).partitions_def, keys)
    dagster_instance(settings)  # sets DAGSTER_HOME (default $BILLING_HOME/dagster) for the workers
    runs = run_backfill(args.job, keys, settings, args.workers)
    failed = [r.partition_key for r in runs if not r.success]
    print(f"{len(runs) - len(failed)} of {len(runs)} partitions of {args.job} succeeded"
          f" ({args.workers} at once, longest {max(r.seconds for r in runs):.1f} s)")
    if failed:
        raise SystemExit(f"billing: backfill failed for {', '.join(failed)}: re-run them (safe)")


def register(subparsers) -> None:
    """`billing backfill DATES... [--workers 4] [--job daily_ingest]`."""
    parser = subparsers.add_parser("backfill", help="run many landing dates, several at once")
    parser.add_argument("dates", nargs="+", help="YYYY-MM-DD or FROM..TO")
    parser.add_argument("--workers", type=int, default=4, help="runs at once (default 4)")
    parser.add_argument("--job", default="daily_ingest")
    parser.set_defaults(handler=cmd_backfill)
