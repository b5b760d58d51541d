"""Dagster assets of the ingest domain: priced events and billed usage, per landing date, their
checks, and the daily schedule that ingests yesterday's date."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg

from billing_pipelines.ingest.landing import partition_name
from billing_pipelines.ingest.pipeline import (
    BILLED,
    PIPELINE_VERSION,
    PRICED,
    IngestSummary,
    LandingZone,
    bill,
    stage,
    stale_dates,
)
from billing_pipelines.ingest.quality import missing_drop, quarantined_share
from billing_pipelines.partitions import landing_dates, partition_check
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import duck

OWNERS = ["team:data"]
TAGS = {"domain": "ingest"}


landing_zone = dg.AssetSpec(
    "landing_zone", partitions_def=landing_dates, group_name="ingest", kinds={"s3", "json", "parquet"},
    owners=OWNERS, tags=TAGS,
    description="The event files the producers drop in the landing zone, dt=YYYY-MM-DD/ (BILLING_LANDING): "
    "read, never written, by the pipeline (docs/landing-zone.md).",
)


@dg.asset(
    partitions_def=landing_dates,
    group_name="ingest",
    deps=[landing_zone],
    kinds={"duckdb", "parquet"},
    owners=OWNERS, tags=TAGS, code_version=PIPELINE_VERSION,
    description="Every event landed on this date, validated and priced with the effective-dated "
    "price book; rows that break a rule go to the quarantine with their reason (SPEC §1.2).",
    check_specs=[
        partition_check("files_landed", "priced_events", landing_dates, blocking=True,
                   description="event files landed on the date, unless it is a known gap (BILLING_KNOWN_GAPS)"),
        partition_check("quarantine_share", "priced_events", landing_dates,
                   description="the share of the date's rows quarantined is within BILLING_QUARANTINE_LIMIT"),
    ],
)
def priced_events(context: dg.AssetExecutionContext, billing: BillingSettings) -> dg.MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    meta = stage(LandingZone(billing), day)["meta"]
    quarantined = sum(meta["quarantined"].values())
    return dg.MaterializeResult(
        metadata={
            "rows_read": meta["rows_read"],
            "valid": meta["valid"],
            "quarantined": quarantined,
            "quarantine_reasons": dg.MetadataValue.json(meta["quarantined"]),
            "files": len(meta["files"]),
            "unreadable_files": dg.MetadataValue.json(meta["unreadable_files"]),
            "skipped_files": dg.MetadataValue.json(meta["skipped_files"]),
        },
        check_results=[files_landed(billing, day, len(meta["files"]) + len(meta["unreadable_files"])),
                       quarantine_share(billing, meta["rows_read"], quarantined)],
    )


def files_landed(billing: BillingSettings, day: date, files: int) -> dg.AssetCheckResult:
    """Fails a date with no files (a missing data drop), unless it is a known gap."""
    problem = missing_drop(day, files, billing.known_gaps())
    return dg.AssetCheckResult(check_name="files_landed", passed=problem is None, description=problem,
                               metadata={"files": files, "known_gap": day in billing.known_gaps()})


def quarantine_share(billing: BillingSettings, rows_read: int, quarantined: int) -> dg.AssetCheckResult:
    """Warns where an unusual share of the date's rows went to the quarantine."""
    share, limit = quarantined_share(rows_read, quarantined), billing.quarantine_limit()
    return dg.AssetCheckResult(check_name="quarantine_share", passed=share <= limit,
                               severity=dg.AssetCheckSeverity.WARN,
                               metadata={"share": float(share), "limit": float(limit), "quarantined": quarantined})


@dg.asset(
    partitions_def=landing_dates,
    group_name="ingest",
    deps=[priced_events],
    kinds={"duckdb", "parquet"},
    owners=OWNERS, tags=TAGS, code_version=PIPELINE_VERSION,
    # the daily schedule ingests yesterday at 00:30 UTC: by 03:00 a run should have billed it
    freshness_policy=dg.FreshnessPolicy.cron(deadline_cron="0 3 * * *", lower_bound_delta=timedelta(hours=3)),
    description="The duplicate decision across all history (SPEC §1.3): the first occurrence of a "
    "request_id is billed, every later one, on any date, is a duplicate kept for audit. Checked against "
    "the request index (the first occurrences of every earlier date); a date whose request_ids change "
    "rebills, in the same run, every later date whose billed set that changes.",
    check_specs=[partition_check("rows_balance", "billed_usage", landing_dates, blocking=True,
                            description="rows_read = billed + duplicates + quarantined"),
                 # not blocking: the date's other files are billed, and later dates too
                 partition_check("files_readable", "billed_usage", landing_dates,
                            description="no landed file of the date was unreadable (SPEC §1.1)")],
)
def billed_usage(context: dg.AssetExecutionContext, billing: BillingSettings) -> dg.MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    result = bill(LandingZone(billing), day)
    summary = result.summary
    for later in result.rebilled:  # their billed set changed: the UI shows them materialized again
        context.log_event(dg.AssetMaterialization(
            asset_key=context.asset_key, partition=later.landing_date,
            description=f"rebilled: {day} changed which of its request_ids were seen before",
            metadata=_billed_metadata(later)))
    return dg.MaterializeResult(
        metadata={**_billed_metadata(summary),
                  "rebilled_later_dates": dg.MetadataValue.json([s.landing_date for s in result.rebilled])},
        check_results=[rows_balance(billing, day), files_readable(summary)],
    )


def _billed_metadata(summary) -> dict:
    return {"rows_read": summary.rows_read, "billed": summary.billed, "duplicates": summary.duplicates,
            "quarantined": sum(summary.quarantined.values()),
            "unreadable_files": dg.MetadataValue.json(summary.unreadable_files),
            "skipped_files": dg.MetadataValue.json(summary.skipped_files)}


def rows_balance(billing: BillingSettings, day: date) -> dg.AssetCheckResult:
    """Recount the stored outputs: every row read is billed, a duplicate or quarantined."""
    wh, part = billing.warehouse(), partition_name(day)
    meta = wh.manifest(BILLED, part)["meta"]
    con = duck.connect()
    try:
        valid, first = con.execute(
            f"SELECT count(*), count(*) FILTER (first_in_date) FROM "
            f"{wh.relation(con, wh.file_paths(PRICED, 'priced_events', [part]))}"
        ).fetchone()
        quarantined = con.execute(
            f"SELECT count(*) FROM {wh.relation(con, wh.file_paths(PRICED, 'quarantine', [part]))}"
        ).fetchone()[0]
        cross = con.execute(
            f"SELECT count(*) FROM {wh.relation(con, wh.file_paths(BILLED, 'cross_day_duplicates', [part]))}"
        ).fetchone()[0]
    finally:
        con.close()
    stored = {"billed": first - cross, "duplicates": valid - first + cross, "quarantined": quarantined}
    reported = {"billed": meta["billed"], "duplicates": meta["duplicates"],
                "quarantined": sum(meta["quarantined"].values())}
    passed = stored == reported and meta["rows_read"] == sum(stored.values())
    return dg.AssetCheckResult(
        check_name="rows_balance", passed=passed,
        metadata={"rows_read": meta["rows_read"], **{f"stored_{k}": v for k, v in stored.items()}},
    )


def files_readable(summary: IngestSummary) -> dg.AssetCheckResult:
    """Fails where a landed file could not be read at all: its rows are in no count until it is
    replaced and the date ingested again."""
    return dg.AssetCheckResult(
        check_name="files_readable", passed=not summary.unreadable_files,
        metadata={"unreadable_files": dg.MetadataValue.json(summary.unreadable_files)},
    )


daily_ingest = dg.define_asset_job(
    "daily_ingest", selection=[priced_events, billed_usage], partitions_def=landing_dates,
    description="Ingest, deduplicate and price the events of one landing date.",
)


@dg.schedule(job=daily_ingest, cron_schedule="30 0 * * *", execution_timezone="UTC",
             description="At 00:30 UTC, yesterday's landing date; and, again, each date of the grace "
             "period whose files changed since it was ingested (files land late).")
def daily_ingest_schedule(context: dg.ScheduleEvaluationContext, billing: BillingSettings):
    now = context.scheduled_execution_time or datetime.now(UTC)
    yesterday = now.date() - timedelta(days=1)
    grace = [yesterday - timedelta(days=n) for n in range(billing.grace_days, 0, -1)]
    days = [d for d in stale_dates(LandingZone(billing), grace) if landing_dates.has_partition_key(d.isoformat())]
    late = [dg.RunRequest(run_key=f"{d}@{yesterday}", partition_key=d.isoformat(),
                          tags={"billing/reingest": "late files"})
            for d in days]
    return late + [dg.RunRequest(run_key=yesterday.isoformat(), partition_key=yesterday.isoformat())]
