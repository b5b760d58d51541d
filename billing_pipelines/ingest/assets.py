"""Dagster assets of the ingest domain: priced events and billed usage, per landing date."""

from datetime import date

import dagster as dg

from billing_pipelines import duck
from billing_pipelines.ingest.landing import partition_name
from billing_pipelines.ingest.pipeline import BILLED, PRICED, IngestSummary, LandingZone, bill, stage
from billing_pipelines.partitions import landing_dates
from billing_pipelines.resources import BillingSettings


@dg.asset(
    partitions_def=landing_dates,
    group_name="ingest",
    kinds={"duckdb", "parquet"},
    description="Every event landed on this date, validated and priced with the effective-dated "
    "price book; rows that break a rule go to the quarantine with their reason (SPEC §1.2).",
)
def priced_events(context: dg.AssetExecutionContext, billing: BillingSettings) -> dg.MaterializeResult:
    day = date.fromisoformat(context.partition_key)
    meta = stage(LandingZone(billing), day)["meta"]
    return dg.MaterializeResult(
        metadata={
            "rows_read": meta["rows_read"],
            "valid": meta["valid"],
            "quarantined": sum(meta["quarantined"].values()),
            "quarantine_reasons": dg.MetadataValue.json(meta["quarantined"]),
            "files": len(meta["files"]),
            "unreadable_files": dg.MetadataValue.json(meta["unreadable_files"]),
            "skipped_files": dg.MetadataValue.json(meta["skipped_files"]),
        }
    )


@dg.asset(
    partitions_def=landing_dates,
    group_name="ingest",
    deps=[priced_events],
    kinds={"duckdb", "parquet"},
    description="The duplicate decision across all history (SPEC §1.3): the first occurrence of a "
    "request_id is billed, every later one, on any date, is a duplicate kept for audit. Checked against "
    "the request index (the first occurrences of every earlier date); a date whose request_ids change "
    "rebills, in the same run, every later date whose billed set that changes.",
    check_specs=[dg.AssetCheckSpec("rows_balance", asset="billed_usage", blocking=True,
                                   description="rows_read = billed + duplicates + quarantined"),
                 # not blocking: the date's other files are billed, and later dates too
                 dg.AssetCheckSpec("files_readable", asset="billed_usage",
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


ingest_job = dg.define_asset_job(
    "daily_ingest", selection=[priced_events, billed_usage], partitions_def=landing_dates,
    description="Ingest, deduplicate and price the events of one landing date.",
)
daily_ingest_schedule = dg.build_schedule_from_partitioned_job(ingest_job, hour_of_day=0, minute_of_hour=30)
