"""The gateway's admission endpoints, through Starlette's test client: gateway keys only, leases
bound to the key that acquired them, the plan in effect."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient

from billing_pipelines.ratelimit import MemoryBackend, RateLimiter, RedisBackend, SimClock
from billing_pipelines.serve.ratelimit import Callers, create_app
from tests.ratelimit_support import NOV_4, NOV_2026, REDIS_URL, drop_keys, redis_prefix_or_skip, write_config

KEYS = {"bgk_a_secret": "a", "bgk_b_secret": "b"}  # gateway key -> its id
CUSTOMER_TOKENS = {"bpk_acme_secret": "acme"}
GATEWAY_A, GATEWAY_B = ({"Authorization": f"Bearer {key}"} for key in KEYS)
ROUTES = ("decide", "release", "heartbeat")


@pytest.fixture
def clock():
    return SimClock(NOV_2026)


@pytest.fixture
def limiter(request, tmp_path, clock):
    """In process, or on the real Redis where a test asks for ``limiter`` "redis" (indirect)."""
    if getattr(request, "param", "memory") == "memory":
        backend = MemoryBackend(clock)
    else:
        prefix = redis_prefix_or_skip()
        request.addfinalizer(lambda: drop_keys(prefix))
        backend = RedisBackend(REDIS_URL, prefix=prefix, clock=clock)
    return RateLimiter(write_config(tmp_path), backend, clock=clock, credits_left=lambda org: 0)


@pytest.fixture
def client(limiter):
    with TestClient(create_app(limiter, Callers(KEYS.get, CUSTOMER_TOKENS.get)), headers=GATEWAY_A) as client:
        yield client


def decide(client, org, model, **extra):
    return client.post("/v1/ratelimit/decide", json={"org_id": org, "model": model, **extra})


def test_decide_release_heartbeat_round_trip(client):
    allowed = decide(client, "solo", "frontier-large")
    assert allowed.status_code == 200 and allowed.json()["outcome"] == "allow"
    assert allowed.headers["x-ratelimit-limit-requests"] == "1"
    lease = allowed.json()["lease"]
    busy = decide(client, "solo", "small-fast")
    assert (busy.status_code, busy.json()["reason"], busy.headers["retry-after"]) == (429, "concurrency", "1")
    renewed = client.post("/v1/ratelimit/heartbeat", json={"lease": lease})
    assert renewed.status_code == 200 and renewed.json()["lease"]["id"] == lease["id"]
    assert client.post("/v1/ratelimit/release", json={"lease": lease}).json() == {"released": True}
    again = client.post("/v1/ratelimit/release", json={"lease": lease})
    assert again.status_code == 404 and again.json()["released"] is False
    assert client.post("/v1/ratelimit/heartbeat", json={"lease": lease}).status_code == 404
    degraded = decide(client, "solo", "frontier-large")
    assert degraded.status_code == 200 and degraded.headers["x-degraded-from"] == "frontier-large"
    assert degraded.json()["model"] == "balanced-medium"


@pytest.mark.parametrize("route", ROUTES)
@pytest.mark.parametrize(("authorization", "status"), [
    (None, 401), ("Bearer", 401), ("Basic YTpi", 401), ("Bearer bgk_a_wrong", 401), ("Bearer bpk_nobody", 401),
    ("Bearer bpk_acme_secret", 403),  # a customer's own, valid token
])
def test_only_a_gateway_key_may_call(client, limiter, route, authorization, status):
    headers = {"Authorization": authorization} if authorization else {}
    client.headers.pop("Authorization")
    answer = client.post(f"/v1/ratelimit/{route}", json={"org_id": "acme", "model": "small-fast"}, headers=headers)
    assert answer.status_code == status and "gateway key" in answer.json()["error"]
    assert ("www-authenticate" in answer.headers) == (status == 401)
    assert limiter.backend.active_leases("acme") == 0


@pytest.mark.parametrize("limiter", ["memory", pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
def test_a_caller_without_a_key_cannot_take_an_orgs_slots(client, limiter):
    """Issue 15 finding 4: unauthenticated decides took all 50 of globex's slots."""
    anonymous = TestClient(client.app)
    answers = [anonymous.post("/v1/ratelimit/decide", json={"org_id": "globex", "model": "small-fast"})
               for _ in range(60)]
    assert {a.status_code for a in answers} == {401} and limiter.backend.active_leases("globex") == 0
    assert decide(client, "globex", "small-fast").status_code == 200


@pytest.mark.parametrize("limiter", ["memory", pytest.param("redis", marks=pytest.mark.redis)], indirect=True)
def test_another_key_can_neither_release_nor_renew_a_lease(client, clock):
    lease = decide(client, "solo", "embed-v3").json()["lease"]
    edited = [dict(lease, id="0" * 32), dict(lease, model="small-fast"), dict(lease, org_id="acme")]
    for route in ("release", "heartbeat"):
        for body, headers in [(lease, GATEWAY_B)] + [(e, GATEWAY_A) for e in edited]:
            answer = client.post(f"/v1/ratelimit/{route}", json={"lease": body}, headers=headers)
            assert answer.status_code == 404 and "holds no live lease" in answer.json()["error"], (route, body)
    assert decide(client, "solo", "small-fast").json()["reason"] == "concurrency", "the slot is still held"
    clock.advance(121)  # the TTL: heartbeats by another key did not keep it
    assert client.post("/v1/ratelimit/heartbeat", json={"lease": lease}).status_code == 404
    assert decide(client, "solo", "small-fast").status_code == 200


def test_out_of_credits_is_payment_required(client):
    refused = decide(client, "initech", "small-fast", est_credits=1)
    assert (refused.status_code, refused.json()["reason"]) == (402, "out_of_credits")
    assert "retry-after" not in refused.headers


def test_the_plan_in_effect_decides(client, clock):
    clock.now = NOV_4 - 1
    assert decide(client, "saver", "small-fast").status_code == 402, "free: no overage"
    assert decide(client, "leaver", "small-fast").status_code == 200
    clock.now = NOV_4
    assert decide(client, "saver", "small-fast").status_code == 200, "pro bills overage"
    ended = decide(client, "leaver", "small-fast")
    assert (ended.status_code, ended.json()["reason"], ended.json()["lease"]) == (403, "subscription_ended", None)


@pytest.mark.parametrize(("path", "body", "error"), [
    ("decide", {"org_id": "nobody", "model": "small-fast"}, "unknown org"),
    ("decide", {"org_id": "acme", "model": "gpt-9"}, "no rate"),
    ("decide", {"org_id": "acme"}, "required"),
    ("decide", {"org_id": "acme", "model": "small-fast", "est_credits": -1}, "est_credits"),
    ("decide", [1, 2], "JSON object"),
    ("release", {"lease": {"id": "x"}}, "lease"),
    ("heartbeat", {"lease": "x"}, "lease"),
])
def test_bad_requests_are_400_with_a_reason(client, path, body, error):
    answer = client.post(f"/v1/ratelimit/{path}", json=body)
    assert answer.status_code == 400 and error in answer.json()["error"]


def test_a_body_that_is_not_json_is_400(client):
    answer = client.post("/v1/ratelimit/decide", content=b"{nope")
    assert answer.status_code == 400 and "JSON" in answer.json()["error"]
