"""The request index (billing_pipelines.ingest.request_index) against a brute-force set of every
earlier date's hashes: runs of dates, months and years, their filters and union filters,
compaction in chunks, invalidation, the recovery of a bill killed before it rebilled later dates,
and the lock."""

from __future__ import annotations

import threading
import time
from datetime import date, timedelta

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as settings_of
from hypothesis import strategies as st

from billing_pipelines.ingest import request_index
from billing_pipelines.ingest.request_index import RequestIndex, day_number, index_lock, sort_keys
from billing_pipelines.storage.warehouse import Warehouse
from tests.common import event
from tests.db_support import DATABASE_KINDS, fresh_database

START = date(2025, 12, 20)


def _dates_with_keys(seed: int, days: int, per_day: int) -> dict[date, np.ndarray]:
    """Random hashes per date, a share of them repeating earlier dates' (some with equal h1 only)."""
    rng = np.random.default_rng(seed)
    out, pool = {}, []
    for n in range(days):
        h1 = rng.integers(0, 2**64 - 1, per_day, dtype=np.uint64)
        h2 = rng.integers(0, 2**64 - 1, per_day, dtype=np.uint64)
        if pool:
            old = np.concatenate(pool)
            pick = rng.integers(0, len(old), per_day // 10)
            h1[: len(pick)], h2[: len(pick)] = old["h1"][pick], old["h2"][pick]
            h1[len(pick): 2 * len(pick)] = old["h1"][pick]  # same h1, another h2: not a duplicate
        keys = sort_keys(h1, h2)
        out[START + timedelta(days=n)] = keys
        pool.append(keys)
    return out


def _index_of(tmp_path, runs: dict[date, np.ndarray]) -> RequestIndex:
    """An index in a fresh warehouse holding `runs` as date runs."""
    index = RequestIndex(Warehouse(str(tmp_path / "wh")))
    for day, keys in runs.items():
        index.put_date_run(day, keys, source=str(day))
    return index


def _brute_force(runs: dict[date, np.ndarray], day: date, keys: np.ndarray):
    earliest = {}
    for d, held in sorted(runs.items()):
        if d < day:
            for k in held.tolist():
                earliest.setdefault(k, day_number(d))
    found = np.array([k in earliest for k in keys.tolist()])
    return found, [earliest[k] for k in keys[found].tolist()]


def test_every_date_finds_exactly_the_hashes_earlier_dates_hold(tmp_path, monkeypatch):
    monkeypatch.setattr(request_index, "CHUNK", 64)  # compaction and probes go a chunk at a time
    runs = _dates_with_keys(seed=3, days=110, per_day=300)  # 2025-12-20 to 2026-04-08
    index = _index_of(tmp_path, runs)
    for n in (0, 5, 13, 12, 30, 44, 79, 60, 109, 79, 109):  # the union made, extended, made smaller
        day = START + timedelta(days=n)
        found, first = index.found_in(runs[day], index.runs_before(day, build=True))
        expected_found, expected_first = _brute_force(runs, day, runs[day])
        assert found.tolist() == np.flatnonzero(expected_found).tolist()
        assert first.tolist() == expected_first
    year, months, dates = index.runs_before(START + timedelta(days=79), build=True)  # 2026-03-09
    assert year.name == "year=2025"
    assert [run.name for run in months.runs] == ["month=2026-01", "month=2026-02"]
    assert [run.name for run in dates.runs] == [f"dt=2026-03-{d:02d}" for d in range(1, 9)]


@pytest.mark.parametrize("extended_on, made_on, union, members", [
    ((date(2026, 3, 1), date(2026, 4, 1)), date(2026, 4, 1), "union=2026+01-03",
     ["month=2026-01", "month=2026-02", "month=2026-03"]),
    ((date(2026, 3, 4), date(2026, 3, 5), date(2026, 3, 6)), date(2026, 3, 6), "union=2026-03+01-05",
     [f"dt=2026-03-{d:02d}" for d in range(1, 6)]),
], ids=["year-by-month", "month-by-date"])
def test_a_union_extended_run_by_run_is_the_union_made_at_once(tmp_path, extended_on, made_on, union, members):
    runs = _dates_with_keys(seed=4, days=110, per_day=200)
    index = _index_of(tmp_path, runs)
    for day in extended_on:  # made of the runs before the first day, then extended day by day
        index.runs_before(day, build=True)
    extended = index.runs_before(made_on)[-1]
    assert {n for n in RequestIndex(index.wh).names if n.startswith(union.partition("+")[0] + "+")} == {union}
    index.wh.drop(request_index.DATASET, union)
    made = RequestIndex(index.wh).runs_before(made_on, build=True)[-1]
    assert [run.name for run in extended.runs] == members
    assert np.array_equal(extended.words, made.words) and extended.words.any()


def test_a_changed_date_invalidates_its_month_and_year_runs(tmp_path):
    runs = _dates_with_keys(seed=5, days=20, per_day=50)
    index = _index_of(tmp_path, runs)
    later = date(2026, 1, 8)
    index.runs_before(later, build=True)
    assert {"year=2025", "month=2025-12"} <= RequestIndex(index.wh).names
    changed = START + timedelta(days=3)
    runs[changed] = sort_keys(np.array([7, 8], np.uint64), np.array([1, 2], np.uint64))
    index.put_date_run(changed, runs[changed], source="2")
    fresh = RequestIndex(Warehouse(str(tmp_path / "wh")))
    assert not {"year=2025", "month=2025-12"} & fresh.names
    probe = sort_keys(np.array([7, 8, 9], np.uint64), np.array([1, 2, 2], np.uint64))
    found, first = fresh.found_in(probe, fresh.runs_before(later, build=True))
    assert found.tolist() == [0, 1] and set(first) == {day_number(changed)}


def test_a_union_whose_runs_changed_is_read_as_its_runs_until_rebuilt(tmp_path):
    runs = _dates_with_keys(seed=7, days=80, per_day=50)
    index = _index_of(tmp_path, runs)
    later = date(2026, 3, 5)
    assert isinstance(index.runs_before(later, build=True)[1], request_index.Group)  # January and February
    changed = date(2026, 1, 3)
    runs[changed] = np.sort(np.concatenate([runs[changed], runs[later][:5]]), order=["h1", "h2"])
    index.put_date_run(changed, runs[changed], source="2")
    fresh = RequestIndex(Warehouse(str(tmp_path / "wh")))
    for build in (False, True):
        before = fresh.runs_before(later, build=build)
        assert isinstance(before[1], request_index.Group) == build  # January and February: whose union changed
        found, first = fresh.found_in(runs[later], before)
        expected_found, expected_first = _brute_force(runs, later, runs[later])
        assert found.tolist() == np.flatnonzero(expected_found).tolist() and first.tolist() == expected_first
        assert {0, 1, 2, 3, 4} <= set(found.tolist())


def test_two_runs_differ_by_what_one_holds_and_not_the_other(monkeypatch):
    monkeypatch.setattr(request_index, "CHUNK", 8)  # many aligned parts
    rng = np.random.default_rng(2)
    old = sort_keys(rng.integers(0, 2**64 - 1, 200, dtype=np.uint64), rng.integers(0, 2**64 - 1, 200, dtype=np.uint64))
    new = np.sort(np.concatenate([old[10:], old[:3], sort_keys(np.array([5, 2**63], np.uint64),
                                                                 np.array([1, 2], np.uint64))]), order=["h1", "h2"])
    delta = request_index.symmetric_difference(old, new)
    assert sorted(delta.tolist()) == sorted(old[3:10].tolist() + [(5, 1), (2**63, 2)])
    assert request_index.same_keys(old, old.copy()) and not request_index.same_keys(old, new)


def test_the_filter_lets_few_strangers_through():
    rng = np.random.default_rng(11)
    keys = sort_keys(rng.integers(0, 2**64 - 1, 200_000, dtype=np.uint64),
                     rng.integers(0, 2**64 - 1, 200_000, dtype=np.uint64))
    run = request_index.Run("x", keys, np.zeros(len(keys), np.int32),
                            request_index.build_filter(keys, request_index.filter_words(len(keys))))
    strangers = request_index.Probe.of(sort_keys(rng.integers(0, 2**64 - 1, 200_000, dtype=np.uint64),
                                                 rng.integers(0, 2**64 - 1, 200_000, dtype=np.uint64)))
    slot = (strangers.keys["h1"] >> np.uint64(64 - int(np.log2(len(run.words))))).astype(np.int64)
    false_positives = ((run.words[slot] & strangers.masks) == strangers.masks).mean()
    assert false_positives < 0.01
    assert len(run.lookup(strangers)[0]) == 0
    assert len(run.lookup(request_index.Probe.of(keys))[0]) == len(keys)


def test_a_bill_killed_before_rebilling_later_dates_is_completed_by_the_next(settings, landing, monkeypatch):
    from billing_pipelines.ingest import pipeline
    from billing_pipelines.ingest.pipeline import ingest, summary_of

    landing.jsonl("2026-11-04", "a.jsonl", [event("x"), event("y")])
    landing.jsonl("2026-11-05", "a.jsonl", [event("z", ts="2026-11-05T01:00:00Z")])
    ingest(settings, [date(2026, 11, 4), date(2026, 11, 5)])
    landing.jsonl("2026-11-03", "late.jsonl", [event("x")])
    monkeypatch.setattr(pipeline, "_propagate", lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):  # killed after storing 2026-11-03's run
        ingest(settings, [date(2026, 11, 3)])
    assert summary_of(settings, date(2026, 11, 4)).duplicates == 0  # not rebilled yet
    monkeypatch.undo()
    ingest(settings, [date(2026, 11, 5)])  # any later bill finishes the pending one first
    assert summary_of(settings, date(2026, 11, 4)).duplicates == 1
    assert RequestIndex(settings.warehouse()).pending() == []


@pytest.mark.parametrize("kind", DATABASE_KINDS)
def test_the_index_has_one_biller_at_a_time(tmp_path, kind):
    holding, overlaps = [], []

    def biller(url: str):
        with index_lock(str(tmp_path), url):
            holding.append(1)
            overlaps.append(len(holding))
            time.sleep(0.2)
            holding.pop()

    with fresh_database(kind, tmp_path) as url:
        threads = [threading.Thread(target=biller, args=(url,)) for _ in range(3)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert overlaps == [1, 1, 1]


@settings_of(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 40), max_size=2000), st.lists(st.integers(-1, 41), max_size=50))
def test_the_fence_finds_what_a_search_of_the_whole_run_finds(h1s, wanted):
    """Few distinct h1 values, so equal h1 run across fence blocks of FENCE_STRIDE keys."""
    keys = sort_keys(np.array(h1s, np.uint64) * np.uint64(2**58), np.zeros(len(h1s), np.uint64))
    values = np.array([max(w, 0) for w in wanted], np.uint64) * np.uint64(2**58) + np.array(
        [w < 0 for w in wanted], np.uint64)  # -1: between two stored values
    fence = request_index.fence_of(keys)
    for side in ("left", "right"):
        assert request_index.search_h1(keys, fence, values, side).tolist() == \
            np.searchsorted(keys["h1"], values, side).tolist()
