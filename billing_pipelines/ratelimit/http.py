"""HTTP admission endpoints for the gateway, mounted by ``billing serve``.

POST /v1/ratelimit/decide    {"org_id", "model", "est_credits"?: 1}
    200 allow/degrade, 429 rate or concurrency rejection, 402 out of credits; the body is the
    decision (with its lease), the rate-limit headers are set (see `headers`).
POST /v1/ratelimit/release   {"lease": {...}}  -> 200 {"released": bool}
POST /v1/ratelimit/heartbeat {"lease": {...}}  -> 200 {"lease": {...}}, 410 when it has lapsed
Bad input (unknown org or model, malformed body) answers 400 {"error": "..."}.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from billing_pipelines.ratelimit.backends import Lease
from billing_pipelines.ratelimit.headers import response_headers
from billing_pipelines.ratelimit.limiter import RateLimiter, UnknownModel, UnknownOrg

REJECT_STATUS = {"out_of_credits": 402}


class BadRequest(ValueError):
    pass


def ratelimit_routes(limiter: RateLimiter, prefix: str = "/v1/ratelimit") -> list[Route]:
    """The three routes, for mounting into an existing Starlette app."""

    async def decide(request: Request) -> JSONResponse:
        body = await _body(request)
        org, model, est = body.get("org_id"), body.get("model"), body.get("est_credits", 1)
        if not isinstance(org, str) or not isinstance(model, str):
            raise BadRequest("`org_id` and `model` are required strings")
        if isinstance(est, bool) or not isinstance(est, int) or est < 0:
            raise BadRequest("`est_credits` must be an integer >= 0")
        decision = await run_in_threadpool(limiter.decide, org, model, est)
        status = 200 if decision.admitted else REJECT_STATUS.get(decision.reason, 429)
        return JSONResponse(decision.to_json(), status, headers=response_headers(decision))

    async def release(request: Request) -> JSONResponse:
        lease = _lease(await _body(request))
        return JSONResponse({"released": await run_in_threadpool(limiter.release, lease)})

    async def heartbeat(request: Request) -> JSONResponse:
        renewed = await run_in_threadpool(limiter.heartbeat, _lease(await _body(request)))
        if renewed is None:
            return JSONResponse({"error": "lease lapsed; its slot is gone"}, 410)
        return JSONResponse({"lease": renewed.to_json()})

    return [Route(f"{prefix}/{name}", _guarded(fn), methods=["POST"])
            for name, fn in (("decide", decide), ("release", release), ("heartbeat", heartbeat))]


def create_app(limiter: RateLimiter | None = None) -> Starlette:
    """A stand-alone app with the routes (the module-level default limiter when none given)."""
    if limiter is None:
        from billing_pipelines.ratelimit import default_limiter

        limiter = default_limiter()
    return Starlette(routes=ratelimit_routes(limiter))


def _guarded(endpoint):
    async def guarded(request: Request) -> JSONResponse:
        try:
            return await endpoint(request)
        except (BadRequest, UnknownOrg, UnknownModel) as exc:
            return JSONResponse({"error": str(exc.args[0] if exc.args else exc)}, 400)

    return guarded


async def _body(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError as exc:
        raise BadRequest("the body must be JSON") from exc
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


def _lease(body: dict) -> Lease:
    try:
        return Lease.from_json(body.get("lease"))
    except ValueError as exc:
        raise BadRequest(f"`lease` must be a lease object as decide returned it: {exc}") from exc
