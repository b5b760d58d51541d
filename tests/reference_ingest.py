"""A reference loader of a local landing zone of .jsonl, .jsonl.gz and .parquet files (SPEC
§1.1-1.4), in plain Python, one row at a time: the oracle that the DuckDB ingest and the ledger
tests use. Parquet rows keep their column types (a naive timestamp has no offset: bad_type).

Rows are read in (landing date, key in byte order, line number); each is quarantined with the
first reason of SPEC §1.2 or priced; the first valid occurrence of a request_id is billed, later
ones are duplicates.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from billing_pipelines.config import BillingConfig
from billing_pipelines.ledger.events import BILLED_EVENT_SCHEMA

REQUIRED = ("request_id", "org_id", "user_id", "ts", "model", "action",
            "input_tokens", "output_tokens", "latency_ms")
STRINGS = ("request_id", "org_id", "user_id", "model", "action")
INTEGERS = ("input_tokens", "output_tokens", "latency_ms")
SUFFIXES = (".jsonl", ".jsonl.gz", ".parquet")
RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)


class Malformed(ValueError):
    pass


@dataclass
class ReferenceIngest:
    billed: list[dict] = field(default_factory=list)
    duplicates: list[tuple[date, str, int, str]] = field(default_factory=list)
    quarantine: list[tuple[date, str, int, str, str]] = field(default_factory=list)  # .., raw, reason
    rows_read: Counter = field(default_factory=Counter)

    def counts(self, day: date) -> dict:
        """What `billing ingest DAY --format json` prints."""
        reasons = Counter(q[4] for q in self.quarantine if q[0] == day)
        return {
            "landing_date": day.isoformat(),
            "rows_read": self.rows_read[day],
            "billed": sum(1 for e in self.billed if e["landing_date"] == day),
            "duplicates": sum(1 for d in self.duplicates if d[0] == day),
            "quarantined": dict(sorted(reasons.items())),
        }

    def frame(self) -> pl.DataFrame:
        """The billed events as the ledger's input DataFrame."""
        return pl.DataFrame(self.billed, schema=BILLED_EVENT_SCHEMA, orient="row")


def load_landing(landing: Path, config: BillingConfig) -> ReferenceIngest:
    """Read every landing date of the local folder `landing`."""
    result, seen = ReferenceIngest(), set()
    for day, key, line_no, raw in _rows(Path(landing)):
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


def _rows(landing: Path):
    """(landing date, key, line/row number, raw bytes or Parquet row) of every row, in SPEC
    order; blank lines are not rows. A file that cannot be read fails, naming it."""
    for folder in sorted(landing.glob("dt=*")):
        day = date.fromisoformat(folder.name[3:])
        files = [p for p in folder.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES)]
        keyed = [(p.relative_to(landing).as_posix(), p) for p in files]
        for key, path in sorted(keyed, key=lambda kp: kp[0].encode("utf-8")):
            try:
                rows = _parquet_rows(path) if key.endswith(".parquet") else _lines(path)
                for number, raw in rows:
                    yield day, key, number, raw
            except (OSError, EOFError, zlib.error, pa.ArrowException) as exc:
                raise ValueError(f"{key}: cannot be read: {exc}") from exc


def _lines(path: Path):
    data = path.read_bytes()
    if path.name.endswith(".gz"):
        data = gzip.decompress(data)
    lines = list(enumerate(data.split(b"\n"), start=1))
    return [(number, raw.rstrip(b"\r")) for number, raw in lines if raw.strip()]


def _parquet_rows(path: Path):
    return list(enumerate(pq.read_table(path).to_pylist(), start=1))


def _parse(raw: bytes) -> dict:
    def reject(constant):
        raise Malformed(constant)

    try:
        value = json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=reject)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Malformed(str(exc)) from exc
    if not isinstance(value, dict):
        raise Malformed("not an object")
    return value


def _reason(event: dict, day: date, config: BillingConfig) -> str | None:
    if any(event.get(name) is None for name in REQUIRED):
        return "missing_field"
    if _bad_type(event):
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
    if _timestamp(event["ts"]) is None:
        return True
    return event.get("cost_usd") is not None and _decimal(event["cost_usd"]) is None


def _decimal(value) -> Decimal | None:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        return None
    try:
        number = Decimal(value.strip() if isinstance(value, str) else repr(value) if isinstance(value, float) else value)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _timestamp(value) -> datetime | None:
    """An RFC 3339 text (or a Parquet timestamp) with offset, as naive UTC, or None."""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).replace(tzinfo=None) if value.tzinfo else None
    match = RFC3339.fullmatch(value) if isinstance(value, str) else None
    if not match:
        return None
    y, mo, d, h, mi, s, frac, zulu, sign, oh, om = match.groups()
    try:
        offset = timezone.utc if zulu else timezone(
            (1 if sign == "+" else -1) * timedelta(hours=int(oh), minutes=int(om))
        )
        micro = int((frac or "0")[:6].ljust(6, "0"))
        moment = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), micro, tzinfo=offset)
    except ValueError:
        return None
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


def _billed(event: dict, day: date, config: BillingConfig) -> dict:
    """The billed-events row: exact cost (SPEC §1.4) and credits."""
    ts = _timestamp(event["ts"])
    rate = config.price_book.rate_at(event["model"], ts.date())
    tokens_in, tokens_out = event["input_tokens"], event["output_tokens"]
    cost = (tokens_in * rate.input_usd_per_1k + tokens_out * rate.output_usd_per_1k).scaleb(-3)
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
