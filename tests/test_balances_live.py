"""The live micro-batch: priced as ingest prices, deduplicated against all history, and equal to
the ledger at a month close (conformance data, end of 2026-11)."""

from __future__ import annotations

import os
import shutil
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from billing_pipelines.balances import state
from billing_pipelines.balances.live import process_landed_file
from billing_pipelines.ingest.landing import LandingError, landing_dates
from billing_pipelines.ingest.pipeline import ingest
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA
from billing_pipelines.month_close.ledger import stored_grants
from billing_pipelines.month_close.run import close_months
from tests.balances_support import CONFORMANCE, land, live_settings, now_event, postgres_database
from tests.common import Landing

HELD_FROM = "dt=2026-11-24"  # landing dates from here on land one file at a time, after the daily ingest
DECEMBER = datetime(2026, 12, 1)


def _left_by_grant(balance) -> dict[str, int]:
    return {g.grant_id: g.credits_left for g in balance.grants}


@pytest.fixture(scope="module")
def november(tmp_path_factory):
    """The conformance zone: dates before HELD_FROM ingested daily, the rest micro-batched file by
    file (at 2026-12-01T00:00), then the rest ingested and November closed."""
    root = tmp_path_factory.mktemp("november")
    landing, held = root / "landing", root / "held"
    for folder in (CONFORMANCE / "landing").iterdir():
        shutil.copytree(folder, (held if folder.name >= HELD_FROM else landing) / folder.name)
    settings = live_settings(root, landing=landing)
    ingest(settings, sorted(landing_dates(settings.landing_store())))
    batches = []
    for folder in sorted(held.iterdir()):
        shutil.copytree(folder, landing / folder.name)
        for path in sorted(p for p in (landing / folder.name).rglob("*") if p.is_file()):
            batches.append(process_landed_file(settings, path.relative_to(landing).as_posix(), at=DECEMBER))
    live = process_landed_file(settings, None, at=DECEMBER).balances
    end_of_november = process_landed_file(settings, None, at=datetime(2026, 11, 30, 23, 59, 59)).balances
    ingest(settings, sorted(landing_dates(settings.landing_store())))
    close = close_months(settings, date(2026, 11, 1)).to_json()
    return settings, batches, live, end_of_november, close


def test_micro_batches_counted_the_held_back_files(november):
    _, batches, _, _, _ = november
    assert len(batches) > 10 and sum(b.new_events for b in batches) > 1000
    assert all(b.written for b in batches if b.new_events)


def test_balance_at_the_close_equals_the_ledger_closing_balance(november):
    """Credits left at 2026-12-01T00:00 in every grant but December's plan grant = November's
    closing; grant by grant, what the ledger left in it."""
    settings, _, live, _, close = november
    closing = {o: s["closing"] for o, s in close["credit_summaries"].items()}
    assert set(live) == set(closing)
    ledger_left = {g.grant_id: g.left for g in stored_grants(settings.warehouse(), date(2026, 11, 1), 1)}
    for org_id, balance in live.items():
        carried = {gid: left for gid, left in _left_by_grant(balance).items() if gid != f"plan:{org_id}:2026-12"}
        assert sum(carried.values()) == closing[org_id], org_id
        assert carried == {gid: ledger_left[gid] for gid in carried}, org_id
    assert closing == {"acme": 12500, "globex": 375000, "initech": 0}


def test_november_usage_and_overage_equal_the_invoice(november):
    _, _, _, end_of_november, close = november
    for invoice in close["invoices"]:
        balance = end_of_november[invoice["org_id"]]
        assert balance.month == "2026-11"
        assert balance.consumed_credits == invoice["credits"]["consumed"]
        assert balance.overage_credits == invoice["credits"]["overage"]
        assert sum(u.credits for u in balance.usage) == invoice["credits"]["consumed"]
    initech = end_of_november["initech"]
    assert initech.overage_credits > 0 and initech.overage_amount is None  # free plan: not billed


def test_after_the_daily_ingest_catches_up_nothing_is_counted_twice(november):
    """Every held-back date ingested and November closed: December's balances, now from
    November's snapshot, equal those computed from the start while nothing was closed."""
    settings, _, live, _, _ = november
    again = process_landed_file(settings, None, at=DECEMBER).balances
    assert {o: _left_by_grant(b) for o, b in again.items()} == {o: _left_by_grant(b) for o, b in live.items()}
    redelivered = sorted(Path(settings.landing).glob("dt=2026-11-2*/redelivered.jsonl"))[0]
    batch = process_landed_file(settings, redelivered.relative_to(settings.landing).as_posix(), at=DECEMBER)
    assert batch.new_events == 0
    engine = state.balances_engine(settings.database_url)
    assert state.live_events(engine, set(live), BILLED_EVENT_SCHEMA).height == 0  # the warehouse took over


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_a_file_is_priced_like_ingest_and_deduplicated(tmp_path, backend):
    if backend == "postgresql":
        with postgres_database() as url:
            _priced_and_deduplicated(live_settings(tmp_path, url))
    else:
        _priced_and_deduplicated(live_settings(tmp_path))


def _priced_and_deduplicated(settings):
    first = land(settings, "a.jsonl", [
        now_event("r-1", action="complex"),
        now_event("r-1", action="complex"),            # repeated in the file: counted once
        now_event("r-2", model="no-such-model"),       # quarantined: unknown_model
        now_event("r-3", org="globex", model="frontier-large", action="document",
                  input_tokens=2500, output_tokens=600),  # ceil(3100 / 1000) = 4 credits
        "{not json",
    ])
    batch = process_landed_file(settings, first)
    assert batch.new_events == 2 and sorted(batch.written) == ["acme", "globex"]
    assert batch.balances["acme"].consumed_credits == 5
    assert batch.balances["globex"].consumed_credits == 4
    again = land(settings, "b.jsonl",
                 [now_event("r-1"), now_event("r-3", org="globex"), now_event("r-4", seconds_ago=5)])
    batch = process_landed_file(settings, again)
    assert batch.new_events == 1 and batch.written == ["acme"]
    acme = batch.balances["acme"]
    assert acme.consumed_credits == 6
    assert [(u.model, u.action, u.requests, u.credits) for u in acme.usage] == [
        ("small-fast", "complex", 1, 5), ("small-fast", "simple", 1, 1)]
    engine = state.balances_engine(settings.database_url)
    document = state.balance_document(engine, "acme")
    assert document["consumed_credits"] == 6 and document["newest_event_at"] == acme.as_of.isoformat() + "Z"
    landed = max(os.stat(Path(settings.landing) / key).st_mtime_ns for key in (first, again))  # the newest file counted
    assert document["as_of"] == datetime.fromtimestamp(landed / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert document["credits_left"] == acme.credits_left == state.credits_left(engine, "acme")


def test_gzip_and_parquet_files_and_a_refresh_without_events(tmp_path):
    settings = live_settings(tmp_path)
    assert process_landed_file(settings, None).balances["acme"].consumed_credits == 0
    landing = Landing(Path(settings.landing))
    day = datetime.now(UTC).date().isoformat()
    landing.jsonl(day, "gw/a.jsonl.gz", [now_event("z-1", action="complex")])
    landing.parquet(day, "gw/b.parquet", [now_event("p-1"), now_event("p-2", input_tokens=-1)])
    assert process_landed_file(settings, f"dt={day}/gw/a.jsonl.gz").new_events == 1
    batch = process_landed_file(settings, f"dt={day}/gw/b.parquet")
    assert batch.new_events == 1 and batch.balances["acme"].consumed_credits == 6


def test_the_daily_ingest_counts_for_the_micro_batch(tmp_path):
    settings = live_settings(tmp_path)
    key = land(settings, "a.jsonl", [now_event("r-1"), now_event("r-2")])
    ingest(settings, [date.fromisoformat(key[3:13])])
    batch = process_landed_file(settings, key)
    assert batch.new_events == 0
    assert process_landed_file(settings, None).balances["acme"].consumed_credits == 2
    later = land(settings, "b.jsonl", [now_event("r-3")])
    assert process_landed_file(settings, later).balances["acme"].consumed_credits == 3
    ingest(settings, [date.fromisoformat(key[3:13])])  # the daily ingest takes r-3 over
    assert process_landed_file(settings, None).balances["acme"].consumed_credits == 3
    engine = state.balances_engine(settings.database_url)
    assert state.live_events(engine, {"acme"}, BILLED_EVENT_SCHEMA).height == 0


def test_an_older_snapshot_never_overwrites_a_newer_balance(tmp_path):
    settings = live_settings(tmp_path)
    old = process_landed_file(settings, land(settings, "a.jsonl", [now_event("r-1")]))
    process_landed_file(settings, land(settings, "b.jsonl", [now_event("r-2")]))
    engine = state.balances_engine(settings.database_url)
    assert state.store_balances(engine, old.balances, old.generation) == []
    assert state.balance_document(engine, "acme")["consumed_credits"] == 2


def test_a_missing_file_is_a_clear_error(tmp_path):
    settings = live_settings(tmp_path)
    with pytest.raises(LandingError, match="no such file"):
        process_landed_file(settings, "dt=2026-11-27/gone.jsonl")
    with pytest.raises(LandingError, match="dt=YYYY-MM-DD"):
        process_landed_file(settings, "elsewhere/a.jsonl")


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_concurrent_micro_batches_lose_nothing(tmp_path, backend):
    """Six files counted by six threads at once: the stored balance has every event, once."""
    from concurrent.futures import ThreadPoolExecutor

    def run(settings):
        keys = [land(settings, f"f{n}.jsonl", [now_event(f"c-{n}-{i}") for i in range(n + 1)] + [now_event("c-shared")])
                for n in range(6)]
        with ThreadPoolExecutor(6) as pool:
            list(pool.map(lambda key: process_landed_file(settings, key), keys))
        document = state.balance_document(state.balances_engine(settings.database_url), "acme")
        assert document["consumed_credits"] == sum(range(1, 7)) + 1

    if backend == "postgresql":
        with postgres_database() as url:
            run(live_settings(tmp_path, url))
    else:
        run(live_settings(tmp_path))
