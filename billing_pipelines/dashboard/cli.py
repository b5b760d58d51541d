"""`billing serve` and `billing tokens create|revoke|list`: add with `register(subparsers)`."""

from __future__ import annotations

import argparse
import sys

from billing_pipelines.resources import BillingSettings


def cmd_serve(args: argparse.Namespace, settings: BillingSettings) -> None:
    import uvicorn

    from billing_pipelines.dashboard.app import serve_app

    app = serve_app(settings)
    print(f"billing serve: http://{args.host}:{args.port}/ (balance API /v1/balance, rate limiter /v1/ratelimit/)")
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")


def cmd_tokens_create(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.dashboard.state import dashboard_engine
    from billing_pipelines.dashboard.tokens import create_token

    if args.org not in settings.billing_config().customers:
        raise SystemExit(f"billing: {args.org!r} is not a customer in {settings.config_dir}/customers.yaml")
    token_id, token = create_token(dashboard_engine(settings.database_url), args.org)
    print(token)
    print(f"token id {token_id} for {args.org}: shown once, store it now "
          f"(revoke with `billing tokens revoke {token_id}`)", file=sys.stderr)


def cmd_tokens_revoke(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.dashboard.state import dashboard_engine
    from billing_pipelines.dashboard.tokens import revoke_token

    org_id = revoke_token(dashboard_engine(settings.database_url), args.token)
    if org_id is None:
        raise SystemExit(f"billing: no live token {args.token!r}")
    print(f"revoked a token of {org_id}")


def cmd_tokens_list(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.dashboard.state import dashboard_engine
    from billing_pipelines.dashboard.tokens import list_tokens

    for t in list_tokens(dashboard_engine(settings.database_url), args.org):
        status = f"revoked {t['revoked_at']:%Y-%m-%d %H:%M}" if t["revoked_at"] else "live"
        print(f"{t['token_id']}  {t['org_id']:<24} created {t['created_at']:%Y-%m-%d %H:%M}  {status}")


def register(subparsers) -> None:
    """Add `serve` and `tokens` to the `billing` command line."""
    serve = subparsers.add_parser("serve", help="balance API, customer page and rate-limit endpoints")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=cmd_serve)

    tokens = subparsers.add_parser("tokens", help="customers' API tokens for the balance API")
    sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = sub.add_parser("create", help="create a token for ORG and print it (once)")
    create.add_argument("org")
    create.set_defaults(handler=cmd_tokens_create)
    revoke = sub.add_parser("revoke", help="revoke a token (its id or the token itself)")
    revoke.add_argument("token")
    revoke.set_defaults(handler=cmd_tokens_revoke)
    listing = sub.add_parser("list", help="tokens (ids, never secrets), optionally of one ORG")
    listing.add_argument("org", nargs="?")
    listing.set_defaults(handler=cmd_tokens_list)
