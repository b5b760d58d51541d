"""Hostile and messy landing zones (issue 15, ingest findings 1, 6, 7, 8 and 10), as an attacker and
a careless operator leave them: every date is still ingested, nothing from a file reaches SQL as
text, nothing outside the landing zone is read, and the rules of SPEC §1.1-1.2 hold to the letter."""

from __future__ import annotations

import gzip
import json
import os
from datetime import date, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from billing_pipelines import cli
from tests.common import event
from tests.ingest_support import D1, D2, billed, run, table

SECRET = "the text of a file outside the landing zone"


def columns(*rows: dict) -> dict[str, list]:
    return {name: [r[name] for r in rows] for name in rows[0]}


def write_parquet(path, table: pa.Table) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "system-file"
    path.write_text(SECRET)
    return path


# Finding 1: SQL injection through a Parquet column name.

def test_a_parquet_column_name_never_reaches_sql(settings, landing, tmp_path, secret_file, monkeypatch):
    monkeypatch.chdir(tmp_path)
    names = [f"a\" := (SELECT content FROM read_text('{secret_file}'))/*",
             "*/*/ ))::VARCHAR FROM (SELECT 0 AS file_row_number) t; COPY (SELECT 42 AS pwned) TO 'pwned.csv'\n--"]
    hostile = event("r", org="hooli")
    write_parquet(landing.path(D1, "x.parquet"), pa.table({names[0]: ["x"], names[1]: ["y"], **columns(hostile)}))
    assert run(settings, D1)[D1]["quarantined"] == {"unknown_org": 1}
    assert not list(tmp_path.rglob("pwned.csv"))
    [row] = table(settings, "quarantine", D1)
    assert SECRET not in row["raw"] and json.loads(row["raw"]) == {names[0]: "x", names[1]: "y", **hostile}


def test_a_column_name_with_a_quote_is_just_a_name(settings, landing):
    write_parquet(landing.path(D1, "x.parquet"), pa.table({'a"b': ["x"], **columns(event("r", org="hooli"))}))
    assert run(settings, D1)[D1]["quarantined"] == {"unknown_org": 1}
    assert json.loads(table(settings, "quarantine", D1)[0]["raw"])['a"b'] == "x"


# Finding 6: one file failed a whole date, often without naming it.

def test_pandas_timestamps_in_nanoseconds_are_billed_truncated_to_microseconds(settings, landing):
    ten = 1793700000 * 10**9  # 2026-11-03T10:00:00Z
    rows = {**columns(event("a"), event("b")),
            "ts": pa.array([ten + 123456789, ten + 999999999], pa.timestamp("ns", "UTC"))}
    write_parquet(landing.path(D1, "p.parquet"), pa.table(rows))
    assert run(settings, D1)[D1]["billed"] == 2
    assert [e["ts"] for e in billed(settings).values()] == [datetime(2026, 11, 3, 10, 0, 0, 123456),
                                                             datetime(2026, 11, 3, 10, 0, 0, 999999)]


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_a_timestamp_with_a_time_zone_of_any_unit_is_accepted_and_one_without_is_a_bad_type(settings, landing, unit):
    rows = columns(event("a"), event("b"))
    write_parquet(landing.path(D1, "aware.parquet"), pa.table(
        {**rows, "ts": pa.array([datetime(2026, 11, 3, 10)] * 2, pa.timestamp(unit, "Europe/Paris"))}))
    write_parquet(landing.path(D1, "naive.parquet"), pa.table(
        {**columns(event("c")), "ts": pa.array([datetime(2026, 11, 3, 10)], pa.timestamp(unit))}))
    assert run(settings, D1)[D1] == {"landing_date": D1, "rows_read": 3, "billed": 2, "duplicates": 0,
                                     "quarantined": {"bad_type": 1}}
    assert billed(settings)["a"]["ts"] == datetime(2026, 11, 3, 10)  # stored as UTC instants by pyarrow


def test_integers_of_any_width_and_dictionary_strings_are_read(settings, landing):
    rows = columns(event("a"), event("b", org="globex"), event("c"))
    table_ = pa.table({**rows, "org_id": pa.array(rows["org_id"]).dictionary_encode(),
                       "model": pa.array(rows["model"]).dictionary_encode(),
                       "input_tokens": pa.array([1, 2, 3], pa.uint8()),
                       "output_tokens": pa.array([4, 5, 6], pa.int16()),
                       "latency_ms": pa.array([7, 8, 2**64 - 1], pa.uint64())})
    write_parquet(landing.path(D1, "p.parquet"), table_)
    assert run(settings, D1)[D1]["quarantined"] == {"bad_type": 1}  # 2^64 - 1 is no 64-bit integer
    events = billed(settings)
    assert (events["b"]["org_id"], events["b"]["input_tokens"], events["b"]["latency_ms"]) == ("globex", 2, 8)


def test_a_column_named_file_row_number_is_just_an_extra_field(settings, landing):
    write_parquet(landing.path(D1, "p.parquet"),
                  pa.table({"file_row_number": [70, 80], **columns(event("a"), event("b"))}))
    assert run(settings, D1)[D1]["billed"] == 2
    assert [(e["request_id"], e["line_no"]) for e in billed(settings).values()] == [("a", 1), ("b", 2)]


def test_huge_token_counts_are_priced_exactly(settings, landing):
    landing.jsonl(D1, "a.jsonl", [event("a", action="document", input_tokens=2**63 - 1, output_tokens=2**63 - 1)])
    assert run(settings, D1)[D1]["billed"] == 1
    assert billed(settings)["a"]["credits"] == -(-(2**64 - 2) // 1000)


def test_a_cost_or_credits_too_large_to_hold_is_a_bad_type(settings, landing, config_dir):
    book = config_dir / "pricebook.yaml"
    book.write_text(book.read_text().replace("actions:\n", "actions:\n  - action: per-token\n    credits: 1\n"
                                             "    tokens_per_credit: 1\n")
                    .replace("models:\n", "models:\n  - model: priceless\n    effective_from: 2026-01-01\n"
                                          "    input_usd_per_1k: \"9000000000\"\n"
                                          "    output_usd_per_1k: \"9000000000\"\n"))
    big = 2**63 - 1
    landing.jsonl(D1, "a.jsonl", [event("credits", action="per-token", input_tokens=big, output_tokens=1),
                                  event("cost", model="priceless", input_tokens=big, output_tokens=big),
                                  event("fits", action="per-token", input_tokens=big - 1, output_tokens=1)])
    assert run(settings, D1)[D1]["quarantined"] == {"bad_type": 2}
    assert billed(settings)["fits"]["credits"] == big


def test_two_columns_of_one_name_make_an_unreadable_file_and_the_rest_is_billed(settings, landing):
    good = columns(event("a"))
    write_parquet(landing.path(D1, "twice.parquet"), pa.table([*good.values(), ["x"]], names=[*good, "org_id"]))
    landing.jsonl(D1, "z.jsonl", [event("b")])
    summary = run(settings, D1)[D1]
    assert (summary["rows_read"], summary["billed"]) == (1, 1)
    assert summary["unreadable_files"] == [{"key": f"dt={D1}/twice.parquet",
                                            "error": "not a readable Parquet file: column 'org_id' twice"}]


# Finding 7: one stray file failed every ingest.

def test_stray_files_and_sink_markers_fail_no_ingest(settings, landing):
    landing.jsonl(D1, "a.jsonl", [event("a")])
    landing.path(D1, "notes.txt").write_text("remember to bill acme\n")
    landing.jsonl(D1, "UPPER.JSONL", [event("b")])
    landing.jsonl(D1, "firehose-1-2026-11-03-10-00-00-abc", [event("c")])
    landing.path(D1, "firehose-2").write_bytes(gzip.compress(json.dumps(event("d")).encode() + b"\n"))
    write_parquet(landing.path(D1, "spark/part-00000-x.snappy"), pa.table(columns(event("e"))))
    landing.jsonl(D1, "kafka/topic+0+0000.json", [event("f")])
    for marker in ("_SUCCESS", "spark/.part-00000-x.snappy.crc", "spark/part-00001.crc", ".DS_Store",
                   "_temporary/0/part-00002.json"):
        landing.path(D1, marker).write_bytes(b"\x00 not events")
    summary = run(settings, D1)[D1]
    assert (summary["rows_read"], summary["billed"], summary["quarantined"]) == (7, 6, {"malformed": 1})
    assert sorted(billed(settings)) == ["a", "b", "c", "d", "e", "f"]
    assert table(settings, "quarantine", D1)[0]["raw"] == "remember to bill acme"
    assert [f["key"] for f in summary["skipped_files"]] == [
        f"dt={D1}/.DS_Store", f"dt={D1}/_SUCCESS", f"dt={D1}/_temporary/0/part-00002.json",
        f"dt={D1}/spark/.part-00000-x.snappy.crc", f"dt={D1}/spark/part-00001.crc"]
    assert {f["reason"] for f in summary["skipped_files"]} == {"sink marker or hidden file"}


def test_a_byte_order_mark_is_not_part_of_the_first_line(settings, landing):
    landing.path(D1, "a.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps(event("a")).encode() + b"\r\n")
    landing.path(D1, "b.jsonl.gz").write_bytes(gzip.compress(b"\xef\xbb\xbf" + json.dumps(event("b")).encode()))
    assert run(settings, D1)[D1]["billed"] == 2


# Finding 8: symbolic links were followed out of the landing zone.

def test_symbolic_links_are_skipped_and_listed_never_followed(settings, landing, secret_file, tmp_path):
    landing.jsonl(D1, "a.jsonl", [event("a")])
    os.symlink(secret_file, landing.path(D1, "link.jsonl"))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "b.jsonl").write_text(json.dumps(event("b")) + "\n" + SECRET + "\n")
    os.symlink(outside, landing.path(D1, "folder"))
    os.symlink(tmp_path / "nowhere", landing.path(D1, "dangling.jsonl"))
    summary = run(settings, D1)[D1]
    assert (summary["rows_read"], summary["billed"]) == (1, 1)
    assert summary["skipped_files"] == [{"key": f"dt={D1}/{name}", "reason": "symbolic link: not followed"}
                                        for name in ("dangling.jsonl", "folder", "link.jsonl")]
    assert table(settings, "quarantine", D1) == []


# Finding 10: lenient parsing.

@pytest.mark.parametrize("line, reason", [
    (json.dumps(event("r"))[:-1] + ",}", "malformed"),                                   # trailing comma
    (json.dumps(event("r"))[:-1] + ' , \t}  ', "malformed"),
    (json.dumps(event("r", extra=[1, 2])).replace("2]", "2,]"), "malformed"),
    (json.dumps(event("r", extra={"a": 1})).replace("1}", "1,}"), "malformed"),
    (json.dumps(event("r"))[:-1] + ', "org_id": "hooli"}', "malformed"),                 # a key twice
    (json.dumps(event("r"))[:-1] + ', "x": 1, "x": 1}', "malformed"),
    (json.dumps(event("r", extra={"a": 1})).replace('"a": 1', '"a": 1, "a": 2'), "malformed"),
    (json.dumps(event("r"))[:-1] + ', "x": NaN}', "malformed"),                          # NaN, Infinity
    (json.dumps(event("r"))[:-1] + ', "cost_usd": -Infinity}', "malformed"),
    (json.dumps(event("r", extra=[1.5])).replace("1.5", "inf"), "malformed"),
    (json.dumps(event("r")).replace('"latency_ms": 10', '"latency_ms": NaN'), "malformed"),
    (json.dumps(event("r", ts="2026-11-03T24:00:00Z")), "bad_type"),                     # not RFC 3339
    (json.dumps(event("r", ts="2026-11-03T10:00:60Z")), "bad_type"),
    (json.dumps(event("r", ts="2026-11-03T10:00:00+24:00")), "bad_type"),
    (json.dumps(event("r", ts="2026-11-03T10:00:00+14:60")), "bad_type"),
    (json.dumps(event("r", ts="2026-11-03T10:00Z")), "bad_type"),
    (json.dumps(event("r", ts="2026-11-03 10:00:00Z")), "bad_type"),
    (json.dumps(event("r", ts="2026-11-03T10:00:00.Z")), "bad_type"),
    (json.dumps(event("r", ts="2026-11-03T10:00:00+0200")), "bad_type"),
    (json.dumps(event("r", ts="２０２６-11-03T10:00:00Z")), "bad_type"),                 # digits, but not ASCII
    (json.dumps(event("r", ts="0000-12-31T23:00:00-02:00")), "bad_type"),                # years 0001-9999
    (json.dumps(event("r", ts="0001-01-01T00:30:00+01:00")), "bad_type"),
])
def test_strict_json_and_rfc3339(settings, landing, line, reason):
    landing.jsonl(D1, "a.jsonl", [event("ok"), line])
    assert run(settings, D1)[D1]["quarantined"] == {reason: 1}


@pytest.mark.parametrize("ts, utc", [
    ("2026-11-03t10:15:00z", datetime(2026, 11, 3, 10, 15)),
    ("2026-11-03T10:15:00z", datetime(2026, 11, 3, 10, 15)),
    ("2026-11-03t12:15:00+02:00", datetime(2026, 11, 3, 10, 15)),
    ("2026-11-03T10:15:00.9999999Z", datetime(2026, 11, 3, 10, 15, 0, 999999)),          # truncated, not rounded
    ("2026-11-03T10:15:00.1234565-00:00", datetime(2026, 11, 3, 10, 15, 0, 123456)),
    ("2026-11-03T00:00:00-23:59", datetime(2026, 11, 3, 23, 59)),                       # offsets up to 23:59
    ("2026-11-03T23:59:00+23:59", datetime(2026, 11, 3)),
])
def test_rfc3339_in_either_case_and_fractions_truncated(settings, landing, ts, utc):
    landing.jsonl(D1, "a.jsonl", [event("a", ts=ts)])
    assert run(settings, D1)[D1]["billed"] == 1
    assert billed(settings)["a"]["ts"] == utc


def test_strict_lines_with_extras_floats_and_commas_in_strings_are_billed(settings, landing):
    landing.jsonl(D1, "a.jsonl", [
        event("a", user_id="x, y}", cost_usd=0.125),
        event("b", extra={"nested": [1, {"deep": None}]}, more="text,}", cost_usd=1e-3),
        event("c", NaN="Infinity", trace_id="t-1"),
    ])
    assert run(settings, D1)[D1]["billed"] == 3


# Unreadable files (SPEC §1.1, §6).

def _corrupt_parquet_data(path) -> None:
    """Flip bytes inside the first data page: the footer still reads, the data does not."""
    data = bytearray(path.read_bytes())
    for n in range(200, 260):
        data[n] ^= 0x5A
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name, damage", [
    ("bad.jsonl.gz", lambda p: p.write_bytes(p.read_bytes()[:-100])),                   # truncated
    ("bad.jsonl.gz", lambda p: p.write_bytes(b"\x1f\x8b not gzip")),
    ("bad-firehose", lambda p: p.write_bytes(b"\x1f\x8b not gzip either")),
    ("bad.parquet", lambda p: p.write_bytes(b"PAR1 nope")),
    ("bad.parquet", _corrupt_parquet_data),
])
def test_an_unreadable_file_is_shown_and_the_rest_billed_until_it_is_replaced(settings, landing, name, damage):
    rows = [event(f"r{n}", user_id="u" * 40) for n in range(400)]
    path = landing.path(D1, name)
    landing.jsonl(D1, "a.jsonl", [event("a")])
    landing.jsonl(D2, "b.jsonl", [event("b"), event("r1")])
    write_parquet(path, pa.table(columns(*rows))) if name.endswith(".parquet") else landing.jsonl(D1, name, rows)
    damage(path)
    summary = run(settings, D1, D2)
    assert (summary[D1]["rows_read"], summary[D1]["billed"]) == (1, 1)
    [unreadable] = summary[D1]["unreadable_files"]
    assert unreadable["key"] == f"dt={D1}/{name}" and unreadable["error"].startswith("not a readable")
    assert summary[D2]["billed"] == 2 and "unreadable_files" not in summary[D2]
    path.unlink()
    landing.jsonl(D1, name, rows) if not name.endswith(".parquet") else write_parquet(path, pa.table(columns(*rows)))
    summary = run(settings, D1)
    assert summary[D1]["billed"] == 401 and "unreadable_files" not in summary[D1]
    assert run(settings, D2)[D2]["duplicates"] == 1  # r1 is billed on D1 now


@pytest.fixture
def cli_env(settings, tmp_path, monkeypatch):
    for name, value in {"BILLING_HOME": settings.home, "BILLING_CONFIG": settings.config_dir,
                        "BILLING_LANDING": settings.landing, "DAGSTER_HOME": str(tmp_path / "dagster")}.items():
        monkeypatch.setenv(name, value)


def test_billing_ingest_shows_unreadable_files_and_exits_3(cli_env, settings, landing, capsys):
    from dagster import AssetCheckKey, AssetKey, DagsterInstance

    landing.jsonl(D1, "a.jsonl", [event("a")])
    landing.path(D1, "b.parquet").write_bytes(b"PAR1 nope")
    landing.jsonl(D2, "a.jsonl", [event("b")])
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["ingest", f"{D1}..{D2}", "--format", "json"])
    assert exit_status.value.code == 3
    out, err = capsys.readouterr()
    first, second = json.loads(out)
    assert [f["key"] for f in first["unreadable_files"]] == [f"dt={D1}/b.parquet"] and "unreadable_files" not in second
    assert f"dt={D1}/b.parquet is unreadable" in err and f"billing ingest {D1}" in err
    history = DagsterInstance.get().event_log_storage.get_asset_check_execution_history
    statuses = {name: [r.status.value for r in history(AssetCheckKey(AssetKey("billed_usage"), name), limit=5)
                       if r.status.value != "PLANNED"] for name in ("files_readable", "rows_balance")}
    assert statuses == {"files_readable": ["SUCCEEDED", "FAILED"], "rows_balance": ["SUCCEEDED", "SUCCEEDED"]}


def test_billing_ingest_exits_1_when_a_date_cannot_be_ingested_and_prints_the_others(cli_env, landing, capsys,
                                                                                   monkeypatch):
    from billing_pipelines.ingest import assets
    from billing_pipelines.ingest.landing import LandingError

    landing.jsonl(D1, "a.jsonl", [event("a")])
    landing.jsonl(D2, "a.jsonl", [event("b")])
    real_bill = assets.bill

    def bill(zone, day):
        if day == date.fromisoformat(D2):
            raise LandingError(f"dt={D2}/a.jsonl: cannot be read (Permission denied); check its permissions and "
                               f"the storage, then run `billing ingest {D2}` again")
        return real_bill(zone, day)

    monkeypatch.setattr(assets, "bill", bill)
    with pytest.raises(SystemExit) as exit_status:
        cli.main(["ingest", D1, D2])
    assert f"dt={D2}/a.jsonl: cannot be read (Permission denied)" in str(exit_status.value.code)
    assert capsys.readouterr().out.startswith(f"{D1}: 1 read, 1 billed")


def test_the_rows_of_a_gzip_file_found_corrupt_midway_are_not_read(settings, landing, monkeypatch):
    from billing_pipelines.ingest import landing as landing_module

    monkeypatch.setattr(landing_module, "JSON_BLOCK_BYTES", 300)  # blocks of a few lines are read before the damage
    path = landing.jsonl(D1, "a.jsonl.gz", [event(f"r{n}") for n in range(200)])
    path.write_bytes(path.read_bytes()[:-50])
    landing.jsonl(D1, "b.jsonl", [event("b")])
    summary = run(settings, D1)[D1]
    assert (summary["rows_read"], summary["billed"], len(summary["unreadable_files"])) == (1, 1, 1)


def test_the_live_micro_batch_follows_no_link_and_leaves_no_landing_zone(settings, landing, secret_file):
    from billing_pipelines.balances.live import landed_file
    from billing_pipelines.ingest.landing import LandingError
    from billing_pipelines.storage.objects import Store

    landing.jsonl(D1, "a.jsonl", [event("a")])
    os.symlink(secret_file, landing.path(D1, "link.jsonl"))
    store = Store(landing.root)
    assert landed_file(store, f"dt={D1}/link.jsonl")[0].link
    assert not landed_file(store, f"dt={D1}/a.jsonl")[0].link
    with pytest.raises(LandingError, match="no such file"):
        landed_file(store, f"dt={D1}/../../{secret_file.name}")


def test_file_names_with_quotes_are_keys_not_sql(settings, landing):
    landing.jsonl(D1, "it's \"quoted\"; DROP.jsonl", [event("a"), "{bad"])
    write_parquet(landing.path(D1, "o'neil.parquet"), pa.table(columns(event("b"), event("c", org="hooli"))))
    assert run(settings, D1)[D1]["billed"] == 2
    assert {e["key"] for e in billed(settings).values()} == {f"dt={D1}/it's \"quoted\"; DROP.jsonl",
                                                             f"dt={D1}/o'neil.parquet"}
    assert len(table(settings, "quarantine", D1)) == 2
