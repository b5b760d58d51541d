"""The reference ingest (the oracle for the DuckDB ingest) on hand-made landing zones: every
quarantine reason of SPEC §1.2 in its order, deduplication in (landing date, key bytes, line)
order, and pricing (SPEC §1.4)."""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from datetime import date, datetime
from decimal import Decimal

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from billing_pipelines.config import ActionTier, ModelRate, PlanChange
from tests.ledger_helpers import PRICE_BOOK, config, plan
from tests.reference_ingest import load_landing

BOOK = replace(
    PRICE_BOOK,
    models=PRICE_BOOK.models + (ModelRate("future", date(2027, 1, 1), Decimal("0.001"), Decimal("0.002")),),
    actions=PRICE_BOOK.actions + (ActionTier("document", 1, 1000),),
)
CONFIG = replace(config(plan(), start="2026-11-02"), price_book=BOOK)
GOOD = {
    "request_id": "r1", "org_id": "acme", "user_id": "u", "ts": "2026-11-03T10:15:00Z",
    "model": "big", "action": "simple", "input_tokens": 1000, "output_tokens": 200, "latency_ms": 5,
}


def land(root, day: str, name: str, *rows, gz: bool = False):
    path = root / f"dt={day}" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n"
    path.write_bytes(gzip.compress(text.encode()) if gz else text.encode())


def reason_of(tmp_path, raw, cfg=CONFIG) -> str | None:
    land(tmp_path, "2026-11-03", "e.jsonl", raw)
    result = load_landing(tmp_path, cfg)
    return result.quarantine[0][4] if result.quarantine else None


def event(**changes) -> dict:
    row = dict(GOOD, **changes)
    return {k: v for k, v in row.items() if v is not ...}


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ('{"broken', "malformed"),
        ("[1, 2]", "malformed"),
        ('{"request_id": NaN}', "malformed"),
        (event(user_id=...), "missing_field"),
        (event(model=None, org_id="nobody"), "missing_field"),
        (event(input_tokens="12"), "bad_type"),
        (event(output_tokens=1.0), "bad_type"),
        (event(latency_ms=True), "bad_type"),
        (event(input_tokens=-1), "bad_type"),
        (event(input_tokens=2**63), "bad_type"),
        (event(request_id=""), "bad_type"),
        (event(request_id="x" * 201), "bad_type"),
        (event(org_id=5), "bad_type"),
        (event(ts="2026-11-03T10:15:00"), "bad_type"),
        (event(ts="2026-11-03"), "bad_type"),
        (event(ts="2026-02-30T10:15:00Z"), "bad_type"),
        (event(ts=1700000000), "bad_type"),
        (event(cost_usd="abc"), None),                       # never a reason (SPEC §1.1)
        (event(cost_usd=True), None),
        (event(org_id="nobody", model="gpt-x"), "unknown_org"),
        (event(model="gpt-x", action="dance"), "unknown_model"),
        (event(action="dance", model="future"), "unknown_action"),
        (event(model="future", ts="2026-11-01T10:00:00Z"), "no_rate"),
        (event(ts="2026-11-01T23:59:59Z"), "before_customer_start"),
        (event(ts="2026-11-05T00:00:00Z"), "future_timestamp"),
        (event(ts="2026-11-05T01:30:00+02:00"), None),          # 2026-11-04T23:30Z
        (event(ts="2026-11-04T23:59:59.999999Z"), None),
        (event(request_id="x" * 200, cost_usd="0.5", extra={"a": 1}), None),
        (event(cost_usd=None), None),
    ],
)
def test_quarantine_reasons_in_spec_order(tmp_path, raw, reason):
    assert reason_of(tmp_path, raw) == reason


CANCELLED = replace(CONFIG, plan_changes=(PlanChange("acme", date(2026, 11, 4), None),))


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (event(ts="2026-11-03T23:59:59.999999Z"), None),
        (event(ts="2026-11-04T01:00:00+02:00"), None),           # 2026-11-03T23:00Z
        (event(ts="2026-11-04T00:00:00Z"), "after_customer_end"),
        (event(ts="2026-11-05T00:00:00Z"), "after_customer_end"),  # before future_timestamp
        (event(ts="2026-11-01T23:59:59Z"), "before_customer_start"),
        (event(model="future", ts="2026-11-04T10:00:00Z"), "no_rate"),
    ],
)
def test_after_the_cancellation_in_spec_order(tmp_path, raw, reason):
    assert reason_of(tmp_path, raw, CANCELLED) == reason


def test_rows_are_priced_exactly(tmp_path):
    land(tmp_path, "2026-11-03", "e.jsonl",
         event(ts="2026-11-03T12:15:00.1234567+02:00", action="document", input_tokens=1500, output_tokens=1))
    (row,) = load_landing(tmp_path, CONFIG).billed
    assert row["ts"] == datetime(2026, 11, 3, 10, 15, 0, 123456)
    assert row["credits"] == 2                       # ceil(1501 / 1000)
    assert row["cost_usd"] == Decimal("0.004515")    # 1500 x 0.003/1000 + 1 x 0.015/1000
    assert row["landing_date"] == date(2026, 11, 3)


def test_first_occurrence_in_landing_date_key_byte_and_line_order_is_billed(tmp_path):
    land(tmp_path, "2026-11-03", "a.jsonl", event(request_id="r1", user_id="a-line1"))
    land(tmp_path, "2026-11-03", "B.jsonl", "", event(request_id="r1", user_id="B-line2"),
         event(request_id="r1", user_id="B-line3"))
    land(tmp_path, "2026-11-03", "sub/x.jsonl.gz", event(request_id="r2", user_id="sub"), gz=True)
    land(tmp_path, "2026-11-03", "z.jsonl", event(request_id="r2", user_id="z"))
    land(tmp_path, "2026-11-04", "0.jsonl", event(request_id="r1", user_id="next day"))
    result = load_landing(tmp_path, CONFIG)
    assert [(e["request_id"], e["user_id"]) for e in result.billed] == [("r1", "B-line2"), ("r2", "sub")]
    assert [d[1:3] for d in result.duplicates] == [
        ("dt=2026-11-03/B.jsonl", 3), ("dt=2026-11-03/a.jsonl", 1), ("dt=2026-11-03/z.jsonl", 1),
        ("dt=2026-11-04/0.jsonl", 1),
    ]
    assert result.counts(date(2026, 11, 3)) == {
        "landing_date": "2026-11-03", "rows_read": 5, "billed": 2, "duplicates": 3, "quarantined": {},
    }


def test_a_quarantined_row_is_never_a_duplicates_original(tmp_path):
    land(tmp_path, "2026-11-03", "e.jsonl", event(model="gpt-x"), event(user_id="valid"))
    result = load_landing(tmp_path, CONFIG)
    assert [e["user_id"] for e in result.billed] == ["valid"]
    assert result.duplicates == []
    assert result.quarantine[0][1:3] == ("dt=2026-11-03/e.jsonl", 1)
    assert result.counts(date(2026, 11, 3))["quarantined"] == {"unknown_model": 1}


def test_billed_frame_has_the_ledger_schema(tmp_path):
    land(tmp_path, "2026-11-03", "e.jsonl", event())
    frame = load_landing(tmp_path, CONFIG).frame()
    assert frame.height == 1 and str(frame.schema["cost_usd"]) == "Decimal(precision=38, scale=12)"


def test_parquet_rows_keep_their_column_types(tmp_path):
    utc_ts = pa.array([datetime(2026, 11, 3, 10), datetime(2026, 11, 3, 11)], pa.timestamp("us", "UTC"))
    rows = {k: [v, v] for k, v in GOOD.items() if k != "ts"}
    rows["request_id"] = ["p1", "p2"]
    table = pa.table({**rows, "ts": utc_ts})
    folder = tmp_path / "dt=2026-11-03"
    folder.mkdir()
    pq.write_table(table, folder / "a.parquet")
    naive = table.set_column(table.schema.get_field_index("ts"), "ts",
                             pa.array([datetime(2026, 11, 3, 10)] * 2, pa.timestamp("us")))
    pq.write_table(naive.set_column(0, "request_id", pa.array(["p3", "p4"])), folder / "b.parquet")
    floats = table.set_column(table.schema.get_field_index("input_tokens"), "input_tokens", pa.array([1.0, 2.0]))
    pq.write_table(floats.set_column(0, "request_id", pa.array(["p5", "p6"])), folder / "c.parquet")
    result = load_landing(tmp_path, CONFIG)
    assert [(e["request_id"], e["ts"]) for e in result.billed] == [
        ("p1", datetime(2026, 11, 3, 10)), ("p2", datetime(2026, 11, 3, 11)),
    ]
    assert [(q[1], q[2], q[4]) for q in result.quarantine] == [
        ("dt=2026-11-03/b.parquet", 1, "bad_type"), ("dt=2026-11-03/b.parquet", 2, "bad_type"),
        ("dt=2026-11-03/c.parquet", 1, "bad_type"), ("dt=2026-11-03/c.parquet", 2, "bad_type"),
    ]


def test_an_unreadable_file_is_listed_and_none_of_its_rows_read(tmp_path):
    land(tmp_path, "2026-11-03", "good.jsonl", event())
    folder = tmp_path / "dt=2026-11-03"
    (folder / "broken.jsonl.gz").write_bytes(b"not gzip at all")
    (folder / "_SUCCESS").write_bytes(b"")
    counts = load_landing(tmp_path, CONFIG).counts(date(2026, 11, 3))
    assert counts["rows_read"] == 1 and counts["billed"] == 1
    assert counts["unreadable_files"] == [{"key": "dt=2026-11-03/broken.jsonl.gz"}]
    assert counts["skipped_files"] == [{"key": "dt=2026-11-03/_SUCCESS"}]
