"""The micro-batch: price one landed file exactly as the daily ingest does, count its events not
seen before, and recompute the balances of the customers it touched from the last month close.

A balance starts from the grants the latest closed month left alive (its credit ledger, the
customer's shard) and the events billed since: those that month handed over to the next, the
billed usage of every landing date after its partition, and the events the micro-batch counted
whose request_id the request index does not hold yet. So its cost is that of the months not yet
closed, never of the whole history. Nothing here takes a lock the daily or monthly assets hold:
DuckDB is in memory, the warehouse is only read, and the billing database sees short
transactions on the balance tables (named dashboard_* in the database).
"""

from __future__ import annotations

from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import polars as pl
import pyarrow as pa

from billing_pipelines.balances import state
from billing_pipelines.balances.balances import Balance, Snapshot, current_balances
from billing_pipelines.balances.since_close import billed_since, last_snapshot
from billing_pipelines.config import BillingConfig
from billing_pipelines.delivery.alerts import raise_alerts
from billing_pipelines.ingest.landing import LandingError
from billing_pipelines.ingest.pipeline import (
    classify_files,
    event_sources_sql,
    priced_event_fields_sql,
    priced_events_sql,
    request_hash_sql,
)
from billing_pipelines.ingest.request_index import RequestIndex, sort_keys
from billing_pipelines.invoicing.seller import load_seller
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA
from billing_pipelines.ledger.grants import utc_naive
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import duck
from billing_pipelines.storage.objects import Store, StoredFile

LIVE_EVENT_SCHEMA = {**BILLED_EVENT_SCHEMA, "key": pl.Utf8, "line_no": pl.Int64}


@dataclass
class LiveBatch:
    """What one micro-batch did."""

    key: str | None
    generation: int
    new_events: int = 0
    balances: dict[str, Balance] = field(default_factory=dict)
    written: list[str] = field(default_factory=list)
    alerts_fired: list[str] = field(default_factory=list)  # their webhook-ids (delivery.alerts)


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


def _unseen(con, settings: BillingSettings, query: str) -> str:
    """`query` (with h1, h2) without the rows whose request hash a billed landing date holds."""
    keys = con.execute(f"SELECT h1, h2 FROM ({query})").fetchnumpy()
    index, keys = RequestIndex(settings.warehouse()), sort_keys(keys["h1"], keys["h2"])
    found, _ = index.found_in(keys, index.runs_before(date.max))
    seen = keys[found]
    con.register("seen_hashes", pa.table({"h1": seen["h1"], "h2": seen["h2"]}))
    return f"SELECT * FROM ({query}) ANTI JOIN seen_hashes USING (h1, h2)"


def price_new_events(con, settings: BillingSettings, config: BillingConfig, stored: StoredFile,
                     day: date) -> pl.DataFrame:
    """The billable events of one file (valid, first in the file) that the warehouse has not seen."""
    classify_files(con, config, settings.landing_store(), [stored], day)
    priced = (f"SELECT {duck.literal(day)} AS landing_date, k.key, e.* FROM ({priced_events_sql()}) e "
              f"JOIN files k USING (file_idx) WHERE e.first_in_date")
    query = priced_event_fields_sql(f"({_unseen(con, settings, priced)})", f"({event_sources_sql('fields', 'files')})")
    return con.sql(f"SELECT {', '.join(LIVE_EVENT_SCHEMA)} FROM ({query})").pl().cast(LIVE_EVENT_SCHEMA)


def history(con, settings: BillingSettings, config: BillingConfig, live: pl.DataFrame, orgs: set[str],
            at: datetime) -> tuple[Snapshot, pl.DataFrame, list[str]]:
    """The last close's snapshot of `orgs` and their events billed since: the warehouse's, plus the
    `live` ones it does not have yet; and the request_ids of the `live` events the warehouse has
    by now (the daily ingest caught up)."""
    snapshot = last_snapshot(settings, config, orgs, utc_naive(at).date())
    con.register("live_events", live.to_arrow())
    exact = [f"CAST({c} AS DECIMAL(38, 12)) AS {c}" if c == "cost_usd" else c for c in BILLED_EVENT_SCHEMA]
    live_hashed = f"SELECT {', '.join(exact)}, {request_hash_sql('request_id')} FROM live_events"
    con.execute(f"CREATE OR REPLACE TEMP TABLE not_absorbed AS {_unseen(con, settings, live_hashed)}")
    not_absorbed = {r for (r,) in con.execute("SELECT request_id FROM not_absorbed").fetchall()}
    absorbed = sorted(set(live["request_id"].to_list()) - not_absorbed)
    billed = billed_since(con, settings, config, snapshot, orgs)
    query = f"{billed} UNION ALL SELECT {', '.join(BILLED_EVENT_SCHEMA)} FROM not_absorbed"
    return snapshot, con.sql(query).pl().cast(BILLED_EVENT_SCHEMA), absorbed


def refresh_balances(con, settings: BillingSettings, config: BillingConfig, orgs: set[str], at: datetime) -> LiveBatch:
    """Recompute and store the balances of `orgs` at `at` from a snapshot of the history; forget
    the counted events the warehouse has taken over."""
    engine = state.balances_engine(settings.database_url)
    generation = state.current_generation(engine)
    live = state.live_events(engine, orgs, BILLED_EVENT_SCHEMA)  # before the warehouse: see history()
    snapshot, events, absorbed = history(con, settings, config, live, orgs, at)
    balances = current_balances(config, events, orgs, at, settings.grace_days, snapshot)
    written = state.store_balances(engine, balances, generation)
    fired = raise_alerts(engine, config, load_seller(settings.config_dir), {o: balances[o] for o in written}, at)
    state.forget_live_events(engine, absorbed)
    return LiveBatch(None, generation, balances=balances, written=written, alerts_fired=fired)


def process_landed_file(settings: BillingSettings, key: str | None, at: datetime | None = None) -> LiveBatch:
    """One micro-batch: count the new events of the landed file `key` and refresh the balances of
    its customers; with no key, refresh every customer (a new month, a first start)."""
    config = settings.billing_config()
    engine = state.balances_engine(settings.database_url)
    at = at or datetime.now(UTC)
    with closing(duck.connect(settings.scratch_dir())) as con:
        if key is None:
            state.bump_generation(engine)
            orgs, new_events = set(config.customers), 0
        else:
            stored, day = landed_file(settings.landing_store(), key)
            counted = state.record_batch(engine, stored, day, price_new_events(con, settings, config, stored, day))
            orgs, new_events = set(counted["org_id"]), counted.height
        batch = (refresh_balances(con, settings, config, orgs, at) if orgs
                 else LiveBatch(key, state.current_generation(engine)))
    batch.key, batch.new_events = key, new_events
    return batch
