"""A reference loader of a local landing zone (SPEC §1.1-1.4), in plain Python, one row at a
time: the oracle that the DuckDB ingest and the ledger tests use. Parquet rows keep their column
types (a naive timestamp has no offset: bad_type).

A date's files are sorted as SPEC §1.1 says: symbolic links and sink markers are skipped, a file
without one of the three extensions is read by its content, and a file that cannot be read at all
is unreadable (none of its rows is read). Rows are read in (landing date, key in byte order, line
number); each is quarantined with the first reason of SPEC §1.2 or priced; the first valid
occurrence of a request_id is billed, later ones are duplicates. What is one strict JSON value is
billing_pipelines' strict_json (the ingest calls it for the lines its SQL cannot settle).
"""

from __future__ import annotations

import gzip
import json
import os
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from billing_pipelines.config import BillingConfig
from billing_pipelines.ingest.landing import strict_json
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA

REQUIRED = ("request_id", "org_id", "user_id", "ts", "model", "action",
            "input_tokens", "output_tokens", "latency_ms")
STRINGS = ("request_id", "org_id", "user_id", "model", "action")
INTEGERS = ("input_tokens", "output_tokens", "latency_ms")
FORMATS = {".jsonl": "jsonl", ".jsonl.gz": "gzip", ".parquet": "parquet"}
RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})[Tt]([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?(?:([Zz])|([+-])([0-9]{2}):([0-9]{2}))"
)
LARGEST_COST_USD = Decimal(10) ** 26  # DECIMAL(38, 12)
OUT_OF_RANGE = object()  # a Parquet timestamp outside years 1-9999


class Malformed(ValueError):
    pass


@dataclass
class ReferenceIngest:
    billed: list[dict] = field(default_factory=list)
    duplicates: list[tuple[date, str, int, str]] = field(default_factory=list)
    quarantine: list[tuple[date, str, int, str, str]] = field(default_factory=list)  # .., raw, reason
    rows_read: Counter = field(default_factory=Counter)
    unreadable: list[tuple[date, str, str]] = field(default_factory=list)  # day, key, error
    skipped: list[tuple[date, str]] = field(default_factory=list)  # day, key

    def counts(self, day: date) -> dict:
        """What `billing ingest DAY --format json` prints, the files not read by key only (their
        errors and reasons are worded by each implementation)."""
        reasons = Counter(q[4] for q in self.quarantine if q[0] == day)
        files = {"unreadable_files": [{"key": k} for d, k, _ in self.unreadable if d == day],
                 "skipped_files": [{"key": k} for d, k in self.skipped if d == day]}
        return {
            "landing_date": day.isoformat(),
            "rows_read": self.rows_read[day],
            "billed": sum(1 for e in self.billed if e["landing_date"] == day),
            "duplicates": sum(1 for d in self.duplicates if d[0] == day),
            "quarantined": dict(sorted(reasons.items())),
            **{name: listed for name, listed in files.items() if listed},
        }

    def frame(self) -> pl.DataFrame:
        """The billed events as the ledger's input DataFrame."""
        return pl.DataFrame(self.billed, schema=BILLED_EVENT_SCHEMA, orient="row")


def load_landing(landing: Path, config: BillingConfig) -> ReferenceIngest:
    """Read every landing date of the local folder `landing`."""
    result, seen = ReferenceIngest(), set()
    for day, key, line_no, raw in _rows(Path(landing), result):
        result.rows_read[day] += 1
        try:
            event = raw if isinstance(raw, dict) else _parse(raw)
            reason = _reason(event, day, config)
        except Malformed:
            reason = "malformed"
        if reason:
            text = json.dumps(raw, default=str) if isinstance(raw, dict) else raw.decode("utf-8", "replace")
            result.quarantine.append((day, key, line_no, text, reason))
        elif event["request_id"] in seen:
            result.duplicates.append((day, key, line_no, event["request_id"]))
        else:
            seen.add(event["request_id"])
            result.billed.append(_billed(event, day, config))
    return result


def _rows(landing: Path, result: ReferenceIngest):
    """(landing date, key, line/row number, raw bytes or Parquet row) of every row, in SPEC
    order; blank lines are not rows. Skipped and unreadable files go to `result`."""
    for folder in sorted(landing.glob("dt=*")):
        day = date.fromisoformat(folder.name[3:])
        keyed = [(path.relative_to(landing).as_posix(), path) for path in _files(folder)]
        for key, path in sorted(keyed, key=lambda kp: kp[0].encode("utf-8")):
            names = key.split("/")[1:]
            if path.is_symlink() or any(n.startswith((".", "_")) for n in names) or names[-1].endswith(".crc"):
                result.skipped.append((day, key))
                continue
            try:
                rows = _parquet_rows(path) if _format(path) == "parquet" else _lines(path)
            except (OSError, EOFError, zlib.error, pa.ArrowException, ValueError) as exc:
                result.unreadable.append((day, key, str(exc)))
                continue
            for number, raw in rows:
                yield day, key, number, raw


def _files(folder: Path):
    """Regular files and symbolic links under `folder`, links not followed."""
    for entry in os.scandir(folder):
        if entry.is_dir(follow_symlinks=False):
            yield from _files(Path(entry.path))
        elif entry.is_symlink() or entry.is_file(follow_symlinks=False):
            yield Path(entry.path)


def _format(path: Path) -> str:
    for suffix, fmt in FORMATS.items():
        if path.name.endswith(suffix):
            return fmt
    head = path.read_bytes()[:4]
    return "gzip" if head[:2] == b"\x1f\x8b" else "parquet" if head == b"PAR1" else "jsonl"


def _lines(path: Path):
    data = path.read_bytes()
    if _format(path) == "gzip":
        data = gzip.decompress(data)
    lines = list(enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1))
    return [(number, raw.rstrip(b"\r")) for number, raw in lines if raw.strip(b" \t\r")]


def _parquet_rows(path: Path):
    table = pq.read_table(path)
    if len(set(table.column_names)) < table.num_columns:
        raise ValueError(f"{path.name}: a column name twice")
    columns = {name: _timestamps(column) if pa.types.is_timestamp(column.type) else column.to_pylist()
               for name, column in zip(table.column_names, table.columns)}
    return list(enumerate((dict(zip(columns, row)) for row in zip(*columns.values())), start=1))


def _timestamps(column: pa.ChunkedArray) -> list:
    """A timestamp column as datetimes truncated to microseconds, whatever its unit: in UTC where
    it has a time zone, naive where it has none; OUT_OF_RANGE outside years 1-9999."""
    per_second = {"s": 1, "ms": 1000, "us": 10**6, "ns": 10**9}[column.type.unit]
    epoch = datetime(1970, 1, 1, tzinfo=UTC if column.type.tz else None)
    values = pc.cast(column, pa.int64()).to_pylist()
    return [None if v is None else _after(epoch, v * 10**6 // per_second) for v in values]


def _after(epoch: datetime, micros: int):
    try:
        return epoch + timedelta(microseconds=micros)
    except OverflowError:
        return OUT_OF_RANGE


def _parse(raw: bytes) -> dict:
    try:
        value = strict_json(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise Malformed(str(exc)) from exc
    if not isinstance(value, dict):
        raise Malformed("not an object")
    return value


def _reason(event: dict, day: date, config: BillingConfig) -> str | None:
    if any(event.get(name) is None for name in REQUIRED):
        return "missing_field"
    if _bad_type(event) or _overflows(event, config):
        return "bad_type"
    ts = _timestamp(event["ts"])
    book = config.price_book
    customer = config.customers.get(event["org_id"])
    if customer is None:
        return "unknown_org"
    if event["model"] not in book.model_names:
        return "unknown_model"
    if book.action(event["action"]) is None:
        return "unknown_action"
    if book.rate_at(event["model"], ts.date()) is None:
        return "no_rate"
    if ts.date() < customer.start_date:
        return "before_customer_start"
    ended = config.cancelled_on(customer.org_id)
    if ended is not None and ts.date() >= ended:
        return "after_customer_end"
    if ts >= datetime.combine(day + timedelta(days=2), datetime.min.time()):
        return "future_timestamp"
    return None


def _bad_type(event: dict) -> bool:
    if any(not isinstance(event[name], str) for name in STRINGS):
        return True
    if not 1 <= len(event["request_id"]) <= 200:
        return True
    if any(type(event[name]) is not int or not 0 <= event[name] < 2**63 for name in INTEGERS):
        return True
    return _timestamp(event["ts"]) is None  # cost_usd is never a reason (SPEC §1.1)


def _overflows(event: dict, config: BillingConfig) -> bool:
    """Credits beyond 64 bits, or a cost beyond DECIMAL(38, 12), of a known action and model."""
    book, ts = config.price_book, _timestamp(event["ts"])
    action = book.action(event["action"])
    if action and action.credits_for(event["input_tokens"], event["output_tokens"]) >= 2**63:
        return True
    rate = book.rate_at(event["model"], ts.date()) if event["model"] in book.model_names else None
    return bool(rate) and _cost(event, rate) >= LARGEST_COST_USD


def _cost(event: dict, rate) -> Decimal:
    """SPEC §1.4, exact."""
    return (event["input_tokens"] * rate.input_usd_per_1k + event["output_tokens"] * rate.output_usd_per_1k).scaleb(-3)


def _timestamp(value) -> datetime | None:
    """An RFC 3339 text (or a Parquet timestamp) with offset, as naive UTC, or None: a real
    calendar time (hour 00-23, no leap second), an offset of at most 23:59, and years 0001-9999
    both as written and in UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else None
    match = RFC3339.fullmatch(value) if isinstance(value, str) else None
    if not match:
        return None
    y, mo, d, h, mi, s, frac, zulu, sign, oh, om = match.groups()
    if not zulu and (int(oh) > 23 or int(om) > 59):
        return None
    try:
        offset = UTC if zulu else timezone(
            (1 if sign == "+" else -1) * timedelta(hours=int(oh), minutes=int(om))
        )
        micro = int((frac or "0")[:6].ljust(6, "0"))
        moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=offset)
        return moment.astimezone(UTC).replace(tzinfo=None)
    except (ValueError, OverflowError):
        return None


def _billed(event: dict, day: date, config: BillingConfig) -> dict:
    """The billed-events row: exact cost (SPEC §1.4) and credits."""
    ts = _timestamp(event["ts"])
    rate = config.price_book.rate_at(event["model"], ts.date())
    tokens_in, tokens_out = event["input_tokens"], event["output_tokens"]
    cost = _cost(event, rate)
    return {
        "request_id": event["request_id"],
        "org_id": event["org_id"],
        "user_id": event["user_id"],
        "ts": ts,
        "landing_date": day,
        "model": event["model"],
        "action": event["action"],
        "input_tokens": tokens_in,
        "output_tokens": tokens_out,
        "latency_ms": event["latency_ms"],
        "cost_usd": cost,
        "credits": config.price_book.action(event["action"]).credits_for(tokens_in, tokens_out),
    }
