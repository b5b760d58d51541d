"""The month close as stored and chained (billing_pipelines.month_close): each month from the
previous month's snapshot and its own events, in customer shards and batches, against the pure
close over the full history; and its Dagster lineage."""

from __future__ import annotations

import shutil
from datetime import date, datetime, timedelta

import dagster as dg
import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from billing_pipelines.ingest.landing import landing_dates
from billing_pipelines.ingest.pipeline import BILLED, LandingZone, billed_events_sql, ingest
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA
from billing_pipelines.month_close.compute import close_month
from billing_pipelines.month_close.documents import stored_month_close
from billing_pipelines.month_close.ledger import CREDIT_LEDGER
from billing_pipelines.month_close.run import close_months
from billing_pipelines.month_close.usage import shard_partition
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import duck
from tests.common import CONFORMANCE, EXAMPLES, Landing, event

MONTHS = [date(2026, 10, 1), date(2026, 11, 1), date(2026, 12, 1), date(2027, 1, 1), date(2027, 2, 1)]
DOCUMENTS = ("credit_summaries", "invoices", "invoice_usage", "margin", "advisor")


def _settings(root, config_dir, landing_root, **env) -> BillingSettings:
    return BillingSettings.from_env({"BILLING_HOME": str(root), "BILLING_CONFIG": str(config_dir),
                                     "BILLING_LANDING": str(landing_root), **env})


def _billed_history(settings: BillingSettings) -> pl.DataFrame:
    """Every billed event in the warehouse, for the pure full-history close."""
    con = duck.connect()
    days = [date.fromisoformat(p[3:]) for p in settings.warehouse().partitions(BILLED)]
    query = billed_events_sql(con, LandingZone(settings), days)
    return con.sql(f"SELECT {', '.join(BILLED_EVENT_SCHEMA)} FROM ({query})").pl().cast(BILLED_EVENT_SCHEMA)


def _allocations(settings: BillingSettings, month: date, shards: int) -> pl.DataFrame:
    wh, con = settings.warehouse(), duck.connect()
    paths = wh.file_paths(CREDIT_LEDGER, "allocations", [shard_partition(month, s, shards) for s in range(shards)])
    return con.sql(f"SELECT request_id, grant_id, credits FROM {wh.relation(con, paths)}").pl().sort(pl.all())


def _assert_equals_full_history(settings: BillingSettings, months: list[date], shards: int) -> None:
    config, history = settings.billing_config(), _billed_history(settings)
    for month in months:
        full = close_month(config, history, month, settings.grace_days)
        stored = stored_month_close(settings.warehouse(), month)
        assert stored["invoices"] == [i.to_json() for i in full.invoices], month
        assert stored["margin"] == [m.to_json() for m in full.margin], month
        assert stored["credit_summaries"] == {o: s.as_dict() for o, s in full.credit_summaries.items()}, month
        expected = full.allocations.select("request_id", pl.col("grant_id").cast(pl.Utf8), "credits").sort(pl.all())
        assert _allocations(settings, month, shards).equals(expected), month


def _purchases_yaml(rng: np.random.Generator) -> str:
    rows = []
    for i in range(int(rng.integers(0, 5))):
        at = datetime(2026, 10, 1) + timedelta(hours=int(rng.integers(0, 24 * 120)))
        rows.append(f"  - {{purchase_id: p-{i}, org_id: {rng.choice(['acme', 'globex'])}, "
                    f"purchased_at: '{at.isoformat()}Z', credits: {int(rng.integers(100, 20000))}, "
                    f"price: '{int(rng.integers(1, 300))}.00', expires_after_months: {int(rng.integers(1, 14))}}}")
    return "credit_purchases:\n" + "\n".join(rows) + "\n" if rows else ""


def _scenario(root, seed: int) -> tuple[Landing, object]:
    """The example plans and customers with random purchases of every length, and events of
    five months landing on a few dates each, some weeks late (late usage)."""
    rng = np.random.default_rng(seed)
    config_dir = root / "config"
    shutil.copytree(EXAMPLES, config_dir)
    customers = config_dir / "customers.yaml"
    text = customers.read_text()
    customers.write_text(text[:text.index("credit_purchases:")] + _purchases_yaml(rng))
    landing = Landing(root / "landing")
    for n in range(int(rng.integers(8, 14))):
        landed = date(2026, 10, 2) + timedelta(days=int(rng.integers(0, 140)))
        rows = []
        for i in range(int(rng.integers(5, 60))):
            org = str(rng.choice(["acme", "globex", "initech"]))
            start = date(2026, 11, 1) if org == "initech" else date(2026, 10, 1)
            ts = max(datetime.combine(start, datetime.min.time()),
                     datetime.combine(landed, datetime.min.time()) - timedelta(hours=int(rng.integers(0, 24 * 40))))
            rows.append(event(f"e{n}-{i}", org, ts.isoformat() + "Z", action=str(rng.choice(["simple", "complex"])),
                              input_tokens=int(rng.integers(0, 3000)), output_tokens=int(rng.integers(0, 2000))))
            if rng.random() < 0.3:  # repeat: big consumers drain grants, so rollovers and overage happen
                rows[-1]["action"] = "complex"
        for _ in range(int(rng.integers(0, 40))):
            rows.append({**rows[int(rng.integers(0, len(rows)))], "request_id": f"x{n}-{len(rows)}"})
        landing.jsonl(landed.isoformat(), f"f{n}.jsonl", rows)
    return landing, config_dir


@hypothesis_settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                         HealthCheck.function_scoped_fixture])
@given(st.integers(0, 10_000))
def test_chained_closes_in_shards_and_batches_equal_full_history_closes(tmp_path_factory, seed):
    """Random purchases of every length, rollover chains (enterprise keeps 125,000 for 3 months),
    late usage; then a backfill into an earlier month after the later ones are closed: the chain
    is closed again from the changed month, and every month equals the full-history close."""
    root = tmp_path_factory.mktemp("chain")
    landing, config_dir = _scenario(root, seed)
    settings = _settings(root / "home", config_dir, landing.root, BILLING_CLOSE_SHARDS="2",
                         BILLING_CLOSE_BATCH_EVENTS="40")
    ingest(settings, sorted(landing_dates(settings.landing_store())))
    close_months(settings, MONTHS[-1], shards=2)
    _assert_equals_full_history(settings, MONTHS, shards=2)

    backfilled = "2026-11-20"
    landing.jsonl(backfilled, "backfill.jsonl", [event(f"b{i}", "acme", "2026-11-19T10:00:00Z", action="complex")
                                                 for i in range(1200)])
    ingest(settings, [date.fromisoformat(backfilled)])
    close_months(settings, MONTHS[-1], shards=2)
    _assert_equals_full_history(settings, MONTHS, shards=2)


def test_events_landed_on_the_first_days_of_the_first_month_are_billed(tmp_path):
    """The first customers start on 2026-10-01, and events land from 2026-10-02, before
    October's partition begins (2026-10-04): the lead-in month, September, takes them in and
    hands them over, so October bills them as the full-history close does."""
    config_dir = tmp_path / "config"
    shutil.copytree(EXAMPLES, config_dir)
    customers = config_dir / "customers.yaml"
    customers.write_text(customers.read_text().replace("start_date: 2026-09-15", "start_date: 2026-10-01"))
    landing = Landing(tmp_path / "landing")
    landing.jsonl("2026-10-02", "early.jsonl", [event(f"e{i}", "acme", "2026-10-01T10:00:00Z", action="complex")
                                                for i in range(7)])
    landing.jsonl("2026-10-20", "later.jsonl", [event(f"l{i}", "acme", "2026-10-19T10:00:00Z") for i in range(3)])
    settings = _settings(tmp_path / "home", config_dir, landing.root)
    ingest(settings, sorted(landing_dates(settings.landing_store())))
    close_months(settings, date(2026, 11, 1), shards=2)
    assert stored_month_close(settings.warehouse(), date(2026, 9, 1))["invoices"] == []
    assert stored_month_close(settings.warehouse(), date(2026, 10, 1))["credit_summaries"]["acme"]["consumed"] == 38
    _assert_equals_full_history(settings, [date(2026, 10, 1), date(2026, 11, 1)], shards=2)


def test_one_shard_or_four_and_any_batch_give_the_same_month(tmp_path, monkeypatch):
    results = {}
    for name, shards, batch in (("one", 1, "2000000"), ("four", 4, "2000000"), ("batches", 2, "30")):
        monkeypatch.setenv("BILLING_CLOSE_BATCH_EVENTS", batch)
        settings = _settings(tmp_path / name, CONFORMANCE / "config", CONFORMANCE / "landing")
        ingest(settings, sorted(landing_dates(settings.landing_store())))
        close_months(settings, date(2026, 11, 1), shards=shards)
        results[name] = ({k: stored_month_close(settings.warehouse(), m)[k] for k in DOCUMENTS
                          for m in MONTHS[:2]}, _allocations(settings, date(2026, 11, 1), shards))
    assert results["one"][0] == results["four"][0] == results["batches"][0]
    assert results["one"][1].equals(results["four"][1]) and results["one"][1].equals(results["batches"][1])


def test_a_shard_collects_its_month_from_the_month_before_and_the_pinned_dates_or_says_what_to_run(tmp_path):
    from billing_pipelines.ingest.landing import partition_name
    from billing_pipelines.month_close.errors import MonthCloseError
    from billing_pipelines.month_close.usage import collect_month_usage, pin_landing_dates

    settings = _settings(tmp_path, CONFORMANCE / "config", CONFORMANCE / "landing")
    ingest(settings, sorted(landing_dates(settings.landing_store())))
    zone, nov, oct_ = LandingZone(settings), date(2026, 11, 1), date(2026, 10, 1)
    with pytest.raises(MonthCloseError, match=r"2026-11: its landing dates are not pinned yet"):
        collect_month_usage(zone, nov, 0, 1)
    pin_landing_dates(zone, nov, 3)
    with pytest.raises(MonthCloseError, match=r"needs 2026-10 collected first.*billing close-month 2026-10"):
        collect_month_usage(zone, nov, 0, 1)
    pin_landing_dates(zone, oct_, 3)
    settings.warehouse().drop(BILLED, partition_name(date(2026, 10, 20)))
    with pytest.raises(MonthCloseError, match=r"billed usage of 2026-10-20 changed since its landing dates"):
        collect_month_usage(LandingZone(settings), oct_, 0, 1)


def test_the_month_close_depends_on_exactly_what_it_reads():
    """The partitions of the billed usage a billing month reads are its window's landing dates
    (from the end of the previous month's grace period to the end of its own); each month and
    shard depends on the month before."""
    from billing_pipelines.definitions import defs

    graph = defs.resolve_asset_graph()
    now = datetime(2026, 12, 10)

    def parents(asset: str, key: str, parent: str) -> list[str]:
        with dg.instance_for_test() as instance:
            from dagster._core.definitions.partitions.context import partition_loading_context

            with partition_loading_context(effective_dt=now, dynamic_partitions_store=instance):
                keys = graph.get_parent_partition_keys_for_child(key, dg.AssetKey(parent), dg.AssetKey(asset))
        return sorted(keys.partitions_subset.get_partition_keys())

    window = parents("month_landing_dates", "2026-10", "billed_usage")
    assert (window[0], window[-1], len(window)) == ("2026-10-04", "2026-11-03", 31)
    assert parents("month_usage", "2026-10|0", "month_landing_dates") == ["2026-10"]
    assert parents("month_usage", "2026-10|0", "month_usage") == ["2026-09|0"]
    assert parents("credit_ledger", "2026-10|0", "credit_ledger") == ["2026-09|0"]
    assert parents("credit_ledger", "2026-10|0", "month_usage") == ["2026-10|0"]
    assert parents("margin_report", "2026-10", "month_usage") == parents("rate_limit_simulation", "2026-10",
                                                                         "month_usage") == ["2026-10|0"]
    assert parents("draft_invoices", "2026-10", "credit_ledger") == ["2026-10|0"]
