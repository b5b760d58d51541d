"""`billing webhook-secret ORG` (the customer's signing secret) and `billing deliver` (send what
is due now, through the `deliver_messages` job): add with `register(subparsers)`."""

from __future__ import annotations

import argparse
import json
from datetime import datetime, timezone

from billing_pipelines.resources import BillingSettings


def cmd_webhook_secret(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.delivery.service import delivery_engine
    from billing_pipelines.delivery.webhooks import webhook_secret

    if args.org not in settings.billing_config().customers:
        raise SystemExit(f"billing: {args.org!r} is not a customer in {settings.config_dir}/customers.yaml")
    print(webhook_secret(delivery_engine(settings), args.org, datetime.now(timezone.utc)))


def cmd_deliver(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.cli import run_job
    from billing_pipelines.delivery.service import delivery_engine, queue_counts

    run_job("deliver_messages", None, settings)
    print(json.dumps(queue_counts(delivery_engine(settings)), indent=1))


def register(subparsers) -> None:
    """Add `webhook-secret` and `deliver` to the `billing` command line."""
    secret = subparsers.add_parser("webhook-secret", help="a customer's webhook signing secret (whsec_...)")
    secret.add_argument("org", metavar="ORG")
    secret.set_defaults(handler=cmd_webhook_secret)
    deliver = subparsers.add_parser("deliver", help="send the e-mails and webhooks that are due; counts by status")
    deliver.set_defaults(handler=cmd_deliver)
