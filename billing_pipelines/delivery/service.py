"""Delivering what is due, as the finalize flow and the delivery sensor do: the outbox's e-mails
through the settings' mailer, then the webhooks."""

from __future__ import annotations

from datetime import datetime

import httpx
from sqlalchemy import Engine, select
from sqlmodel import SQLModel

from billing_pipelines.balances.state import balances_engine
from billing_pipelines.delivery import queue
from billing_pipelines.delivery.alerts import STATES
from billing_pipelines.delivery.mail import mailer_for
from billing_pipelines.delivery.outbox import OUTBOX, deliver_outbox
from billing_pipelines.delivery.webhooks import ATTEMPTS, DELIVERIES, SECRETS, deliver_webhooks
from billing_pipelines.resources import BillingSettings

DELIVERY_TABLES = [OUTBOX, DELIVERIES, ATTEMPTS, SECRETS, STATES]


def delivery_engine(settings: BillingSettings) -> Engine:
    """The billing database (one engine per process, its SQLite folder made), with the delivery
    tables, whichever module created the engine first."""
    engine = balances_engine(settings.database_url)
    SQLModel.metadata.create_all(engine, tables=DELIVERY_TABLES)
    return engine


def deliver_due(settings: BillingSettings, now: datetime) -> dict[str, dict[str, int]]:
    """Send the due e-mails and webhooks; returns what was sent and failed now, per channel."""
    engine = delivery_engine(settings)
    with httpx.Client() as client:
        return {"email": deliver_outbox(engine, mailer_for(settings.smtp_url, settings.home),
                                        settings.warehouse().store, now),
                "webhook": deliver_webhooks(engine, client, now)}


def queue_counts(engine: Engine) -> dict[str, dict[str, int]]:
    """Messages by status, per channel."""
    return {"email": queue.counts(engine, OUTBOX), "webhook": queue.counts(engine, DELIVERIES)}


def due_attempts(engine: Engine, now: datetime) -> list[tuple[str, int, int]]:
    """(channel, id, attempts) of every row due at `now`: what a delivery run would attempt."""
    found = []
    with engine.connect() as conn:
        for channel, table in (("email", OUTBOX), ("webhook", DELIVERIES)):
            rows = conn.execute(select(table.c.id, table.c.attempts).where(queue.due(table, now))).all()
            found += [(channel, row_id, attempts) for row_id, attempts in rows]
    return found
