"""The micro-batch: price one landed file exactly as the daily ingest does, count its events not
seen before, and recompute the balances of the customers it touched from the full history.

History = the billed events of every landing date the daily ingest has billed (the warehouse)
plus the events the micro-batch counted whose request_id the warehouse does not have yet. Nothing
here takes a lock the daily or monthly assets hold: DuckDB is in memory, the warehouse is only
read, and the billing database sees short transactions on the dashboard's own tables.
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from datetime import date, datetime, timezone

import polars as pl

from billing_pipelines import duck
from billing_pipelines.config import BillingConfig
from billing_pipelines.dashboard import state
from billing_pipelines.dashboard.balances import Balance, current_balances
from billing_pipelines.ingest.landing import LandingError, partition_name
from billing_pipelines.ingest.pipeline import (
    BILLED, PRICED, LandingZone, billed_events_sql, classify_files, event_sources_sql, priced_event_fields_sql, priced_events_sql,
    request_hash_sql,
)
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import Store, StoredFile

LIVE_EVENT_SCHEMA = {**BILLED_EVENT_SCHEMA, "key": pl.Utf8, "line_no": pl.Int64}


@dataclass
class LiveBatch:
    """What one micro-batch did."""

    key: str | None
    generation: int
    new_events: int = 0
    balances: dict[str, Balance] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)


def landed_file(store: Store, key: str) -> tuple[StoredFile, date]:
    """The landed file `key` (`dt=YYYY-MM-DD/...`) as it is now, with its landing date."""
    folder = key.split("/", 1)[0]
    try:
        day = date.fromisoformat(folder.removeprefix("dt="))
    except ValueError:
        raise LandingError(f"{key}: not in a dt=YYYY-MM-DD folder of the landing zone") from None
    stored = store.file(key)  # a symbolic link is not followed: classify_files skips it
    if stored is None:
        raise LandingError(f"{key}: no such file in the landing zone {store.root}")
    return stored, day


def _billed_days(settings: BillingSettings) -> list[date]:
    """Landing dates the daily ingest has billed (their duplicates decided across all history)."""
    return [date.fromisoformat(p[3:]) for p in settings.warehouse().partitions(BILLED)]


def _seen_ids_sql(con, settings: BillingSettings, days: list[date]) -> str | None:
    """A query of the hashes (h1, h2) of every valid request_id of `days` in the warehouse (None
    where there is none)."""
    wh = settings.warehouse()
    paths = wh.file_paths(PRICED, "priced_events", [partition_name(d) for d in days])
    return f"SELECT h1, h2 FROM {wh.relation(con, paths)}" if paths else None


def price_new_events(con, settings: BillingSettings, config: BillingConfig, stored: StoredFile, day: date) -> pl.DataFrame:
    """The billable events of one file (valid, first in the file) that the warehouse has not seen."""
    classify_files(con, config, settings.landing_store(), [stored], day)
    priced = f"SELECT DATE '{day}' AS landing_date, k.key, e.* FROM ({priced_events_sql(day)}) e JOIN files k USING (file_idx)"
    seen = _seen_ids_sql(con, settings, _billed_days(settings))
    if seen:
        priced += f" ANTI JOIN ({seen}) s USING (h1, h2)"
    priced += " WHERE e.first_in_date"
    query = priced_event_fields_sql(f"({priced})", f"({event_sources_sql('fields', 'files')})")
    return con.sql(f"SELECT {', '.join(LIVE_EVENT_SCHEMA)} FROM ({query})").pl().cast(LIVE_EVENT_SCHEMA)


def history(con, settings: BillingSettings, config: BillingConfig, live: pl.DataFrame, orgs: set[str]) -> tuple[pl.DataFrame, list[str]]:
    """Billed events of `orgs`: the warehouse's, plus the `live` ones it does not have yet; and
    the request_ids of the `live` events the warehouse has by now (the daily ingest caught up)."""
    con.register("live_events", live.to_arrow())
    con.register("orgs", pl.DataFrame({"org_id": sorted(orgs)}, schema={"org_id": pl.Utf8}).to_arrow())
    exact = [f"CAST({c} AS DECIMAL(38, 12)) AS {c}" if c == "cost_usd" else c for c in BILLED_EVENT_SCHEMA]
    live_sql = f"SELECT {', '.join(exact)} FROM live_events"
    days = _billed_days(settings)
    if not days:
        return con.sql(live_sql).pl().cast(BILLED_EVENT_SCHEMA), []
    billed = billed_events_sql(con, LandingZone(settings, config), days)
    con.execute(f"CREATE OR REPLACE TEMP TABLE absorbed AS SELECT l.request_id FROM "
                f"(SELECT request_id, {request_hash_sql('request_id')} FROM live_events) l "
                f"SEMI JOIN ({_seen_ids_sql(con, settings, days)}) s USING (h1, h2)")
    query = (
        f"SELECT {', '.join(BILLED_EVENT_SCHEMA)} FROM ({billed}) WHERE org_id IN (SELECT org_id FROM orgs) "
        f"UNION ALL SELECT * FROM ({live_sql}) WHERE request_id NOT IN (SELECT request_id FROM absorbed)"
    )
    absorbed = [r for (r,) in con.execute("SELECT request_id FROM absorbed").fetchall()]
    return con.sql(query).pl().cast(BILLED_EVENT_SCHEMA), absorbed


def refresh_balances(con, settings: BillingSettings, config: BillingConfig, orgs: set[str], at: datetime) -> LiveBatch:
    """Recompute and store the balances of `orgs` at `at` from a snapshot of the history; forget
    the counted events the warehouse has taken over."""
    engine = state.dashboard_engine(settings.database_url)
    generation = state.current_generation(engine)
    live = state.live_events(engine, orgs, BILLED_EVENT_SCHEMA)  # before the warehouse: see history()
    events, absorbed = history(con, settings, config, live, orgs)
    balances = current_balances(config, events, orgs, at, settings.grace_days)
    written = state.store_balances(engine, balances, generation)
    state.forget_live_events(engine, absorbed)
    return LiveBatch(None, generation, balances=balances, written=written)


def process_landed_file(settings: BillingSettings, key: str | None, at: datetime | None = None) -> LiveBatch:
    """One micro-batch: count the new events of the landed file `key` and refresh the balances of
    its customers; with no key, refresh every customer (a new month, a first start)."""
    config = settings.billing_config()
    engine = state.dashboard_engine(settings.database_url)
    at = at or datetime.now(timezone.utc)
    with closing(duck.connect(settings.scratch_dir())) as con:
        if key is None:
            state.bump_generation(engine)
            orgs, new_events = set(config.customers), 0
        else:
            stored, day = landed_file(settings.landing_store(), key)
            counted = state.record_batch(engine, stored, day, price_new_events(con, settings, config, stored, day))
            orgs, new_events = set(counted["org_id"]), counted.height
        batch = refresh_balances(con, settings, config, orgs, at) if orgs else LiveBatch(key, state.current_generation(engine))
    batch.key, batch.new_events = key, new_events
    return batch
