"""Reads and writes of the balance tables (dashboard_* in the database); every write is one short transaction.

Concurrent micro-batches need no lock: each bumps `dashboard_state.generation` in the
transaction that records its events, reads the generation again before its snapshot, and writes a
customer's balance only where the stored one comes from an older generation.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path

import polars as pl
from sqlalchemy import Connection, Engine, delete, func, insert, make_url, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, ProgrammingError

from billing_pipelines.balances.balances import Balance, grant_description
from billing_pipelines.balances.models import (
    BalanceDailyUsageRow,
    BalanceGrantRow,
    BalanceRow,
    BalanceUsageRow,
    LiveBatchRow,
    LiveEventRow,
    LiveStateRow,
)
from billing_pipelines.storage import billing_db
from billing_pipelines.storage.objects import StoredFile

STATE, BATCHES, EVENTS = LiveStateRow.__table__, LiveBatchRow.__table__, LiveEventRow.__table__
BALANCES, GRANTS, USAGE = BalanceRow.__table__, BalanceGrantRow.__table__, BalanceUsageRow.__table__
DAILY = BalanceDailyUsageRow.__table__


_ENGINE_LOCK = threading.Lock()


@cache
def balances_engine(url: str) -> Engine:
    """The billing database engine (one per process and URL), with the balance tables. Runs
    starting together on a new database race to create the tables: the losers try again."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    with _ENGINE_LOCK:
        for attempt in range(3):
            try:
                return billing_db.engine_from_url(url)
            except (IntegrityError, OperationalError, ProgrammingError):
                if attempt == 2:
                    raise
                time.sleep(0.2 * (attempt + 1))


def _bump(conn: Connection) -> int:
    conn.execute(billing_db.insert_ignore(conn, STATE).values(id=1, generation=0))
    conn.execute(update(STATE).where(STATE.c.id == 1).values(generation=STATE.c.generation + 1))
    return conn.execute(select(STATE.c.generation)).scalar_one()


def record_batch(engine: Engine, stored: StoredFile, day: date, events: pl.DataFrame) -> pl.DataFrame:
    """Count the `events` whose request_id was not counted before and record the batch; returns
    the events counted. Batches are serialized by the generation bump, so the check is exact."""
    with engine.begin() as conn:
        generation = _bump(conn)
        ids = events["request_id"].to_list()
        counted = set()
        for start in range(0, len(ids), 5000):
            chunk = ids[start:start + 5000]
            counted.update(conn.execute(select(EVENTS.c.request_id).where(EVENTS.c.request_id.in_(chunk))).scalars())
        new = events.filter(~pl.col("request_id").is_in(list(counted)))
        rows = new.with_columns(pl.col("cost_usd").cast(pl.Utf8), pl.col("ts").dt.replace_time_zone("UTC")).to_dicts()
        if rows:
            conn.execute(insert(EVENTS), rows)
        conn.execute(insert(BATCHES).values(
            key=stored.key, size=stored.size, mtime_ns=stored.mtime_ns, landing_date=day,
            generation=generation, rows_new=len(rows), processed_at=datetime.now(UTC),
        ))
    return new


def bump_generation(engine: Engine) -> int:
    with engine.begin() as conn:
        return _bump(conn)


def current_generation(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.execute(select(STATE.c.generation)).scalar() or 0


def live_events(engine: Engine, orgs: set[str], schema: dict) -> pl.DataFrame:
    """The counted events of `orgs`, with the columns of `schema` (cost_usd as text)."""
    columns = [EVENTS.c[name] for name in schema]
    with engine.connect() as conn:
        rows = conn.execute(select(*columns).where(EVENTS.c.org_id.in_(sorted(orgs)))).all()
    frame = pl.DataFrame(rows, schema={**schema, "ts": pl.Datetime("us", "UTC"), "cost_usd": pl.Utf8}, orient="row")
    return frame.with_columns(pl.col("ts").dt.replace_time_zone(None))


def forget_live_events(engine: Engine, request_ids: list[str]) -> None:
    """Drop counted events the warehouse now holds (the daily ingest billed their date)."""
    if not request_ids:
        return
    with engine.begin() as conn:
        for start in range(0, len(request_ids), 5000):
            conn.execute(delete(EVENTS).where(EVENTS.c.request_id.in_(request_ids[start:start + 5000])))


def store_balances(engine: Engine, balances: dict[str, Balance], generation: int) -> list[str]:
    """Write each balance unless a newer generation's is stored; returns the orgs written."""
    written = []
    now = datetime.now(UTC)
    with engine.begin() as conn:
        for org_id, balance in sorted(balances.items()):
            fields = _balance_fields(balance, now)
            conn.execute(billing_db.insert_ignore(conn, BALANCES).values(org_id=org_id, generation=-1, **fields))
            newer = update(BALANCES).where(BALANCES.c.org_id == org_id, BALANCES.c.generation < generation)
            if conn.execute(newer.values(generation=generation, **fields)).rowcount == 0:
                continue
            written.append(org_id)
            for table in (GRANTS, USAGE, DAILY):
                conn.execute(delete(table).where(table.c.org_id == org_id))
            if balance.grants:
                conn.execute(insert(GRANTS), [
                    {"org_id": org_id, **vars(g), "start": _aware(g.start), "expiry": _aware(g.expiry)}
                    for g in balance.grants
                ])
            if balance.usage:
                conn.execute(insert(USAGE), [{"org_id": org_id, **vars(u)} for u in balance.usage])
            if balance.daily:
                conn.execute(insert(DAILY), [{"org_id": org_id, **vars(d)} for d in balance.daily])
    return written


def _balance_fields(balance: Balance, now: datetime) -> dict:
    return {
        "month": balance.month, "plan": balance.plan, "currency": balance.currency,
        "consumed_credits": balance.consumed_credits, "overage_credits": balance.overage_credits,
        "overage_amount": balance.overage_amount, "as_of": _aware(balance.as_of), "computed_at": now,
    }


def credits_left(engine: Engine, org_id: str, now: datetime | None = None) -> int | None:
    """Credits left now in the customer's active grants; None where no balance is stored."""
    now = _aware(now or datetime.now(UTC))
    with engine.connect() as conn:
        if conn.execute(select(BALANCES.c.org_id).where(BALANCES.c.org_id == org_id)).first() is None:
            return None
        return conn.execute(
            select(func.coalesce(func.sum(GRANTS.c.credits_left), 0))
            .where(GRANTS.c.org_id == org_id, GRANTS.c.start <= now, GRANTS.c.expiry > now)
        ).scalar_one()


def balance_document(engine: Engine, org_id: str, now: datetime | None = None) -> dict | None:
    """The JSON of `GET /v1/balance` for one customer (grants active now), or None. `as_of` is
    when the newest landed file this balance counts landed (its modification time; the newest
    event's time where no file was counted one by one), `newest_event_at` that event's time."""
    now = _aware(now or datetime.now(UTC))
    with engine.connect() as conn:
        row = conn.execute(select(BALANCES).where(BALANCES.c.org_id == org_id)).mappings().first()
        if row is None:
            return None
        grants = conn.execute(
            select(GRANTS).where(GRANTS.c.org_id == org_id, GRANTS.c.start <= now, GRANTS.c.expiry > now)
            .order_by(GRANTS.c.expiry, GRANTS.c.start, GRANTS.c.grant_id)
        ).mappings().all()
        usage = conn.execute(
            select(USAGE).where(USAGE.c.org_id == org_id).order_by(USAGE.c.model, USAGE.c.action)
        ).mappings().all()
        newest = select(func.max(BATCHES.c.mtime_ns)).where(BATCHES.c.generation <= row["generation"])
        landed_ns = conn.execute(newest).scalar()
    landed = None if landed_ns is None else datetime.fromtimestamp(landed_ns / 1e9, UTC)
    return {
        "org_id": org_id,
        "month": row["month"],
        "plan": row["plan"],
        "currency": row["currency"],
        "credits_left": sum(g["credits_left"] for g in grants),
        "consumed_credits": row["consumed_credits"],
        "overage_credits": row["overage_credits"],
        "overage_amount": row["overage_amount"],
        "as_of": _iso(landed or row["as_of"]),
        "newest_event_at": _iso(row["as_of"]),
        "computed_at": _iso(row["computed_at"]),
        "grants": [
            {"grant_id": g["grant_id"], "kind": g["kind"],
             "description": grant_description(g["kind"], g["grant_id"], g["start"]),
             "credits": g["credits"], "credits_left": g["credits_left"], "start": _iso(g["start"]),
             "expires_at": _iso(g["expiry"])}
            for g in grants
        ],
        "usage": usage_totals(usage),
    }


def usage_totals(rows) -> dict:
    """Rows with model, action, requests and credits, summed by model, by tier, and both."""

    def totals(field: str) -> list[dict]:
        sums: dict[str, list[int]] = {}
        for r in rows:
            acc = sums.setdefault(r[field], [0, 0])
            acc[0] += r["requests"]
            acc[1] += r["credits"]
        return [{field: name, "requests": n, "credits": c} for name, (n, c) in sorted(sums.items())]

    return {
        "by_model": totals("model"),
        "by_tier": totals("action"),
        "by_model_and_tier": [
            {"model": r["model"], "action": r["action"], "requests": r["requests"], "credits": r["credits"]}
            for r in rows
        ],
    }


def _aware(moment: datetime | None) -> datetime | None:
    """A naive UTC time (the ledger's) or an aware one, as an aware UTC time (the database's)."""
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return _aware(moment).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
