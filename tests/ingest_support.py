"""What the ingest tests share: two landing dates, ingest runs by date string, and the priced and
billed events read back from the warehouse."""

from __future__ import annotations

from datetime import date

from billing_pipelines.ingest.pipeline import BILLED, PRICED, LandingZone, billed_events_sql, ingest
from billing_pipelines.storage import duck

D1, D2 = "2026-11-03", "2026-11-04"


def run(settings, *days: str) -> dict:
    return {s.landing_date: s.to_json() for s in ingest(settings, [date.fromisoformat(d) for d in days])}


def table(settings, name: str, day: str) -> list[dict]:
    wh = settings.warehouse()
    con = duck.connect()
    rows = con.execute(
        f"SELECT * FROM {wh.relation(con, wh.file_paths(PRICED, name, [f'dt={day}']))}"
    ).fetchall()
    cols = [c[0] for c in con.description]
    return [dict(zip(cols, r)) for r in rows]


def billed(settings) -> dict[str, dict]:
    con = duck.connect()
    days = [date.fromisoformat(p[3:]) for p in settings.warehouse().partitions(BILLED)]
    query = billed_events_sql(con, LandingZone(settings), days)
    cur = con.execute(query)
    cols = [c[0] for c in cur.description]
    return {r[cols.index("request_id")]: dict(zip(cols, r)) for r in cur.fetchall()}
