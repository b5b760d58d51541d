"""Tables of live balances in the billing database (same engine as billing_db); their names keep
the `dashboard_` prefix existing deployments have.

`dashboard_live_events` holds the events the micro-batch counted that the daily ingest may not
have committed yet (request_id is the primary key: the idempotency key of SPEC §1.3);
`dashboard_state.generation` grows by one with every micro-batch, so a balance computed from an
older snapshot never overwrites a newer one. Balances, their grants and usage (this month's, and
by day for the months not closed yet) are per customer.
`dashboard_api_tokens` and `gateway_keys` hold the hashes of customers' tokens and gateways' keys.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger
from sqlmodel import Field, SQLModel


class LiveStateRow(SQLModel, table=True):
    __tablename__ = "dashboard_state"
    id: int = Field(default=1, primary_key=True)
    generation: int = 0


class LiveBatchRow(SQLModel, table=True):
    """One landed file the micro-batch processed."""

    __tablename__ = "dashboard_batches"
    id: int | None = Field(default=None, primary_key=True)
    key: str = Field(index=True)
    size: int = Field(sa_type=BigInteger)
    mtime_ns: int = Field(sa_type=BigInteger)
    landing_date: date
    generation: int
    rows_new: int
    processed_at: datetime


class LiveEventRow(SQLModel, table=True):
    """A billed event counted by the micro-batch (the columns of BILLED_EVENT_SCHEMA)."""

    __tablename__ = "dashboard_live_events"
    request_id: str = Field(primary_key=True)
    org_id: str = Field(index=True)
    user_id: str
    ts: datetime
    landing_date: date
    key: str = Field(index=True)
    line_no: int = Field(sa_type=BigInteger)
    model: str
    action: str
    input_tokens: int = Field(sa_type=BigInteger)
    output_tokens: int = Field(sa_type=BigInteger)
    latency_ms: int = Field(sa_type=BigInteger)
    cost_usd: str  # exact decimal text
    credits: int = Field(sa_type=BigInteger)


class BalanceRow(SQLModel, table=True):
    """A customer's current balance, as computed by the micro-batch of `generation`."""

    __tablename__ = "dashboard_balances"
    org_id: str = Field(primary_key=True)
    generation: int
    month: str
    plan: str
    currency: str
    consumed_credits: int = Field(sa_type=BigInteger)
    overage_credits: int = Field(sa_type=BigInteger)
    overage_amount: str | None  # None where the plan bills no overage
    as_of: datetime | None  # newest event counted (UTC)
    computed_at: datetime


class BalanceGrantRow(SQLModel, table=True):
    """An active grant of a customer's balance, with the credits left in it."""

    __tablename__ = "dashboard_grants"
    org_id: str = Field(primary_key=True)
    grant_id: str = Field(primary_key=True)
    kind: str
    start: datetime
    expiry: datetime
    credits: int = Field(sa_type=BigInteger)
    credits_left: int = Field(sa_type=BigInteger)


class UsageCounts(SQLModel):
    """A customer's requests and credits of one model and action tier (the columns of both
    usage tables)."""

    org_id: str = Field(primary_key=True)
    model: str = Field(primary_key=True)
    action: str = Field(primary_key=True)
    requests: int = Field(sa_type=BigInteger)
    credits: int = Field(sa_type=BigInteger)


class BalanceUsageRow(UsageCounts, table=True):
    """Usage of the current month by model and action tier."""

    __tablename__ = "dashboard_usage"


class BalanceDailyUsageRow(UsageCounts, table=True):
    """Usage by day of the months not closed yet (the day an event is billed on: its own, or the
    first day of the month a late event is billed in), by model and action tier."""

    __tablename__ = "dashboard_daily_usage"
    day: date = Field(primary_key=True)


class ApiTokenRow(SQLModel, table=True):
    """A customer's API token; only its SHA-256 is stored."""

    __tablename__ = "dashboard_api_tokens"
    token_id: str = Field(primary_key=True)
    org_id: str = Field(index=True)
    token_sha256: str = Field(unique=True, index=True)
    created_at: datetime
    revoked_at: datetime | None = None


class GatewayKeyRow(SQLModel, table=True):
    """A gateway's key for the rate-limit endpoints (server-side, not a customer's); only its
    SHA-256 is stored. `name` says which gateway or deployment holds it."""

    __tablename__ = "gateway_keys"
    key_id: str = Field(primary_key=True)
    name: str = Field(index=True)
    key_sha256: str = Field(unique=True, index=True)
    created_at: datetime
    revoked_at: datetime | None = None
