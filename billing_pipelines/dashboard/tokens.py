"""Customers' API tokens: `bpk_<id>_<secret>`, shown once at creation; only the SHA-256 of the
whole token is stored, so the database never holds a usable token."""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timezone

from sqlalchemy import Engine, insert, select, update

from billing_pipelines.dashboard.models import ApiTokenRow

TOKENS = ApiTokenRow.__table__
PREFIX = "bpk_"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(engine: Engine, org_id: str) -> tuple[str, str]:
    """A new token for `org_id`: (token_id, token). The token cannot be recovered later."""
    token_id = secrets.token_hex(6)
    token = f"{PREFIX}{token_id}_{secrets.token_urlsafe(32)}"
    with engine.begin() as conn:
        conn.execute(insert(TOKENS).values(
            token_id=token_id, org_id=org_id, token_sha256=_digest(token), created_at=datetime.now(timezone.utc),
        ))
    return token_id, token


def revoke_token(engine: Engine, token_or_id: str) -> str | None:
    """Revoke a token given itself or its id; returns its org, None where no live token matches."""
    match = TOKENS.c.token_sha256 == _digest(token_or_id) if token_or_id.startswith(PREFIX) else TOKENS.c.token_id == token_or_id
    with engine.begin() as conn:
        org_id = conn.execute(select(TOKENS.c.org_id).where(match, TOKENS.c.revoked_at.is_(None))).scalar()
        if org_id is not None:
            conn.execute(update(TOKENS).where(match).values(revoked_at=datetime.now(timezone.utc)))
    return org_id


def org_of_token(engine: Engine, token: str) -> str | None:
    """The org a live (not revoked) token belongs to, else None."""
    with engine.connect() as conn:
        return conn.execute(
            select(TOKENS.c.org_id).where(TOKENS.c.token_sha256 == _digest(token), TOKENS.c.revoked_at.is_(None))
        ).scalar()


def list_tokens(engine: Engine, org_id: str | None = None) -> list[dict]:
    query = select(TOKENS.c.token_id, TOKENS.c.org_id, TOKENS.c.created_at, TOKENS.c.revoked_at)
    if org_id:
        query = query.where(TOKENS.c.org_id == org_id)
    with engine.connect() as conn:
        return [dict(r) for r in conn.execute(query.order_by(TOKENS.c.org_id, TOKENS.c.created_at)).mappings()]
