"""`billing serve`, `billing portal-link ORG` (a customer's sign-in link to the portal),
`billing tokens create|revoke|list` (customers' API tokens) and `billing gateway-keys
create|revoke|list` (gateways' keys for the rate limiter): add with `register(subparsers)`."""

from __future__ import annotations

import argparse
import sys

from billing_pipelines.portal.links import LINK_MINUTES
from billing_pipelines.resources import BillingSettings


def cmd_serve(args: argparse.Namespace, settings: BillingSettings) -> None:
    import uvicorn

    from billing_pipelines.serve.app import serve_app
    from billing_pipelines.serve.server import server_config

    app = serve_app(settings)
    print(f"billing serve: http://{args.host}:{args.port}/ (customer portal; API /v1/balance, /v1/usage, "
          "/v1/invoices; rate limiter /v1/ratelimit/)")
    uvicorn.Server(server_config(app, args.host, args.port, log_level="warning")).run()


def cmd_portal_link(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.balances.state import balances_engine
    from billing_pipelines.portal.links import portal_secret, portal_url, sign_link
    from billing_pipelines.serve.app import public_url

    if args.org not in settings.billing_config().customers:
        raise SystemExit(f"billing: {args.org!r} is not a customer in {settings.config_dir}/customers.yaml")
    if args.minutes <= 0:
        raise SystemExit("billing: --minutes must be more than 0")
    token = sign_link(portal_secret(balances_engine(settings.database_url)), args.org, args.minutes)
    print(portal_url(args.base_url or public_url(), token))
    print(f"signs {args.org} in to the portal for {args.minutes:g} minutes after now; send it to the customer only",
          file=sys.stderr)


# command -> (what one is called, whom it belongs to, what for)
KINDS = {
    "tokens": ("token", "org", "customers' API tokens for the balance API"),
    "gateway-keys": ("gateway key", "name", "gateways' keys for the rate-limit endpoints"),
}


def _credentials(kind: str):
    from billing_pipelines.serve import tokens

    return {"tokens": tokens.CUSTOMER_TOKENS, "gateway-keys": tokens.GATEWAY_KEYS}[kind]


def cmd_create(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.balances.state import balances_engine

    if args.kind == "tokens" and args.owner not in settings.billing_config().customers:
        raise SystemExit(f"billing: {args.owner!r} is not a customer in {settings.config_dir}/customers.yaml")
    if not args.owner.strip():
        raise SystemExit("billing: the name must not be empty")
    credential_id, secret = _credentials(args.kind).create(balances_engine(settings.database_url), args.owner)
    print(secret)
    print(f"{KINDS[args.kind][0]} id {credential_id} for {args.owner}: shown once, store it now "
          f"(revoke with `billing {args.kind} revoke {credential_id}`)", file=sys.stderr)


def cmd_revoke(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.balances.state import balances_engine

    owner = _credentials(args.kind).revoke(balances_engine(settings.database_url), args.credential)
    if owner is None:
        raise SystemExit(f"billing: no live {KINDS[args.kind][0]} {args.credential!r}")
    print(f"revoked a {KINDS[args.kind][0]} of {owner}")


def cmd_list(args: argparse.Namespace, settings: BillingSettings) -> None:
    from billing_pipelines.balances.state import balances_engine

    for row in _credentials(args.kind).listing(balances_engine(settings.database_url), args.owner):
        credential_id, owner, created, revoked = row.values()
        status = f"revoked {revoked:%Y-%m-%d %H:%M}" if revoked else "live"
        print(f"{credential_id}  {owner:<24} created {created:%Y-%m-%d %H:%M}  {status}")


def register(subparsers) -> None:
    """Add `serve`, `tokens` and `gateway-keys` to the `billing` command line."""
    serve = subparsers.add_parser("serve", help="balance API, customer portal and rate-limit endpoints")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.set_defaults(handler=cmd_serve)
    link = subparsers.add_parser("portal-link", help="print a link that signs a customer in to the portal for a while")
    link.add_argument("org", metavar="ORG")
    link.add_argument("--minutes", type=float, default=LINK_MINUTES, help=f"how long it works (default {LINK_MINUTES})")
    link.add_argument("--base-url", help="the portal's address (default BILLING_PUBLIC_URL, else http://127.0.0.1:8000)")
    link.set_defaults(handler=cmd_portal_link)
    for kind, (_, owner, what) in KINDS.items():
        parser = subparsers.add_parser(kind, help=what)
        sub = parser.add_subparsers(dest=f"{kind}_command", required=True)
        create = sub.add_parser("create", help=f"create one for {owner.upper()} and print it (once)")
        create.add_argument("owner", metavar=owner.upper())
        revoke = sub.add_parser("revoke", help="revoke one (its id or itself)")
        revoke.add_argument("credential", metavar="ID|SECRET")
        listing = sub.add_parser("list", help=f"ids, never secrets, optionally of one {owner.upper()}")
        listing.add_argument("owner", metavar=owner.upper(), nargs="?")
        for command, handler in ((create, cmd_create), (revoke, cmd_revoke), (listing, cmd_list)):
            command.set_defaults(handler=handler, kind=kind)
