"""Balance alerts, raised by the live-balance micro-batch, and finance's alert of customers
below the target credit-to-cost ratio at the month close.

Alerts (config.ALERT; per plan in plans.yaml, per customer in customers.yaml):
`credits_used_N` is raised while the credits used from grants this month are at least N % of
those plus the credits left; `overage_started` while the month has overage; `credits_expiring_Nd`
while a purchased or rolled-over grant with credits left expires within N days. An alert fires
(an e-mail and a webhook) when it is raised in a period (the billing month) and was not before;
it fires again in that period only after it was clear (a purchase brought credits back).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection, Engine, select, update

from billing_pipelines.balances.balances import Balance
from billing_pipelines.config import ALERT, BillingConfig, Customer
from billing_pipelines.delivery.models import AlertStateRow
from billing_pipelines.delivery.outbox import add_messages, message_id, outbox_row
from billing_pipelines.delivery.webhooks import queue_webhook
from billing_pipelines.invoicing.seller import Seller
from billing_pipelines.ledger.grants import utc_naive
from billing_pipelines.margin.report import MarginRow
from billing_pipelines.storage import billing_db

STATES = AlertStateRow.__table__


def raised_alerts(balance: Balance, alerts: tuple[str, ...], at: datetime) -> set[str]:
    """Which of `alerts` the balance at `at` raises (pure)."""
    at, used = utc_naive(at), balance.consumed_credits - balance.overage_credits
    had = used + balance.credits_left
    raised = set()
    for name in alerts:
        found = ALERT.fullmatch(name)
        if found["used"]:
            hit = had > 0 and used * 100 >= int(found["used"]) * had
        elif found["days"]:
            soon = at + timedelta(days=int(found["days"]))
            hit = any(g.kind != "plan" and g.credits_left > 0 and g.expiry <= soon for g in balance.grants)
        else:
            hit = balance.overage_credits > 0
        if hit:
            raised.add(name)
    return raised


def alert_title(name: str) -> str:
    found = ALERT.fullmatch(name)
    if found["used"]:
        return f"{found['used']} % of this month's credits used"
    if found["days"]:
        return f"credits expiring within {found['days']} days"
    return "overage started: usage beyond your credits is billed"


def update_states(conn: Connection, org_id: str, period: str, alerts: tuple[str, ...], raised: set[str],
                  now: datetime) -> list[tuple[str, int]]:
    """Record which alerts are raised; returns those that fire now, each with how often it fired
    in the period (1 the first time). Concurrent batches cannot both fire one: the change from
    clear to raised is one conditional update."""
    fired = []
    for alert in alerts:
        key = (STATES.c.org_id == org_id, STATES.c.alert == alert, STATES.c.period == period)
        conn.execute(billing_db.insert_ignore(conn, STATES).values(
            org_id=org_id, alert=alert, period=period, raised=False, fired=0, changed_at=now))
        flip = update(STATES).where(*key, STATES.c.raised == (alert not in raised))
        values = {"raised": alert in raised, "changed_at": now}
        if alert in raised:
            values["fired"] = STATES.c.fired + 1
        if conn.execute(flip.values(**values)).rowcount == 1 and alert in raised:
            fired.append((alert, conn.execute(select(STATES.c.fired).where(*key)).scalar_one()))
    return fired


def raise_alerts(engine: Engine, config: BillingConfig, seller: Seller, balances: dict[str, Balance],
                 at: datetime) -> list[str]:
    """Evaluate each balance's alerts and queue an e-mail and a webhook for each that fires, in
    the transaction that records it fired; returns the webhook-ids
    (`alert_<org>_<alert>_<period>_<n>`) of those that fired. `at`: naive (UTC, the ledger's) or aware."""
    at, fired_ids = utc_naive(at).replace(tzinfo=UTC), []
    for org_id, balance in sorted(balances.items()):
        alerts = config.alerts_of(org_id)
        with engine.begin() as conn:
            for alert, n in update_states(conn, org_id, balance.month, alerts, raised_alerts(balance, alerts, at), at):
                fired_ids.append(_queue_alert(conn, config.customers[org_id], seller, balance, alert, n, at))
    return fired_ids


def _queue_alert(conn: Connection, customer: Customer, seller: Seller, balance: Balance, alert: str, n: int,
                 at: datetime) -> str:
    """Queue the webhook and the e-mail of the `n`-th firing of `alert`; returns its webhook-id."""
    event_id = f"alert_{customer.org_id}_{alert}_{balance.month}_{n}"
    data = {"org_id": customer.org_id, "alert": alert, "period": balance.month, "credits_left": balance.credits_left,
            "consumed_credits": balance.consumed_credits, "overage_credits": balance.overage_credits}
    if customer.webhook_url:
        queue_webhook(conn, customer.org_id, customer.webhook_url, event_id, f"alert.{alert}", data, at)
    if customer.email:
        body = (f"Dear {customer.name},\n\n{alert_title(alert)} ({balance.month}): {balance.credits_left:,} "
                f"credits left, {balance.consumed_credits:,} used this month.\n\n{seller.name}\n")
        add_messages(conn, [outbox_row(message_id(event_id.replace("_", "."), seller), "alert", customer.org_id,
                                       customer.email, f"{customer.name}: {alert_title(alert)}", body, at, seller)])
    return event_id


def queue_margin_alert(engine: Engine, seller: Seller, finance_email: str, month: str, margin: list[MarginRow],
                       target: str, now: datetime) -> str | None:
    """E-mail finance the customers of a month close below the target credit-to-cost ratio
    (once per month and set of customers); returns the Message-ID, None where nothing is sent."""
    below = sorted((m for m in margin if m.below_target), key=lambda m: m.org_id)
    if not below or not finance_email:
        return None
    orgs = hashlib.sha256(" ".join(m.org_id for m in below).encode()).hexdigest()[:12]
    lines = "\n".join(f"  {m.org_id:<24} ratio {m.credit_to_cost_ratio!s:>8}  revenue {m.revenue!s:>12}  "
                      f"COGS {m.cogs_usd!s:>12}" for m in below)
    body = (f"{len(below)} customers were below the {target}x target credit-to-cost ratio when {month} "
            f"closed:\n\n{lines}\n\nThe margin report of {month} has the details.\n")
    identifier = message_id(f"margin.{month}.{orgs}", seller)
    with engine.begin() as conn:
        add_messages(conn, [outbox_row(identifier, "finance_alert", "", finance_email,
                                       f"{month}: {len(below)} customers below the target ratio", body, now, seller)])
    return identifier
