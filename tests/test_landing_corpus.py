"""A landing zone as real sinks leave it, and arbitrary bytes as JSON lines: the DuckDB ingest and
the plain-Python reference (tests/reference_ingest.py) agree on every row, and every landed byte
is billed, a duplicate, quarantined with a reason, or in a listed skipped or unreadable file."""

from __future__ import annotations

import gzip
import json
import os
import tempfile
from collections import Counter
from contextlib import closing
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from billing_pipelines.config import load_config
from billing_pipelines.ingest.pipeline import PRICED, classify_files, ingest
from billing_pipelines.storage import duck
from billing_pipelines.storage.objects import Store
from tests.common import EXAMPLES, event
from tests.ingest_support import D1, D2, table
from tests.reference_ingest import load_landing

REASONS = {"malformed", "missing_field", "bad_type", "unknown_org", "unknown_model", "unknown_action", "no_rate",
           "before_customer_start", "after_customer_end", "future_timestamp"}


def _lines(*rows) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def _pandas_style(rows: list[dict]) -> pa.Table:
    """What pandas writes by default: ns timestamps with a time zone, categorical (dictionary)
    string columns, its index as a column and its schema metadata."""
    ns = [int(datetime.fromisoformat(r["ts"]).timestamp()) * 10**9 + 123_456_789 for r in rows]
    columns = {name: [r[name] for r in rows] for name in rows[0] if name != "ts"}
    table = pa.table({
        **columns,
        "org_id": pa.array(columns["org_id"]).dictionary_encode(),
        "model": pa.array(columns["model"]).dictionary_encode(),
        "ts": pa.array(ns, pa.timestamp("ns", "UTC")), "__index_level_0__": list(range(len(rows))),
    })
    return table.replace_schema_metadata({b"pandas": b'{"index_columns": ["__index_level_0__"]}'})


def land_corpus(root: Path, secret: Path) -> None:
    d1, d2 = root / f"dt={D1}", root / f"dt={D2}"
    files = {
        d1 / "firehose/usage-1-2026-11-03-10-00-00-0a1b": _lines(event("f1"), event("f2"), "{not json", event("f1")),
        d1 / "firehose/usage-1-2026-11-03-10-05-00-2c3d": gzip.compress(_lines(event("f3"), event("f4", org="hooli"))),
        d1 / "connect/topics/usage/partition=0/usage+0+0000000000.json": _lines(event("k1"), "",
                                                                                event("k2", cost_usd=0.5)),
        d1 / "windows-export.jsonl": b"\xef\xbb\xbf" + _lines(event("w1")).replace(b"\n", b"\r\n") + b"   \r\n"
        + json.dumps(event("w2")).encode()[:-1] + b", }\r\n",
        d1 / "spark/_SUCCESS": b"",
        d1 / "spark/.part-00000-7f.snappy.parquet.crc": b"crc\x00\x01",
        d1 / "spark/_temporary/0/part-00001-7f.snappy.parquet": b"PAR1 half written",
        d1 / "broken.jsonl.gz": gzip.compress(_lines(event("lost")))[:-12],
        d2 / "gateway/part-000.jsonl": _lines(event("f2", ts="2026-11-04T01:00:00Z"),
                                              event("g1", ts="2026-11-04T02:00:00Z"),
                                              json.dumps(event("g2"))[:-1] + ', "x": NaN}'),
    }
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    pandas_rows = [event("p1"), event("p2", org="globex"), event("f3"), event("p3", input_tokens=-1)]
    pq.write_table(_pandas_style(pandas_rows), d1 / "spark/part-00000-7f.snappy.parquet")
    os.symlink(secret, d1 / "firehose/usage-link")


def _rows_by_key(settings, day: str) -> Counter:
    """Rows the ingest counted per landed file: its priced rows (billed or duplicates) and its
    quarantined rows."""
    wh = settings.warehouse()
    files = wh.manifest(PRICED, f"dt={day}")["meta"]["files"]
    counted = Counter(files[r["file_idx"]] for r in table(settings, "priced_events", day))
    return counted + Counter(r["key"] for r in table(settings, "quarantine", day))


def _expected_rows(root: Path, key: str) -> int:
    """Rows a readable landed file holds, counted from its bytes."""
    data = (root / key).read_bytes()
    if data.startswith(b"PAR1"):
        return pq.read_metadata(root / key).num_rows
    text = (gzip.decompress(data) if data.startswith(b"\x1f\x8b") else data).removeprefix(b"\xef\xbb\xbf")
    return sum(1 for line in text.split(b"\n") if line.strip(b" \t\r"))


def test_a_sink_written_landing_zone_is_billed_to_the_last_byte(settings, landing, tmp_path):
    secret = tmp_path / "secret.jsonl"
    secret.write_text(json.dumps(event("secret")) + "\n")
    land_corpus(landing.root, secret)
    got = {s.landing_date: s.to_json() for s in ingest(settings, [date.fromisoformat(D1), date.fromisoformat(D2)])}
    reference = load_landing(landing.root, settings.billing_config())
    for day in (D1, D2):
        summary, expected = got[day], reference.counts(date.fromisoformat(day))
        assert summary["rows_read"] == summary["billed"] + summary["duplicates"] + sum(summary["quarantined"].values())
        keys_only = {name: [{"key": f["key"]} for f in summary.get(name, [])] for name in ("unreadable_files",
                                                                                           "skipped_files")}
        assert {**summary, **{n: v for n, v in keys_only.items() if v}} == expected
        listed = {f.key for f in Store(landing.root).list(f"dt={day}")}
        not_read = {f["key"] for name in keys_only for f in summary.get(name, [])}
        counted = _rows_by_key(settings, day)
        assert set(counted) | not_read <= listed and not set(counted) & not_read
        assert {key: counted[key] for key in listed - not_read} == {key: _expected_rows(landing.root, key)
                                                                   for key in listed - not_read}
    assert got[D1]["quarantined"] == {"bad_type": 1, "malformed": 2, "unknown_org": 1}
    assert [f["key"] for f in got[D1]["unreadable_files"]] == [f"dt={D1}/broken.jsonl.gz"]
    assert len(got[D1]["skipped_files"]) == 4 and got[D2]["duplicates"] == 1


CONFIG = load_config(EXAMPLES)
GOOD = event("r")


VALUES = st.one_of(
    st.text(max_size=8), st.integers(min_value=-2, max_value=2**64), st.floats(),
    st.sampled_from(["acme", "globex", "small-fast", "document", "2026-11-03T10:00:00Z", "2026-11-03t23:59:59.9999999z",
                     "2026-11-03T24:00:00Z", "2026-11-03T10:00:00+23:59", "2026-11-03T10:00:00+14:60", None, True,
                     [1, {"a": 1}], {"b": [2]}]))
LENIENT = ["NaN", "-Infinity", "inf", "[1,]", '{"a": 1,}', '{"a": 1, "a": 2}', "[NaN]"]  # DuckDB reads these


@st.composite
def json_line(draw) -> bytes:
    """A JSON-lines line: arbitrary bytes, or an event with its values, keys and punctuation
    changed in the ways producers get them wrong (a key twice, a trailing comma, NaN, a cut)."""
    if draw(st.integers(0, 3)) == 0:
        return draw(st.binary(max_size=80)).replace(b"\n", b"")
    row = dict(GOOD, **draw(st.dictionaries(st.sampled_from([*GOOD, "cost_usd", "extra"]), VALUES, max_size=2)))
    for name in draw(st.lists(st.sampled_from(list(row)), max_size=1)):
        row.pop(name, None)
    members = [*row.items(), *draw(st.lists(st.tuples(st.sampled_from([*GOOD, "extra"]), VALUES), max_size=1))]
    texts = [(k, draw(st.sampled_from(LENIENT)) if draw(st.integers(0, 40)) == 0 else json.dumps(v)) for k,
             v in members]
    comma, colon = draw(st.sampled_from([(",", ":"), (", ", ": ")]))
    trailing = comma if draw(st.integers(0, 9)) == 0 else ""
    text = ("{" + comma.join(f"{json.dumps(k)}{colon}{v}" for k, v in texts) + trailing + "}").encode()
    return text[:draw(st.integers(0, len(text)))] if draw(st.integers(0, 9)) == 0 else text


@pytest.fixture(scope="module")
def con():
    with closing(duck.connect()) as connection:
        yield connection


@hypothesis_settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                            HealthCheck.function_scoped_fixture])
@given(lines=st.lists(json_line(), min_size=5, max_size=30))
def test_every_line_gets_one_spec_reason_or_is_valid_as_the_reference_says(con, lines):
    with tempfile.TemporaryDirectory() as root:
        path = Path(root, f"dt={D1}", "fuzz.jsonl")
        path.parent.mkdir()
        path.write_bytes(b"\n".join(lines))
        store = Store(root)
        classify_files(con, CONFIG, store, store.list(""), date.fromisoformat(D1))
        reasons = dict(con.execute("SELECT line_no, reason FROM classified").fetchall())
        first = con.execute("SELECT request_id, cost_usd, credits FROM classified WHERE first_in_date").fetchall()
        reference = load_landing(Path(root), CONFIG)
    assert set(reasons.values()) <= REASONS | {None}
    assert len(reasons) == reference.rows_read[date.fromisoformat(D1)]
    assert {n: r for n, r in reasons.items() if r is not None} == {q[2]: q[4] for q in reference.quarantine}
    assert sorted(first) == sorted((e["request_id"], e["cost_usd"], e["credits"]) for e in reference.billed)
