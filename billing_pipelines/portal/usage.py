"""A customer's usage by day of one month, by model and action tier, in credits: from the month
close's collected events where the month is collected, else from what the live balance keeps for
the months not closed yet (`dashboard_daily_usage`). A late event counts on the first day of the
month it is billed in."""

from __future__ import annotations

from contextlib import closing
from datetime import date

from sqlalchemy import Engine, select

from billing_pipelines.balances.state import DAILY, usage_totals
from billing_pipelines.month_close.usage import MONTH_USAGE, month_events_sql, usage_partitions
from billing_pipelines.partitions import close_shard_count, customer_bucket
from billing_pipelines.periods import add_months, month_key
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import duck


def usage_by_day(settings: BillingSettings, engine: Engine, org_id: str, month: date) -> dict:
    """The JSON of `GET /v1/usage?month=`: rows by day, model and tier, and their totals."""
    [held] = usage_partitions(month, close_shard_count(), [customer_bucket(org_id)])
    collected = settings.warehouse().manifest(MONTH_USAGE, held) is not None
    rows = _collected(settings, org_id, month) if collected else _live(engine, org_id, month)
    return {
        "org_id": org_id, "month": month_key(month), "source": "month close" if collected else "live",
        "days": [{"date": day.isoformat(), "model": model, "action": action, "requests": n, "credits": c}
                 for day, model, action, n, c in rows],
        "total_credits": sum(row[4] for row in rows),
        **usage_totals([{"model": m, "action": a, "requests": n, "credits": c} for _, m, a, n, c in rows]),
    }


def _collected(settings: BillingSettings, org_id: str, month: date) -> list[tuple]:
    wh = settings.warehouse()
    with closing(duck.connect(settings.scratch_dir())) as con:
        events = month_events_sql(con, wh, month, close_shard_count(), [customer_bucket(org_id)])
        return con.execute(
            f"SELECT greatest(ts::DATE, {duck.literal(month)}) AS day, model, action, count(*), sum(credits)::BIGINT "
            f"FROM ({events}) WHERE org_id = ? GROUP BY ALL ORDER BY ALL", [org_id]).fetchall()


def _live(engine: Engine, org_id: str, month: date) -> list[tuple]:
    columns = DAILY.c
    query = (select(columns.day, columns.model, columns.action, columns.requests, columns.credits)
             .where(columns.org_id == org_id, columns.day >= month, columns.day < add_months(month, 1))
             .order_by(columns.day, columns.model, columns.action))
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(query)]
