"""`billing webhook-secret ORG` (the customer's signing secret) and `billing deliver` (send what
is due now, through the `deliver_messages` job): add with `register(subparsers)`."""

from __future__ import annotations

import argparse
from datetime import UTC, datetime

from billing_pipelines.cli.runs import run_job
from billing_pipelines.resources import BillingSettings


def cmd_webhook_secret(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.delivery.service import delivery_engine
    from billing_pipelines.delivery.webhooks import webhook_secret

    if args.org not in settings.billing_config().customers:
        raise SystemExit(f"billing: {args.org!r} is not a customer in {settings.config_dir}/customers.yaml")
    print(webhook_secret(delivery_engine(settings), args.org, datetime.now(UTC)))


def cmd_deliver(args: argparse.Namespace, settings: BillingSettings) -> None:

    run_job("deliver_messages", None, settings)
    print(delivery_summary(settings))


def delivery_summary(settings: BillingSettings) -> str:
    """What the queues hold, per channel, and where e-mail goes."""
    from urllib.parse import urlsplit

    from billing_pipelines.delivery.service import delivery_engine, queue_counts

    where = (f"SMTP {urlsplit(settings.smtp_url).hostname}" if settings.smtp_url
             else f".eml files in {settings.home}/outbox (no BILLING_SMTP_URL)")
    counts = ", ".join(f"{channel}: {c['sent']} sent, {c['failed']} failed, {c['pending'] + c['sending']} pending"
                       for channel, c in queue_counts(delivery_engine(settings)).items())
    return f"delivery: {counts} (failed ones are retried with backoff); e-mail to {where}"


def register(subparsers) -> None:
    """Add `webhook-secret` and `deliver` to the `billing` command line."""
    secret = subparsers.add_parser("webhook-secret", help="a customer's webhook signing secret (whsec_...)")
    secret.add_argument("org", metavar="ORG")
    secret.set_defaults(handler=cmd_webhook_secret)
    deliver = subparsers.add_parser("deliver", help="send the e-mails and webhooks that are due; counts by status")
    deliver.set_defaults(handler=cmd_deliver)
