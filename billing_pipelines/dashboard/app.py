"""`billing serve`: the balance API, the customer page and the rate limiter's routes.

GET /v1/balance  (Authorization: Bearer <token>) -> the balance of the token's org only;
                 401 without a valid, unrevoked token; 404 before its first balance is computed.
GET /            the customer page (asks for the token, then refreshes itself every few seconds).
/static/...      its CSS and script; /v1/ratelimit/... the gateway's admission endpoints (with a
                 gateway key, see `ratelimit.http`).
Every route is under the request limits of `web.RequestLimits` (middleware `LimitedRequests`).
"""

from __future__ import annotations

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

from billing_pipelines.dashboard import state
from billing_pipelines.dashboard.tokens import LiveGatewayKeys, org_of_token
from billing_pipelines.paths import resource_dir
from billing_pipelines.ratelimit.http import Callers, ratelimit_routes
from billing_pipelines.ratelimit.limiter import RateLimiter
from billing_pipelines.web import LimitedRequests, RequestLimits, bearer_token

REFRESH_SECONDS = 3
UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="billing"'}


def create_app(engine: Engine, limiter: RateLimiter | None = None, limits: RequestLimits = RequestLimits(),
               key_seconds: float = 5.0) -> Starlette:
    """The app over the billing database `engine`; with a limiter, its routes too, for the
    gateway keys of `engine` (a revoked one is refused within `key_seconds`); every route under
    `limits`."""
    templates = Environment(loader=FileSystemLoader(resource_dir("templates")), autoescape=select_autoescape())

    async def balance(request: Request) -> JSONResponse:
        token = bearer_token(request)
        org_id = await run_in_threadpool(org_of_token, engine, token) if token else None
        if org_id is None:
            return JSONResponse({"error": "a valid API token is required (Authorization: Bearer <token>)"},
                                401, headers=UNAUTHORIZED)
        document = await run_in_threadpool(state.balance_document, engine, org_id)
        if document is None:
            return JSONResponse({"error": f"no balance computed for {org_id} yet"}, 404)
        return JSONResponse(document, headers={"Cache-Control": "no-store"})

    async def page(request: Request) -> HTMLResponse:
        html = templates.get_template("dashboard/balance.html").render(refresh_seconds=REFRESH_SECONDS)
        return HTMLResponse(html)

    routes = [
        Route("/", page),
        Route("/v1/balance", balance),
        Mount("/static", StaticFiles(directory=resource_dir("assets") / "dashboard"), name="static"),
    ]
    if limiter:
        routes += ratelimit_routes(limiter,
                                   Callers(LiveGatewayKeys(engine, key_seconds), partial(org_of_token, engine)))
    return Starlette(routes=routes, middleware=[Middleware(LimitedRequests, limits=limits)])


def serve_app(settings, limits: RequestLimits = RequestLimits()) -> Starlette:
    """The app `billing serve` runs: balance API and page on the billing database, and the rate
    limiter with the live balances."""
    engine = state.dashboard_engine(settings.database_url)
    return create_app(engine, live_limiter(settings.billing_config(), engine), limits)


def app_from_env() -> Starlette:
    """serve_app of the environment's settings (SPEC §6), as a uvicorn factory: `uvicorn --factory
    billing_pipelines.dashboard.app:app_from_env --http billing_pipelines.web:LimitedHttpProtocol`
    (the protocol bounds request heads as `billing serve` does)."""
    from billing_pipelines.resources import BillingSettings

    return serve_app(BillingSettings.from_env())


def live_limiter(config, engine: Engine) -> RateLimiter:
    """The rate limiter of BILLING_REDIS_URL (in process where unset), refusing an org without
    overage billing once its live balance has no credits left."""
    from billing_pipelines.ratelimit.backends import backend_from_env

    return RateLimiter(config, backend_from_env(), credits_left=partial(state.credits_left, engine))
