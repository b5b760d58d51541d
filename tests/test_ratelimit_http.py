"""The gateway's admission endpoints, through Starlette's test client."""

from __future__ import annotations

import pytest
from ratelimit_support import NOV_2026, write_config
from starlette.testclient import TestClient

from billing_pipelines.ratelimit import MemoryBackend, RateLimiter, SimClock
from billing_pipelines.ratelimit.http import create_app


@pytest.fixture
def client(tmp_path):
    clock = SimClock(NOV_2026)
    limiter = RateLimiter(write_config(tmp_path), MemoryBackend(clock), clock=clock, credits_left=lambda org: 0)
    with TestClient(create_app(limiter)) as client:
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
    assert client.post("/v1/ratelimit/release", json={"lease": lease}).json() == {"released": False}
    assert client.post("/v1/ratelimit/heartbeat", json={"lease": lease}).status_code == 410
    degraded = decide(client, "solo", "frontier-large")
    assert degraded.status_code == 200 and degraded.headers["x-degraded-from"] == "frontier-large"
    assert degraded.json()["model"] == "balanced-medium"


def test_out_of_credits_is_payment_required(client):
    refused = decide(client, "initech", "small-fast", est_credits=1)
    assert (refused.status_code, refused.json()["reason"]) == (402, "out_of_credits")
    assert "retry-after" not in refused.headers


@pytest.mark.parametrize(("path", "body", "error"), [
    ("decide", {"org_id": "nobody", "model": "small-fast"}, "unknown org"),
    ("decide", {"org_id": "acme", "model": "gpt-9"}, "no rate"),
    ("decide", {"org_id": "acme"}, "required"),
    ("decide", {"org_id": "acme", "model": "small-fast", "est_credits": -1}, "est_credits"),
    ("decide", [1, 2], "JSON object"),
    ("release", {"lease": {"id": "x"}}, "lease"),
])
def test_bad_requests_are_400_with_a_reason(client, path, body, error):
    answer = client.post(f"/v1/ratelimit/{path}", json=body)
    assert answer.status_code == 400 and error in answer.json()["error"]


def test_a_body_that_is_not_json_is_400(client):
    answer = client.post("/v1/ratelimit/decide", content=b"{nope")
    assert answer.status_code == 400 and "JSON" in answer.json()["error"]
