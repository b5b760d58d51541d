"""Ingest, quarantine, deduplication and pricing (SPEC §1) on a real DuckDB over real files."""

from __future__ import annotations

import json
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from billing_pipelines.ingest.landing import landing_dates
from billing_pipelines.ingest.pipeline import PRICED, LandingZone, ingest, summary_of
from billing_pipelines.storage.duck import Sql
from billing_pipelines.storage.warehouse import WarehouseError
from tests.common import CONFORMANCE, CONFORMANCE_PLAN_CHANGES, Landing, event
from tests.ingest_support import D1, D2, billed, run, table


@pytest.mark.parametrize("row, reason", [
    ("{not json", "malformed"),
    ("[1, 2]", "malformed"),
    ('"a string"', "malformed"),
    (json.dumps({k: v for k, v in event("r").items() if k != "user_id"}), "missing_field"),
    (json.dumps(event("r", model=None)), "missing_field"),
    (json.dumps(event("r", input_tokens="12")), "bad_type"),
    (json.dumps(event("r", input_tokens=12.0)), "bad_type"),
    (json.dumps(event("r", output_tokens=True)), "bad_type"),
    (json.dumps(event("r", latency_ms=-1)), "bad_type"),
    (json.dumps(event("")), "bad_type"),
    (json.dumps(event("x" * 201)), "bad_type"),
    (json.dumps(event(12345)), "bad_type"),
    (json.dumps(event("r", org=7)), "bad_type"),
    (json.dumps(event("r", ts="2026-11-03T10:00:00")), "bad_type"),
    (json.dumps(event("r", ts="2026-11-31T10:00:00Z")), "bad_type"),
    (json.dumps(event("r", ts="yesterday")), "bad_type"),
    (json.dumps(event("r", ts="2026-11-03 10:00:00Z")), "bad_type"),
    (json.dumps(event("r", org="hooli")), "unknown_org"),
    (json.dumps(event("r", model="gpt-x")), "unknown_model"),
    (json.dumps(event("r", action="poem")), "unknown_action"),
    (json.dumps(event("r", ts="2025-12-31T23:00:00Z")), "no_rate"),
    (json.dumps(event("r", org="initech", ts="2026-10-31T23:59:59Z")), "before_customer_start"),
    (json.dumps(event("r", ts="2026-11-05T00:00:00Z")), "future_timestamp"),
    # first matching reason wins: a missing field beats a bad type, an unknown org beats a model
    (json.dumps({k: v for k, v in event("r", input_tokens=-5).items() if k != "model"}), "missing_field"),
    (json.dumps(event("r", org="hooli", model="gpt-x")), "unknown_org"),
])
def test_each_quarantine_reason(settings, landing, row, reason):
    landing.jsonl(D1, "events.jsonl", [event("ok"), row])
    summary = run(settings, D1)[D1]
    assert summary == {"landing_date": D1, "rows_read": 2, "billed": 1, "duplicates": 0,
                       "quarantined": {reason: 1}}
    [quarantined] = table(settings, "quarantine", D1)
    assert (quarantined["key"], quarantined["line_no"], quarantined["reason"]) == (f"dt={D1}/events.jsonl", 2, reason)
    assert quarantined["raw"] == row


def test_just_before_the_future_cutoff_is_billed(settings, landing):
    landing.jsonl(D1, "a.jsonl", [event("r", ts="2026-11-04T23:59:59.999999Z")])
    assert run(settings, D1)[D1]["billed"] == 1


def test_a_line_that_is_not_utf8_is_malformed_and_its_neighbours_are_billed(settings, landing):
    path = landing.path(D1, "a.jsonl")
    path.write_bytes(json.dumps(event("a")).encode() + b"\n" + json.dumps(event("bX")).encode().replace(b"bX", b"b\xff")
                     + b"\n" + json.dumps(event("c")).encode() + b"\n")
    assert run(settings, D1)[D1]["quarantined"] == {"malformed": 1}
    assert sorted(billed(settings)) == ["a", "c"]
    assert table(settings, "quarantine", D1)[0]["raw"].startswith('{"request_id": "b\ufffd')


def test_blank_lines_are_not_rows_but_keep_line_numbers(settings, landing):
    landing.jsonl(D1, "a.jsonl", ["", json.dumps(event("a")), "   ", "{bad"])
    assert run(settings, D1)[D1]["rows_read"] == 2
    assert table(settings, "quarantine", D1)[0]["line_no"] == 4


def test_duplicates_within_a_file_across_files_days_and_months(settings, landing):
    landing.jsonl("2026-10-31", "a.jsonl", [event("m", ts="2026-10-31T10:00:00Z")])
    landing.jsonl(D1, "a.jsonl", [event("x"), event("x"), event("m")])
    landing.jsonl(D1, "b.jsonl", [event("x"), event("y")])
    landing.jsonl(D2, "a.jsonl", [event("y"), event("z")])
    result = run(settings, "2026-10-31", D1, D2)
    assert [(r["billed"], r["duplicates"]) for r in result.values()] == [(1, 0), (2, 3), (1, 1)]
    rows = billed(settings)
    assert sorted(rows) == ["m", "x", "y", "z"]
    assert rows["m"]["landing_date"] == date(2026, 10, 31)
    assert (rows["x"]["key"], rows["x"]["line_no"]) == (f"dt={D1}/a.jsonl", 1)
    assert rows["y"]["key"] == f"dt={D1}/b.jsonl"


def test_file_order_is_key_byte_order_including_subfolders(settings, landing):
    landing.jsonl(D1, "b.jsonl", [event("x", user_id="from-b")])
    landing.jsonl(D1, "a/z.jsonl", [event("x", user_id="from-a-z")])
    landing.jsonl(D1, "B.jsonl", [event("x", user_id="from-B")])  # 'B' < 'a' < 'b' in bytes
    run(settings, D1)
    assert billed(settings)["x"]["user_id"] == "from-B"


def test_a_quarantined_row_never_shadows_a_later_valid_one(settings, landing):
    landing.jsonl(D1, "a.jsonl", [event("x", model="gpt-x"), event("y", input_tokens=-1)])
    landing.jsonl(D2, "a.jsonl", [event("x"), event("y")])
    result = run(settings, D1, D2)
    assert result[D2]["billed"] == 2 and result[D2]["duplicates"] == 0
    assert sorted(billed(settings)) == ["x", "y"]


def _priced_bytes(settings, days: list[str]) -> dict[str, bytes]:
    wh = settings.warehouse()
    return {d: Path(wh.file_paths(PRICED, "priced_events", [f"dt={d}"])[0]).read_bytes() for d in days} | {
        f"billed {d}": Path(wh.file_paths("billed_usage", "cross_day_duplicates", [f"dt={d}"])[0]).read_bytes()
        for d in days
    }


def test_out_of_order_and_repeated_processing_is_byte_identical(tmp_path, config_dir, landing):
    from billing_pipelines.resources import BillingSettings

    days = ["2026-11-02", D1, D2]
    landing.jsonl(days[0], "a.jsonl", [event("a"), event("b")])
    landing.jsonl(D1, "a.jsonl", [event("b"), event("c"), event("a")])
    landing.parquet(D2, "p.parquet", [event("c"), event("d")])

    def fresh(name: str):
        return BillingSettings.from_env({"BILLING_HOME": str(tmp_path / name), "BILLING_CONFIG": str(config_dir),
                                         "BILLING_LANDING": str(landing.root)})

    in_order, reverse = fresh("in-order"), fresh("reverse")
    expected = {d: run(in_order, d)[d] for d in days}
    for d in reversed(days):
        run(reverse, d)
    run(reverse, D1)  # and once more
    assert {d: run(reverse, d)[d] for d in days} == expected
    assert _priced_bytes(reverse, days) == _priced_bytes(in_order, days)
    assert expected[D2]["duplicates"] == 1 and expected[D1]["duplicates"] == 2


def test_outputs_do_not_depend_on_duckdb_keeping_the_landing_order(tmp_path, config_dir, landing, monkeypatch):
    from billing_pipelines.ingest import pipeline
    from billing_pipelines.resources import BillingSettings

    landing.parquet(D1, "a.parquet", [event("a"), event("b"), event("a")])
    landing.jsonl(D1, "b.jsonl", [event("c"), event("b"), "not json"])
    landing.parquet(D1, "c.parquet", [event("d"), event("c")])
    runs = {}
    for name, keeps_order in (("kept", True), ("sorted", False)):
        monkeypatch.setattr(pipeline, "_in_landing_order", lambda con, keeps=keeps_order: keeps)
        settings = BillingSettings.from_env({"BILLING_HOME": str(tmp_path / name), "BILLING_CONFIG": str(config_dir),
                                             "BILLING_LANDING": str(landing.root)})
        runs[name] = (run(settings, D1)[D1], _priced_bytes(settings, [D1]))
    assert runs["kept"] == runs["sorted"] and runs["kept"][0]["billed"] == 4


def test_a_value_by_day_holds_from_its_date_until_the_next():
    import duckdb

    from billing_pipelines.ingest.pipeline import _by_day

    con = duckdb.connect()
    value = _by_day(con, "v", {date(2026, 1, 10): 5, date(2026, 1, 1): 1, date(2026, 3, 1): 7}, "NULL::BIGINT")
    days = ["2025-12-31", "2026-01-01", "2026-01-09", "2026-01-10", "2026-02-28", "2026-03-01", "2030-01-01"]
    rows = con.execute(f"SELECT {value} FROM (SELECT unnest({days!r})::DATE AS day)").fetchall()
    assert [v for (v,) in rows] == [None, 1, 1, 5, 5, 7, 7]
    assert _by_day(con, "w", {}, "0") == "0"


def test_the_landing_order_check_finds_any_row_out_of_place():
    import duckdb

    from billing_pipelines.ingest.pipeline import _in_landing_order

    con = duckdb.connect()
    con.execute("CREATE TABLE classified AS SELECT * FROM (VALUES (0, 1), (0, 2), (1, 1)) t(file_idx, line_no)")
    assert _in_landing_order(con)
    for rows in ["(0, 2), (0, 1), (1, 1)", "(1, 1), (0, 1), (0, 2)", "(0, 1), (0, 1)"]:
        con.execute(f"CREATE OR REPLACE TABLE classified AS SELECT * FROM (VALUES {rows}) t(file_idx, line_no)")
        assert not _in_landing_order(con)


def test_late_landed_file_for_an_earlier_date_rebills_later_dates(settings, landing):
    landing.jsonl(D2, "a.jsonl", [event("x"), event("y")])
    assert run(settings, D2)[D2]["billed"] == 2
    landing.jsonl(D1, "late.jsonl", [event("x")])  # a file lands in an earlier folder afterwards
    run(settings, D1)  # that date alone: it rebills D2 in the same call
    assert summary_of(settings, date.fromisoformat(D2)).to_json() == {
        "landing_date": D2, "rows_read": 2, "billed": 1, "duplicates": 1, "quarantined": {}}
    assert billed(settings)["x"]["landing_date"] == date(2026, 11, 3)


def test_a_redelivery_into_an_earlier_date_rebills_every_later_date_it_changes(tmp_path, settings, landing,
                                                                               monkeypatch):
    """Issue 15, finding 3: a request_id added to an earlier date, then `billing ingest` of that
    date alone: the later dates holding it are rebilled in the same command (and shown in Dagster)
    and every count equals a from-scratch run."""
    from dagster import AssetKey, DagsterInstance

    from billing_pipelines import cli
    from billing_pipelines.resources import BillingSettings

    for name, value in {"BILLING_HOME": settings.home, "BILLING_CONFIG": settings.config_dir,
                        "BILLING_LANDING": settings.landing, "DAGSTER_HOME": str(tmp_path / "dagster")}.items():
        monkeypatch.setenv(name, value)
    days = [f"2026-11-{d:02d}" for d in range(3, 10)]
    for i, day in enumerate(days):
        landing.jsonl(day, "a.jsonl", [event(f"r{i}", ts=f"{day}T01:00:00Z"), event("shared", ts=f"{day}T02:00:00Z")])
    cli.main(["ingest", f"{days[0]}..{days[-1]}"])
    landing.jsonl(days[0], "redelivered.jsonl", [event("r5", ts=f"{days[0]}T03:00:00Z")])
    cli.main(["ingest", days[0]])
    rebilled = DagsterInstance.get().fetch_materializations(AssetKey("billed_usage"), limit=100).records
    assert sorted(r.partition_key for r in rebilled if r.asset_materialization.description) == [days[5]]
    fresh = BillingSettings.from_env({"BILLING_HOME": str(tmp_path / "fresh"), "BILLING_CONFIG": settings.config_dir,
                                      "BILLING_LANDING": str(landing.root)})
    expected = run(fresh, *days)
    assert {d: summary_of(settings, date.fromisoformat(d)).to_json() for d in days} == expected
    assert expected[days[5]]["billed"] == 0 and expected[days[0]]["billed"] == 3
    assert billed(settings) == billed(fresh)


@pytest.mark.parametrize("name", ["events.jsonl", "events.jsonl.gz", "events.parquet", "strings.parquet"])
def test_every_input_format(settings, landing, name):
    rows = [event("a", model="frontier-large", action="complex", input_tokens=1000, output_tokens=2000),
            event("b", ts="2026-11-03T10:00:00.123456+02:00", action="document", input_tokens=2500, output_tokens=1)]
    if name.endswith(".parquet"):
        landing.parquet(D1, name, rows, ts_as_timestamp=name == "events.parquet")
    else:
        landing.jsonl(D1, name, rows)
    assert run(settings, D1)[D1]["billed"] == 2
    rows = billed(settings)
    # 1000 x 0.0030/1k + 2000 x 0.0150/1k, exact
    assert rows["a"]["cost_usd"] == Decimal("0.033") and rows["a"]["credits"] == 5
    assert rows["b"]["ts"] == datetime(2026, 11, 3, 8, 0, 0, 123456)
    assert rows["b"]["credits"] == 3  # document: ceil(2501 / 1000)


def test_parquet_bad_rows_are_quarantined_with_their_row_as_json(settings, landing):
    landing.parquet(D1, "p.parquet", [event("a"), event("b", model="gpt-x"), event("c", input_tokens=-3)])
    assert run(settings, D1)[D1]["quarantined"] == {"bad_type": 1, "unknown_model": 1}
    rows = table(settings, "quarantine", D1)
    assert [(r["line_no"], r["reason"]) for r in rows] == [(2, "unknown_model"), (3, "bad_type")]
    assert json.loads(rows[0]["raw"])["model"] == "gpt-x"


@pytest.mark.parametrize("ts, landed, utc_day", [
    ("2026-11-01T01:30:00+02:00", "2026-11-01", date(2026, 10, 31)),  # back into October
    ("2026-10-31T22:30:00-05:00", "2026-11-01", date(2026, 11, 1)),  # forward into November
])
def test_offsets_move_events_to_another_utc_day_and_month(settings, landing, ts, landed, utc_day):
    landing.jsonl(landed, "a.jsonl", [event("a", ts=ts)])
    run(settings, landed)
    assert billed(settings)["a"]["ts"].date() == utc_day


def test_rate_change_applies_from_its_effective_date(settings, landing):
    landing.jsonl("2026-11-15", "a.jsonl", [
        event("before", model="frontier-large", ts="2026-11-14T23:59:59Z", input_tokens=1000, output_tokens=0),
        event("after", model="frontier-large", ts="2026-11-15T00:00:00Z", input_tokens=1000, output_tokens=0),
    ])
    run(settings, "2026-11-15")
    rows = billed(settings)
    assert (rows["before"]["cost_usd"], rows["after"]["cost_usd"]) == (Decimal("0.003"), Decimal("0.0025"))


def test_a_cost_usd_that_is_not_a_decimal_is_ignored_not_a_reason(settings, landing):
    landing.jsonl(D1, "a.jsonl", [event("a", cost_usd="lots"), event("b", cost_usd=True), event("c", cost_usd="0.25"),
                                  event("d", cost_usd=0.5)])
    assert run(settings, D1)[D1]["billed"] == 4
    assert {r: e["reported_cost_usd"] for r, e in billed(settings).items()} == {"a": None, "b": None, "c": "0.25",
                                                                                "d": "0.5"}


@pytest.mark.parametrize("newest_first", [False, True])
@pytest.mark.parametrize("example, fixture", [(CONFORMANCE, "conformance_settings"),
                                              (CONFORMANCE_PLAN_CHANGES, "plan_changes_settings")])
def test_conformance_ingest_counts(example, fixture, request, newest_first):
    """In order, and newest date first (each earlier date then rebills the later ones it affects)."""
    settings = request.getfixturevalue(fixture)
    expected = json.loads((example / "expected.json").read_text())["ingest"]
    days = sorted(landing_dates(settings.landing_store()), reverse=newest_first)
    for day in days:
        ingest(settings, [day])
    got = {d.isoformat(): summary_of(settings, d).to_json() for d in days}
    assert got == expected


@pytest.mark.parametrize("org, ts, reason", [
    ("acme", "2026-11-02T23:59:59.999999Z", None),
    ("acme", "2026-11-03T01:30:00+02:00", None),  # 23:30 UTC the day before
    ("acme", "2026-11-03T00:00:00Z", "after_customer_end"),
    ("acme", "2026-11-05T00:00:00Z", "after_customer_end"),  # also in the future: after_customer_end comes first
    ("acme", "2026-09-30T23:59:59Z", "before_customer_start"),
    ("initech", "2026-10-31T23:59:59Z", "before_customer_start"),
    ("initech", "2026-11-01T00:00:00Z", None),
])
def test_events_from_the_cancellation_on_are_quarantined(settings, config_dir, landing, org, ts, reason):
    # acme (started 2026-10-01) cancels from 2026-11-03; globex (09-15) and initech (11-01) go on
    with (config_dir / "customers.yaml").open("a") as f:
        f.write("plan_changes:\n  - {org_id: acme, effective_from: 2026-11-03, plan: null}\n")
    others = [event("g", org="globex", ts="2026-11-03T10:00:00Z"), event("i", org="initech", ts="2026-11-03T10:00:00Z")]
    landing.jsonl(D1, "events.jsonl", [event("x", org=org, ts=ts), *others])
    summary = run(settings, D1)[D1]
    assert summary["quarantined"] == ({reason: 1} if reason else {})
    assert set(billed(settings)) == {"g", "i"} | (set() if reason else {"x"})


def test_customers_who_cancel_keep_their_own_start_and_end(settings, config_dir, landing):
    with (config_dir / "customers.yaml").open("a") as f:
        f.write("plan_changes:\n  - {org_id: initech, effective_from: 2026-11-04, plan: null}\n"
                "  - {org_id: acme, effective_from: 2026-11-03, plan: null}\n")
    rows = [event("i-early", org="initech", ts="2026-10-31T12:00:00Z"), event("i-on", org="initech"),
            event("i-ended", org="initech", ts="2026-11-04T00:00:00Z"), event("a-on", ts="2026-11-02T10:00:00Z"),
            event("a-ended"), event("g", org="globex", ts="2026-09-15T00:00:00Z")]
    landing.jsonl(D1, "events.jsonl", rows)
    run(settings, D1)
    reasons = {json.loads(q["raw"])["request_id"]: q["reason"] for q in table(settings, "quarantine", D1)}
    assert reasons == {"i-early": "before_customer_start", "i-ended": "after_customer_end",
                       "a-ended": "after_customer_end"}
    assert set(billed(settings)) == {"i-on", "a-on", "g"}


@pytest.mark.parametrize("name", ["big.jsonl", "big.jsonl.gz"])
def test_json_lines_read_block_by_block_keep_their_line_numbers(settings, landing, monkeypatch, name):
    from billing_pipelines.ingest import landing as landing_module

    monkeypatch.setattr(landing_module, "JSON_BLOCK_BYTES", 300)  # a block is one or two lines
    rows = [event(f"r{n}") if n % 7 else "" for n in range(1, 60)]
    rows[30] = "{bad"  # line 31
    rows.append(json.dumps(event("r1")))  # line 60: a duplicate of line 1
    landing.jsonl(D1, name, rows)
    summary = run(settings, D1)[D1]
    assert summary == {"landing_date": D1, "rows_read": 52, "billed": 50, "duplicates": 1,
                       "quarantined": {"malformed": 1}}
    assert [(r["line_no"], r["raw"]) for r in table(settings, "quarantine", D1)] == [(31, "{bad")]
    events = billed(settings)
    assert (events["r1"]["line_no"], events["r59"]["line_no"]) == (1, 59)


def test_ids_whose_hashes_collide_are_still_told_apart_within_a_date(settings, landing, monkeypatch):
    from billing_pipelines.ingest import pipeline

    # every id of the same length collides: only the exact comparison can tell them apart
    def same_length_same_hash(rid: str) -> Sql:
        return Sql(f"length({rid})::UBIGINT AS h1, 0::UBIGINT AS h2")

    monkeypatch.setattr(pipeline, "request_hash_sql", same_length_same_hash)
    landing.jsonl(D1, "a.jsonl", [event("aa"), event("bb"), event("aa"), event("cc")])
    assert run(settings, D1)[D1]["billed"] == 3
    assert sorted(billed(settings)) == ["aa", "bb", "cc"]


def test_a_duckdb_whose_hashes_differ_restages_every_date(settings, landing, monkeypatch):
    from billing_pipelines.ingest import pipeline

    landing.jsonl(D1, "a.jsonl", [event("a")])
    first = run(settings, D1)
    assert LandingZone(settings).is_staged(date.fromisoformat(D1))
    monkeypatch.setattr(pipeline, "hash_probe", lambda: "(1, 2)")  # as after a DuckDB upgrade
    assert not LandingZone(settings).is_staged(date.fromisoformat(D1))
    assert run(settings, D1) == first and LandingZone(settings).is_staged(date.fromisoformat(D1))


def test_a_landed_file_rewritten_in_place_is_never_read_against_its_old_prices(tmp_path, settings, landing):
    """The warehouse keeps a landed Parquet file as a hard link: a rewrite in place changes its copy
    too. Readers refuse the changed copy until the date is ingested again, then bill the new rows."""
    path = landing.parquet(D1, "p.parquet", [event("a"), event("b")])
    run(settings, D1)
    with open(path, "r+b") as rewrite:  # the same inode, as a producer re-exporting to the path does
        rewrite.truncate(0)
        rewrite.write(Landing(tmp_path / "new").parquet(D1, "p.parquet",
                                                        [event("c", input_tokens=7), event("a")]).read_bytes())
    with pytest.raises(WarehouseError, match=r"dt=2026-11-03.*p\.parquet.*billing ingest 2026-11-03"):
        billed(settings)
    ingest(settings, [date.fromisoformat(D1)])  # what the error says to do
    assert sorted(billed(settings)) == ["a", "c"]
    assert billed(settings)["c"]["input_tokens"] == 7
