"""Bearer credentials of `billing serve`: customers' API tokens (`bpk_<id>_<secret>`, for their
balance) and gateways' keys (`bgk_<id>_<secret>`, for the rate-limit endpoints). Each is shown
once at creation; only the SHA-256 of the whole credential is stored, so the database never
holds a usable one."""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Column, Engine, Table, insert, select, update

from billing_pipelines.balances.models import ApiTokenRow, GatewayKeyRow


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class Credentials:
    """One kind of credential, `<prefix><id>_<secret>`, stored in `table` by id, owner and hash."""

    table: Table
    prefix: str
    id: Column
    owner: Column
    sha256: Column

    def create(self, engine: Engine, owner: str) -> tuple[str, str]:
        """A new credential of `owner`: (its id, itself). It cannot be recovered later."""
        credential_id = secrets.token_hex(6)
        secret = f"{self.prefix}{credential_id}_{secrets.token_urlsafe(32)}"
        with engine.begin() as conn:
            conn.execute(insert(self.table).values({
                self.id: credential_id, self.owner: owner, self.sha256: _digest(secret),
                self.table.c.created_at: datetime.now(UTC),
            }))
        return credential_id, secret

    def revoke(self, engine: Engine, secret_or_id: str) -> str | None:
        """Revoke a credential given itself or its id; its owner, None where none live matches."""
        given_secret = secret_or_id.startswith(self.prefix)
        match = self.sha256 == _digest(secret_or_id) if given_secret else self.id == secret_or_id
        with engine.begin() as conn:
            owner = conn.execute(select(self.owner).where(match, self.table.c.revoked_at.is_(None))).scalar()
            if owner is not None:
                conn.execute(update(self.table).where(match).values(revoked_at=datetime.now(UTC)))
        return owner

    def live(self, engine: Engine, secret: str) -> tuple[str, str] | None:
        """(id, owner) of the live (not revoked) credential `secret` is, else None."""
        if not secret.startswith(self.prefix):
            return None
        with engine.connect() as conn:
            row = conn.execute(select(self.id, self.owner).where(
                self.sha256 == _digest(secret), self.table.c.revoked_at.is_(None))).first()
        return None if row is None else (row[0], row[1])

    def listing(self, engine: Engine, owner: str | None = None) -> list[dict]:
        """Ids, owners, creation and revocation times (never secrets), by owner and age."""
        query = select(self.id, self.owner, self.table.c.created_at, self.table.c.revoked_at)
        if owner:
            query = query.where(self.owner == owner)
        with engine.connect() as conn:
            return [dict(r) for r in conn.execute(query.order_by(self.owner, self.table.c.created_at)).mappings()]


_tokens, _keys = ApiTokenRow.__table__, GatewayKeyRow.__table__
CUSTOMER_TOKENS = Credentials(_tokens, "bpk_", _tokens.c.token_id, _tokens.c.org_id, _tokens.c.token_sha256)
GATEWAY_KEYS = Credentials(_keys, "bgk_", _keys.c.key_id, _keys.c.name, _keys.c.key_sha256)

create_token, revoke_token, list_tokens = CUSTOMER_TOKENS.create, CUSTOMER_TOKENS.revoke, CUSTOMER_TOKENS.listing
create_gateway_key, revoke_gateway_key = GATEWAY_KEYS.create, GATEWAY_KEYS.revoke
list_gateway_keys = GATEWAY_KEYS.listing


def org_of_token(engine: Engine, token: str) -> str | None:
    """The org a live customer token belongs to, else None."""
    live = CUSTOMER_TOKENS.live(engine, token)
    return None if live is None else live[1]


def gateway_key_id(engine: Engine, key: str) -> str | None:
    """The id of the live gateway key `key` is, else None."""
    live = GATEWAY_KEYS.live(engine, key)
    return None if live is None else live[0]


class LiveGatewayKeys:
    """`gateway_key_id` with the keys found live remembered for `seconds`, so an admission
    decision costs no database read; a revoked key stops working within `seconds`. Only live
    keys are remembered, so unknown keys cannot fill it."""

    def __init__(self, engine: Engine, seconds: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self._engine, self._seconds, self._clock = engine, seconds, clock
        self._live: dict[str, tuple[str, float]] = {}  # SHA-256 -> (key id, when found live)

    def __call__(self, key: str) -> str | None:
        digest, now = _digest(key), self._clock()
        known = self._live.get(digest)
        if known is not None and now - known[1] < self._seconds:
            return known[0]
        key_id = gateway_key_id(self._engine, key)
        if key_id is None:
            self._live.pop(digest, None)
        else:
            self._live[digest] = (key_id, now)
        return key_id
