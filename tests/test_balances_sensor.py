"""The landed-files sensor: a cursor over (key, size, mtime), one run key per file, a refresh run
per month, and a first tick that leaves dates the daily ingest already priced alone."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest

from billing_pipelines.balances.assets import landed_files_sensor, live_balance_updates, live_balances, run_key
from billing_pipelines.balances.state import balance_document, balances_engine
from billing_pipelines.ingest.assets import billed_usage, priced_events
from billing_pipelines.ingest.pipeline import ingest
from billing_pipelines.periods import month_key
from tests.balances_support import land, live_settings, now_event


@pytest.fixture
def settings(tmp_path):
    return live_settings(tmp_path)


@pytest.fixture
def defs(settings):
    return dg.Definitions(
        assets=[priced_events, billed_usage, live_balances], jobs=[live_balance_updates],
        sensors=[landed_files_sensor], resources={"billing": settings},
    )


def tick(defs, settings, cursor=None):
    with dg.build_sensor_context(cursor=cursor, resources={"billing": settings}, definitions=defs) as context:
        result = defs.resolve_sensor_def("landed_files_sensor")(context)
    return result.run_requests, result.cursor


def _key(settings, key):
    stat = os.stat(os.path.join(settings.landing, key))
    return run_key(key, stat.st_size, stat.st_mtime_ns)


def test_first_tick_refreshes_and_runs_each_unpriced_file(defs, settings):
    yesterday = datetime.now(UTC).date() - timedelta(days=1)
    early = land(settings, "old.jsonl", [now_event("o-1")], day=yesterday.isoformat())
    ingest(settings, [yesterday])
    land(settings, "ancient.jsonl", [now_event("o-2")], day="2026-01-02")  # not a folder files land in now
    a = land(settings, "a.jsonl", [now_event("r-1")])
    b = land(settings, "sub/b.jsonl", [now_event("r-2")])
    requests, cursor = tick(defs, settings)
    month = month_key(datetime.now(UTC))
    assert [r.run_key for r in requests] == [f"refresh:{month}", _key(settings, a), _key(settings, b)]
    assert requests[1].run_config == {"ops": {"live_balances": {"config": {"key": a}}}}
    assert set(json.loads(cursor)["files"]) == {early, a, b}  # the priced date is in the cursor, without a run


def test_next_ticks_run_new_and_changed_files_only(defs, settings):
    a = land(settings, "a.jsonl", [now_event("r-1")])
    _, cursor = tick(defs, settings)
    assert tick(defs, settings, cursor)[0] == []
    b = land(settings, "b.jsonl", [now_event("r-2")])
    requests, cursor = tick(defs, settings, cursor)
    assert [r.run_key for r in requests] == [_key(settings, b)]
    land(settings, "a.jsonl", [now_event("r-1"), now_event("r-3")])  # rewritten: new size and mtime
    requests, cursor = tick(defs, settings, cursor)
    assert [r.run_key for r in requests] == [_key(settings, a)]
    assert tick(defs, settings, cursor)[0] == []


def test_a_new_month_refreshes_every_customer(defs, settings):
    _, cursor = tick(defs, settings)
    stale = json.dumps({**json.loads(cursor), "month": "2000-01"})
    requests, cursor = tick(defs, settings, stale)
    assert [r.run_key for r in requests] == [f"refresh:{month_key(datetime.now(UTC))}"]
    assert json.loads(cursor)["month"] == month_key(datetime.now(UTC))


def test_the_job_a_run_request_launches_updates_the_balance(defs, settings):
    _, cursor = tick(defs, settings)
    land(settings, "a.jsonl", [now_event("r-1", action="complex")])
    requests, _ = tick(defs, settings, cursor)
    result = defs.resolve_job_def("live_balance_updates").execute_in_process(
        run_config=requests[0].run_config, instance=dg.DagsterInstance.ephemeral(), tags=requests[0].tags,
    )
    assert result.success
    document = balance_document(balances_engine(settings.database_url), "acme")
    assert document["consumed_credits"] == 5
    materialization = result.asset_materializations_for_node("live_balances")[0]
    assert materialization.metadata["new_events"].value == 1
