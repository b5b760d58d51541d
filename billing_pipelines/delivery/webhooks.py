"""Webhooks to customers' endpoints, signed as the Standard Webhooks specification says:
headers `webhook-id` (the same on every attempt: receivers deduplicate by it),
`webhook-timestamp` (seconds since the epoch) and `webhook-signature`
(`v1,<base64 HMAC-SHA256 of "id.timestamp.body">` keyed by the customer's secret
`whsec_<base64>`, generated once and stored in the billing database). Each delivery is retried
with backoff (queue.py) and each POST recorded in `webhook_attempts`.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import UTC, datetime

import httpx
from sqlalchemy import Connection, Engine, insert, select
from standardwebhooks.webhooks import Webhook

from billing_pipelines.delivery import queue
from billing_pipelines.delivery.models import WebhookAttemptRow, WebhookDeliveryRow, WebhookSecretRow
from billing_pipelines.storage import billing_db

DELIVERIES, ATTEMPTS, SECRETS = (WebhookDeliveryRow.__table__, WebhookAttemptRow.__table__,
                                 WebhookSecretRow.__table__)
TIMEOUT_SECONDS = 15  # the specification asks receivers to answer within 15 s


def webhook_secret(engine: Engine, org_id: str, now: datetime) -> str:
    """The customer's signing secret, created (24 random bytes) the first time it is asked for."""
    with engine.begin() as conn:
        fresh = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        conn.execute(billing_db.insert_ignore(conn, SECRETS).values(org_id=org_id, secret=fresh, created_at=now))
        return conn.execute(select(SECRETS.c.secret).where(SECRETS.c.org_id == org_id)).scalar_one()


def signed_headers(secret: str, webhook_id: str, at: datetime, body: str) -> dict[str, str]:
    """The Standard Webhooks headers of `body` sent at `at`."""
    return {"content-type": "application/json", "webhook-id": webhook_id,
            "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(webhook_id, at, body)}


def queue_webhook(conn: Connection, org_id: str, url: str, webhook_id: str, event_type: str, data: dict,
                  now: datetime) -> bool:
    """Queue `{type, timestamp, data}` for `url` unless `webhook_id` was queued before."""
    at = now.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="seconds") + "Z"
    body = json.dumps({"type": event_type, "timestamp": at, "data": data}, sort_keys=True)
    return conn.execute(billing_db.insert_ignore(conn, DELIVERIES).values(
        webhook_id=webhook_id, org_id=org_id, url=url, event_type=event_type, payload=body,
        created_at=now, next_attempt_at=now)).rowcount == 1


def deliver_webhooks(engine: Engine, client: httpx.Client, now: datetime) -> dict[str, int]:
    """POST every due delivery; a 2xx answer delivers it, anything else is retried later.
    Returns how many were sent and failed now."""
    done = {"sent": 0, "failed": 0}
    for row in queue.claimed(engine, DELIVERIES, now):
        headers = signed_headers(webhook_secret(engine, row["org_id"], now), row["webhook_id"], now, row["payload"])
        status, error = None, None
        try:
            status = client.post(row["url"], content=row["payload"].encode(), headers=headers,
                                 timeout=TIMEOUT_SECONDS).status_code
            error = None if 200 <= status < 300 else f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"
        with engine.begin() as conn:
            conn.execute(insert(ATTEMPTS).values(delivery_id=row["id"], attempted_at=now, status_code=status,
                                                 error=error))
        queue.record(engine, DELIVERIES, row, now, error)
        done["failed" if error else "sent"] += 1
    return done
