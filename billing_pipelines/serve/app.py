"""`billing serve`: the balance API, the customer portal and the rate limiter's routes.

GET /v1/balance  (Authorization: Bearer <token>, or the portal's session) -> the balance of the
                 customer's org only; 401 without a valid, unrevoked token or a session; 404
                 before its first balance is computed.
GET /            the customer portal page (signs in with an API token where no portal link
                 did, then refreshes itself every few seconds); the portal's other routes in
                 `portal.routes`.
/static/...      its CSS and script; /v1/ratelimit/... the gateway's admission endpoints (with a
                 gateway key, see `ratelimit.http`).
Every route is under the request limits of `web.RequestLimits` (middleware `LimitedRequests`).
"""

from __future__ import annotations

import os
from functools import partial

from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from billing_pipelines.balances import state
from billing_pipelines.paths import resource_dir
from billing_pipelines.portal.links import portal_secret
from billing_pipelines.ratelimit.limiter import RateLimiter
from billing_pipelines.resources import BillingSettings
from billing_pipelines.serve.portal import customer_of, portal_routes, session_middleware, unauthorized
from billing_pipelines.serve.ratelimit import Callers, ratelimit_routes
from billing_pipelines.serve.server import LimitedRequests, RequestLimits
from billing_pipelines.serve.tokens import LiveGatewayKeys, org_of_token

REFRESH_SECONDS = 3


def create_app(engine: Engine, limiter: RateLimiter | None = None, limits: RequestLimits = RequestLimits(),
               key_seconds: float = 5.0, *, settings: BillingSettings, secure_cookies: bool = False) -> Starlette:
    """The app over the billing database `engine` and the warehouse of `settings` (the portal's
    usage and PDFs); with a limiter, its routes too, for the gateway keys of `engine` (a revoked
    one is refused within `key_seconds`); every route under `limits`."""
    templates = Environment(loader=FileSystemLoader(resource_dir("templates")), autoescape=select_autoescape())
    secret = portal_secret(engine)

    async def balance(request: Request) -> JSONResponse:
        org_id = await customer_of(engine, request)
        if org_id is None:
            return unauthorized()
        document = await run_in_threadpool(state.balance_document, engine, org_id)
        if document is None:
            return JSONResponse({"error": f"no balance computed for {org_id} yet"}, 404)
        return JSONResponse(document, headers={"Cache-Control": "no-store"})

    async def page(request: Request) -> HTMLResponse:
        html = templates.get_template("portal/balance.html").render(refresh_seconds=REFRESH_SECONDS)
        return HTMLResponse(html)

    routes = [
        Route("/", page),
        Route("/v1/balance", balance),
        Mount("/static", StaticFiles(directory=resource_dir("assets") / "portal"), name="static"),
        *portal_routes(engine, settings, secret, templates),
    ]
    if limiter:
        routes += ratelimit_routes(limiter,
                                   Callers(LiveGatewayKeys(engine, key_seconds), partial(org_of_token, engine)))
    middleware = [Middleware(LimitedRequests, limits=limits), session_middleware(secret, secure_cookies)]
    return Starlette(routes=routes, middleware=middleware)


def serve_app(settings: BillingSettings, limits: RequestLimits = RequestLimits()) -> Starlette:
    """The app `billing serve` runs: balance API, portal and page on the billing database, and
    the rate limiter with the live balances. Session cookies are Secure where the portal's
    public address (BILLING_PUBLIC_URL) is HTTPS."""
    engine = state.balances_engine(settings.database_url)
    return create_app(engine, live_limiter(settings.billing_config(), engine), limits, settings=settings,
                      secure_cookies=public_url().startswith("https://"))


def public_url() -> str:
    """Where customers reach `billing serve`: BILLING_PUBLIC_URL, default http://127.0.0.1:8000."""
    return os.environ.get("BILLING_PUBLIC_URL", "http://127.0.0.1:8000")


def app_from_env() -> Starlette:
    """serve_app of the environment's settings (SPEC §6), as a uvicorn factory: `uvicorn --factory
    billing_pipelines.serve.app:app_from_env --http billing_pipelines.serve.server:LimitedHttpProtocol`
    (the protocol bounds request heads as `billing serve` does)."""
    return serve_app(BillingSettings.from_env())


def live_limiter(config, engine: Engine) -> RateLimiter:
    """The rate limiter of BILLING_REDIS_URL (in process where unset), refusing an org without
    overage billing once its live balance has no credits left."""
    from billing_pipelines.ratelimit.backends import backend_from_env

    return RateLimiter(config, backend_from_env(), credits_left=partial(state.credits_left, engine))
