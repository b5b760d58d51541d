"""HTTP admission endpoints for the gateway, mounted by ``billing serve``.

Every call needs ``Authorization: Bearer <gateway key>`` (``billing gateway-keys create NAME``):
401 without a live gateway key, 403 with a customer's API token. A lease belongs to the key that
acquired it: released or renewed with another key, or edited, it matches no slot (404).

POST /v1/ratelimit/decide    {"org_id", "model", "est_credits"?: 1}
    200 allow/degrade, 429 rate or concurrency rejection, 402 out of credits, 403 after the
    subscription ended; the body is the decision (with its lease), the rate-limit headers are set
    (see `headers`).
POST /v1/ratelimit/release   {"lease": {...}}  -> 200 {"released": true}; 404 when this key holds no
                                                  such slot (released, lapsed, another key's, edited)
POST /v1/ratelimit/heartbeat {"lease": {...}}  -> 200 {"lease": {...}}; 404 likewise
Bad input (unknown org or model, malformed body) answers 400 {"error": "..."}.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from billing_pipelines.ratelimit.backends import Lease
from billing_pipelines.ratelimit.headers import response_headers
from billing_pipelines.ratelimit.limiter import RateLimiter, UnknownModel, UnknownOrg
from billing_pipelines.serve.server import LimitedRequests, RequestLimits, bearer_token

REJECT_STATUS = {"out_of_credits": 402, "subscription_ended": 403}
UNAUTHORIZED = {"WWW-Authenticate": 'Bearer realm="billing-gateway"'}
NO_SLOT = "this gateway key holds no live lease of that id, org and model (released, lapsed, or not its own)"


@dataclass(frozen=True)
class Callers:
    """Who may call: `gateway_key_id(bearer)` is the id of a live gateway key, else None;
    `org_of_token(bearer)` the org of a live customer token (refused with 403), else None."""

    gateway_key_id: Callable[[str], str | None]
    org_of_token: Callable[[str], str | None] = lambda bearer: None


class BadRequest(ValueError):
    pass


class Unauthorized(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def ratelimit_routes(limiter: RateLimiter, callers: Callers, prefix: str = "/v1/ratelimit") -> list[Route]:
    """The three routes, for mounting into an existing Starlette app."""

    def decide(body: dict, key_id: str) -> JSONResponse:
        org, model, est = body.get("org_id"), body.get("model"), body.get("est_credits", 1)
        if not isinstance(org, str) or not isinstance(model, str):
            raise BadRequest("`org_id` and `model` are required strings")
        if isinstance(est, bool) or not isinstance(est, int) or est < 0:
            raise BadRequest("`est_credits` must be an integer >= 0")
        decision = limiter.decide(org, model, est, holder=key_id)
        status = 200 if decision.admitted else REJECT_STATUS.get(decision.reason, 429)
        return JSONResponse(decision.to_json(), status, headers=response_headers(decision))

    def release(body: dict, key_id: str) -> JSONResponse:
        if limiter.release(_lease(body, key_id)):
            return JSONResponse({"released": True})
        return JSONResponse({"released": False, "error": NO_SLOT}, 404)

    def heartbeat(body: dict, key_id: str) -> JSONResponse:
        renewed = limiter.heartbeat(_lease(body, key_id))
        if renewed is None:
            return JSONResponse({"error": NO_SLOT}, 404)
        return JSONResponse({"lease": renewed.to_json()})

    return [Route(f"{prefix}/{name}", _guarded(fn, callers), methods=["POST"])
            for name, fn in (("decide", decide), ("release", release), ("heartbeat", heartbeat))]


def create_app(limiter: RateLimiter, callers: Callers, limits: RequestLimits = RequestLimits()) -> Starlette:
    """A stand-alone app with the routes, under the request limits of `billing serve`."""
    return Starlette(routes=ratelimit_routes(limiter, callers), middleware=[Middleware(LimitedRequests, limits=limits)])


def _guarded(endpoint, callers: Callers):
    """The route: the caller's key, then the endpoint on the body, in one worker thread (both
    may wait on the database or Redis)."""

    async def guarded(request: Request) -> JSONResponse:
        return await run_in_threadpool(_answer, endpoint, callers, bearer_token(request), await request.body())

    return guarded


def _answer(endpoint, callers: Callers, bearer: str | None, body: bytes) -> JSONResponse:
    try:
        key_id = _gateway_key(callers, bearer)
        return endpoint(_json_object(body), key_id)
    except Unauthorized as exc:
        return JSONResponse({"error": str(exc)}, exc.status, headers=UNAUTHORIZED if exc.status == 401 else None)
    except (BadRequest, UnknownOrg, UnknownModel) as exc:
        return JSONResponse({"error": str(exc.args[0] if exc.args else exc)}, 400)


def _gateway_key(callers: Callers, bearer: str | None) -> str:
    """The id of the gateway key the request carries; Unauthorized (401, 403) without one."""
    key_id = callers.gateway_key_id(bearer) if bearer else None
    if key_id is not None:
        return key_id
    if bearer and callers.org_of_token(bearer) is not None:
        raise Unauthorized(403, "a customer API token cannot call the rate limiter: it needs a gateway key")
    raise Unauthorized(401, "a live gateway key is required (Authorization: Bearer bgk_...)")


def _json_object(body: bytes) -> dict:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # too deep: where mounted without LimitedRequests
        raise BadRequest("the body must be JSON") from exc
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object")
    return document


def _lease(body: dict, key_id: str) -> Lease:
    try:
        return Lease.from_json(body.get("lease"), holder=key_id)
    except ValueError as exc:
        raise BadRequest(f"`lease` must be a lease object as decide returned it: {exc}") from exc
