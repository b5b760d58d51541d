"""The portal's routes on `billing serve`, and who a request is.

GET  /portal/open?link=<token>   a portal link: starts the session and redirects to the page;
                                 403 where the link is altered or expired.
POST /session  {"token": "bpk_…"} the page's sign-in with an API token; POST /session/end ends it.
GET  /v1/usage?month=YYYY-MM     usage by day (default this month), by model and tier.
GET  /v1/invoices                every invoice, adjustment and credit note of the org.
GET  /v1/invoices/{id}/pdf       its PDF; another org's document is 404.

A request is a customer by its `Authorization: Bearer` API token (programs) or by the session
cookie (the page); a bearer token that is not valid is refused even with a session.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from jinja2 import Environment
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from billing_pipelines.periods import add_months, month_key, parse_month
from billing_pipelines.portal.documents import customer_documents, customer_pdf
from billing_pipelines.portal.links import SESSION_COOKIE, SESSION_SECONDS, LinkRefused, org_of_link
from billing_pipelines.portal.usage import usage_by_day
from billing_pipelines.resources import BillingSettings
from billing_pipelines.serve.server import bearer_token
from billing_pipelines.serve.tokens import org_of_token

UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="billing"'}
PRIVATE = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


def session_middleware(secret: str, secure: bool = False) -> Middleware:
    """The session cookie: signed with the server secret, HttpOnly, SameSite=Lax (sent when a
    customer follows a link from an e-mail, never on another site's requests), Secure over HTTPS."""
    return Middleware(SessionMiddleware, secret_key=secret, session_cookie=SESSION_COOKIE, max_age=SESSION_SECONDS,
                      same_site="lax", https_only=secure)


async def customer_of(engine: Engine, request: Request) -> str | None:
    """The org of the request's bearer token, else of its session; None where neither is valid."""
    token = bearer_token(request)
    if token is not None or request.headers.get("authorization"):
        return await run_in_threadpool(org_of_token, engine, token) if token else None
    return request.session.get("org")


def unauthorized() -> JSONResponse:
    return JSONResponse({"error": "sign in: a portal link, or an API token (Authorization: Bearer <token>)"},
                        401, headers=UNAUTHORIZED)


def not_found(what: str) -> JSONResponse:
    return JSONResponse({"error": f"no such {what}"}, 404, headers=PRIVATE)


def portal_routes(engine: Engine, settings: BillingSettings, secret: str, templates: Environment) -> list[Route]:
    """The portal's routes over the billing database and the warehouse of `settings`."""
    store = settings.warehouse().store

    async def open_link(request: Request) -> Response:
        try:
            org_id = org_of_link(secret, request.query_params.get("link", ""))
        except LinkRefused as refusal:
            html = templates.get_template("portal/refused.html").render(message=str(refusal))
            return HTMLResponse(html, 403, headers=PRIVATE)
        request.session.clear()
        request.session["org"] = org_id
        return RedirectResponse("/", 303, headers=PRIVATE)

    async def sign_in(request: Request) -> Response:
        try:
            token = json.loads(await request.body()).get("token", "")
        except (ValueError, AttributeError):
            return JSONResponse({"error": 'the body must be JSON: {"token": "bpk_…"}'}, 400)
        org_id = await run_in_threadpool(org_of_token, engine, str(token)) if token else None
        if org_id is None:
            return JSONResponse({"error": "That token is not valid (or was revoked)."}, 401)
        request.session.clear()
        request.session["org"] = org_id
        return Response(status_code=204)

    async def sign_out(request: Request) -> Response:
        request.session.clear()
        return Response(status_code=204)

    async def usage(request: Request) -> JSONResponse:
        org_id = await customer_of(engine, request)
        if org_id is None:
            return unauthorized()
        this_month = datetime.now(UTC).date().replace(day=1)
        try:
            month = parse_month(request.query_params.get("month") or month_key(this_month))
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        document = await run_in_threadpool(usage_by_day, settings, engine, org_id, month)
        return JSONResponse({**document, "months": _months(settings, org_id, this_month)}, headers=PRIVATE)

    async def invoices(request: Request) -> JSONResponse:
        org_id = await customer_of(engine, request)
        if org_id is None:
            return unauthorized()
        documents = await run_in_threadpool(customer_documents, engine, store, org_id)
        return JSONResponse({"org_id": org_id, "invoices": documents}, headers=PRIVATE)

    async def invoice_pdf(request: Request) -> Response:
        org_id = await customer_of(engine, request)
        if org_id is None:
            return unauthorized()
        found = await run_in_threadpool(customer_pdf, engine, store, org_id, request.path_params["id"])
        if found is None:
            return not_found("invoice PDF")
        name, pdf = found
        return Response(pdf, media_type="application/pdf",
                        headers={**PRIVATE, "Content-Disposition": f'attachment; filename="{name}"'})

    return [
        Route("/portal/open", open_link),
        Route("/session", sign_in, methods=["POST"]),
        Route("/session/end", sign_out, methods=["POST"]),
        Route("/v1/usage", usage),
        Route("/v1/invoices", invoices),
        Route("/v1/invoices/{id:int}/pdf", invoice_pdf),
    ]


def _months(settings: BillingSettings, org_id: str, this_month) -> list[str]:
    """The months a customer can look at, newest first: from its start month to this month."""
    customer = settings.billing_config().customers.get(org_id)
    month = this_month if customer is None else min(customer.start_date.replace(day=1), this_month)
    months = []
    while month <= this_month:
        months.append(month_key(month))
        month = add_months(month, 1)
    return months[::-1]
