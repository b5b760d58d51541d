"""Tables of delivery in the billing database (created with the others by billing_db).

Outbox messages and webhook deliveries are queues of the same shape (`status`, `attempts`,
`next_attempt_at`, `claimed_at`, `last_error`: billing_pipelines.delivery.queue); every HTTP
attempt of a webhook is a `webhook_attempts` row. Times are aware, in UTC.
"""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class QueuedRow(SQLModel):
    """The columns of a queue row (billing_pipelines.delivery.queue)."""

    created_at: datetime
    status: str = Field(default="pending", index=True)  # pending | sending | sent | failed
    attempts: int = 0
    next_attempt_at: datetime
    claimed_at: datetime | None = None
    sent_at: datetime | None = None
    last_error: str | None = None


class OutboxMessageRow(QueuedRow, table=True):
    """One e-mail: an invoice, adjustment or credit note with its PDF, or an alert."""

    __tablename__ = "delivery_outbox"
    id: int | None = Field(default=None, primary_key=True)
    message_id: str = Field(unique=True)  # derived from what it delivers: the same on every attempt
    kind: str  # invoice | adjustment | credit_note | alert | finance_alert
    org_id: str = Field(index=True)  # "" for finance's
    recipient: str
    sender: str  # From: the seller
    subject: str
    body: str
    attachment_key: str | None = None  # the PDF in the warehouse store
    attachment_name: str | None = None


class WebhookSecretRow(SQLModel, table=True):
    """A customer's Standard Webhooks signing secret (`whsec_<base64>`)."""

    __tablename__ = "webhook_secrets"
    org_id: str = Field(primary_key=True)
    secret: str
    created_at: datetime


class WebhookDeliveryRow(QueuedRow, table=True):
    """One webhook message to a customer's endpoint; `webhook_id` is its `webhook-id` header."""

    __tablename__ = "webhook_deliveries"
    id: int | None = Field(default=None, primary_key=True)
    webhook_id: str = Field(unique=True)
    org_id: str = Field(index=True)
    url: str
    event_type: str
    payload: str  # the JSON body, signed as it is


class WebhookAttemptRow(SQLModel, table=True):
    """One POST of a webhook delivery: its answer's status, or why there was none."""

    __tablename__ = "webhook_attempts"
    id: int | None = Field(default=None, primary_key=True)
    delivery_id: int = Field(foreign_key="webhook_deliveries.id", index=True)
    attempted_at: datetime
    status_code: int | None = None
    error: str | None = None


class AlertStateRow(SQLModel, table=True):
    """Whether an alert of a customer is raised in a period (a billing month): it fires when it
    is first raised and again only after it was clear (a purchase brought credits back)."""

    __tablename__ = "alert_states"
    org_id: str = Field(primary_key=True)
    alert: str = Field(primary_key=True)
    period: str = Field(primary_key=True)
    raised: bool
    fired: int = 0  # how often it fired in the period
    changed_at: datetime
