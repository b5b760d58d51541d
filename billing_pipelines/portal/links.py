"""Portal links, as Stripe's customer portal sessions: `billing portal-link ORG` signs
`{org, exp}` with HMAC-SHA256 (itsdangerous) under a server secret kept in the billing database,
so any `billing serve` process on that database verifies it. Opening the link before `exp`
starts a session: a cookie signed with the same secret (Starlette's SessionMiddleware,
HttpOnly, SameSite=Lax) that holds the org, valid SESSION_SECONDS after the last request."""

from __future__ import annotations

import secrets
import time
from datetime import UTC, datetime

from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import Engine, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel

LINK_SALT = "billing.portal-link"
LINK_MINUTES = 15  # default life of a link, like Stripe's portal sessions' short-lived URL
SESSION_SECONDS = 8 * 3600
SESSION_COOKIE = "billing_portal"


class PortalSecretRow(SQLModel, table=True):
    """The one server secret that signs portal links and session cookies."""

    __tablename__ = "portal_secret"
    id: int = Field(default=1, primary_key=True)
    secret: str
    created_at: datetime


class LinkRefused(ValueError):
    """A portal link that does not sign anyone in; the message says why, for the customer."""


def portal_secret(engine: Engine) -> str:
    """The server secret, created on first use (concurrent first uses agree on one)."""
    table = PortalSecretRow.__table__
    table.create(engine, checkfirst=True)
    insert = postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
    with engine.begin() as conn:
        conn.execute(insert(table).values(id=1, secret=secrets.token_urlsafe(32), created_at=datetime.now(UTC))
                     .on_conflict_do_nothing())
        return conn.execute(select(table.c.secret).where(table.c.id == 1)).scalar_one()


def sign_link(secret: str, org_id: str, minutes: float = LINK_MINUTES, now: float | None = None) -> str:
    """The token of a link that signs `org_id` in until `minutes` from now."""
    if minutes <= 0:
        raise ValueError("a portal link must be valid for some minutes")
    expiry = int((time.time() if now is None else now) + minutes * 60)
    return URLSafeSerializer(secret, salt=LINK_SALT).dumps({"org": org_id, "exp": expiry})


def org_of_link(secret: str, token: str, now: float | None = None) -> str:
    """The org a link's token signs in; LinkRefused where it is altered or expired."""
    try:
        payload = URLSafeSerializer(secret, salt=LINK_SALT).loads(token)
    except BadSignature:
        raise LinkRefused("This link is not valid. Ask your account manager for a new one.") from None
    if (time.time() if now is None else now) >= payload["exp"]:
        raise LinkRefused("This link has expired. Ask your account manager for a new one.")
    return payload["org"]


def portal_url(base_url: str, token: str) -> str:
    """The link a customer opens."""
    return f"{base_url.rstrip('/')}/portal/open?link={token}"
