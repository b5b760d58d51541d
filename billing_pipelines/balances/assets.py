"""Dagster side of live balances: the `live_balances` asset, its job, and the sensor that
launches one run per landed file (and one per month, so balances roll over without events)."""

import json
from datetime import UTC, date, datetime, timedelta

import dagster as dg

from billing_pipelines.balances.live import process_landed_file
from billing_pipelines.ingest.assets import billed_usage, landing_zone
from billing_pipelines.ingest.landing import landed_files
from billing_pipelines.ingest.pipeline import LandingZone
from billing_pipelines.month_close.assets import credit_ledger
from billing_pipelines.periods import month_key
from billing_pipelines.resources import BillingSettings

# The daemon evaluates sensors at most every 5 s (its loop); a shorter minimum keeps it from
# skipping a loop whose start came a moment early, which would make the wait 10 s.
SENSOR_INTERVAL_SECONDS = 2
MAX_RUNS_PER_TICK = 25
RUN_TAGS = {"billing/live": "balances"}


class LiveBatchConfig(dg.Config):
    """The landed file to count (its key in the landing zone); empty: refresh every customer."""

    key: str = ""


@dg.asset(
    group_name="balances",
    kinds={"duckdb", "sqlite", "postgres"},
    # what a micro-batch reads: the landed file, the billed usage (and request index) since the last
    # close, and that close's credit ledger
    deps=[landing_zone, billed_usage, credit_ledger],
    owners=["team:data"], tags={"domain": "balances"},
    description="Each customer's balance right now (credits left per active grant, overage and usage "
    "this month, as_of), updated by a micro-batch per landed file; the ledger of SPEC §3 over the "
    "full history, so a month close agrees with it.",
)
def live_balances(context: dg.AssetExecutionContext, config: LiveBatchConfig, billing: BillingSettings):
    batch = process_landed_file(billing, config.key or None)
    return dg.MaterializeResult(metadata={
        "file": config.key or "(refresh)",
        "new_events": batch.new_events,
        "customers_updated": dg.MetadataValue.json(batch.written),
        "generation": batch.generation,
        "alerts_fired": dg.MetadataValue.json(batch.alerts_fired),
    })


live_balance_updates = dg.define_asset_job(
    "live_balance_updates", selection=[live_balances], executor_def=dg.in_process_executor, tags=RUN_TAGS,
    description="Count one landed file's new events and refresh the balances of its customers.",
)


def run_key(key: str, size: int, mtime_ns: int) -> str:
    return f"{key}@{size}:{mtime_ns}"


def _request(key: str, run_key_: str) -> dg.RunRequest:
    return dg.RunRequest(run_key=run_key_, run_config={"ops": {"live_balances": {"config": {"key": key}}}},
                         tags={**RUN_TAGS, "billing/file": key or "refresh"})


@dg.sensor(
    job=live_balance_updates, minimum_interval_seconds=SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="One live_balances run per new or changed landed file of the recent landing dates "
    "(cursor: key, size, mtime), and one per month. On its first tick, dates the daily ingest already "
    "priced need no run.",
)
def landed_files_sensor(context: dg.SensorEvaluationContext, billing: BillingSettings) -> dg.SensorResult:
    cursor = json.loads(context.cursor) if context.cursor else None
    seen: dict[str, list[int]] = (cursor or {}).get("files", {})
    requests, month = [], month_key(datetime.now(UTC))
    if (cursor or {}).get("month") != month:
        requests.append(_request("", f"refresh:{month}"))
    landed = _recent_landing(billing)
    staged = _staged_dates(billing, landed) if cursor is None else set()
    current = {f.key: [f.size, f.mtime_ns] for files in landed.values() for f in files}
    files = {key: state for key, state in seen.items() if key in current}
    pending = [(day, f) for day, fs in sorted(landed.items()) for f in fs if files.get(f.key) != current[f.key]]
    for day, f in pending:
        if day not in staged:
            if len(requests) >= MAX_RUNS_PER_TICK:
                break  # the rest next tick
            requests.append(_request(f.key, run_key(f.key, f.size, f.mtime_ns)))
        files[f.key] = current[f.key]
    return dg.SensorResult(run_requests=requests, cursor=json.dumps({"month": month, "files": files}, sort_keys=True))


def _recent_landing(billing: BillingSettings) -> dict[date, list]:
    """The files of the landing dates a file lands in now: from `grace_days + 2` days ago (files
    land a little after their date) to tomorrow, each folder listed alone: never the whole
    landing zone, whose listing grows with history. Files landing in older folders are the
    daily ingest's (or an operator's `billing ingest`)."""
    store, today = billing.landing_store(), datetime.now(UTC).date()
    days = [today + timedelta(days=n) for n in range(-(billing.grace_days + 2), 2)]
    return {day: files for day in days if (files := landed_files(store, day))}


def _staged_dates(billing: BillingSettings, landed: dict) -> set[date]:
    """Landing dates whose files are all priced in the warehouse already, as they are now."""
    zone = LandingZone(billing)
    return {day for day in landed if zone.is_staged(day)}
