"""The delivery queues (outbox e-mails, webhook deliveries): which rows are due, claiming one
before it is sent, and recording the outcome, each a short transaction of its own.

A row is claimed (`sending`, one more attempt) and committed before anything leaves, and recorded
`sent` after. A process that dies in between leaves it `sending`: once the claim is older than
LEASE, the outcome is taken as unknown and it is sent again with the same id (Message-ID,
`webhook-id`), by which the recipient's mail system or endpoint tells the resend apart. Failures
are retried after a backoff doubling from BACKOFF_FIRST up to BACKOFF_MAX.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta

from sqlalchemy import Engine, Table, and_, func, or_, select, update

LEASE = timedelta(minutes=5)  # longer than any one send
BACKOFF_FIRST, BACKOFF_MAX = timedelta(seconds=30), timedelta(hours=1)
STATUSES = ("pending", "sending", "sent", "failed")


def backoff(attempts: int) -> timedelta:
    """The wait after the `attempts`-th failed attempt: 30 s, 1 min, 2 min, ... at most 1 h."""
    return min(BACKOFF_FIRST * 2 ** (attempts - 1), BACKOFF_MAX)


def due(table: Table, now: datetime):
    """The condition of rows to attempt at `now`: waiting and due, or claimed longer than LEASE."""
    c = table.c
    return or_(and_(c.status.in_(("pending", "failed")), c.next_attempt_at <= now),
               and_(c.status == "sending", c.claimed_at <= now - LEASE))


def claimed(engine: Engine, table: Table, now: datetime, where=None) -> Iterator[dict]:
    """Each due row (and matching `where`) that this process claims, oldest first; a row another
    process claimed in the meantime is passed over."""
    query = select(table.c.id, table.c.status, table.c.attempts).where(due(table, now))
    if where is not None:
        query = query.where(where)
    with engine.connect() as conn:
        candidates = conn.execute(query.order_by(table.c.id)).all()
    for row_id, status, attempts in candidates:
        with engine.begin() as conn:
            claim = update(table).where(table.c.id == row_id, table.c.status == status, table.c.attempts == attempts)
            if conn.execute(claim.values(status="sending", attempts=attempts + 1, claimed_at=now)).rowcount != 1:
                continue
            row = conn.execute(select(table).where(table.c.id == row_id)).mappings().one()
        yield dict(row)


def record(engine: Engine, table: Table, row: dict, now: datetime, error: str | None) -> None:
    """Record an attempt's outcome: sent, or failed (retried after the backoff)."""
    values = ({"status": "sent", "sent_at": now, "last_error": None} if error is None else
              {"status": "failed", "last_error": error[:2000], "next_attempt_at": now + backoff(row["attempts"])})
    with engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == row["id"]).values(**values))


def counts(engine: Engine, table: Table, where=None) -> dict[str, int]:
    """Rows by status (every status, zero where none)."""
    query = select(table.c.status, func.count()).group_by(table.c.status)
    if where is not None:
        query = query.where(where)
    with engine.connect() as conn:
        found = dict(conn.execute(query).all())
    return {status: found.get(status, 0) for status in STATUSES}
