"""`billing serve`: GET /v1/balance answers only for the org of a valid, unrevoked token; the
customer page and the rate limiter's routes (for gateway keys only) are served by the same app;
`billing tokens` and `billing gateway-keys`."""

from __future__ import annotations

import argparse

import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from billing_pipelines.balances.live import process_landed_file
from billing_pipelines.balances.models import ApiTokenRow, GatewayKeyRow
from billing_pipelines.balances.state import balances_engine
from billing_pipelines.cli import serve as serve_cli
from billing_pipelines.ratelimit import SimClock
from billing_pipelines.serve.app import create_app, live_limiter, serve_app
from billing_pipelines.serve.tokens import (
    LiveGatewayKeys,
    create_gateway_key,
    create_token,
    gateway_key_id,
    revoke_gateway_key,
    revoke_token,
)
from tests.balances_support import land, live_settings, now_event


@pytest.fixture
def served(tmp_path):
    settings = live_settings(tmp_path)
    process_landed_file(settings, land(settings, "a.jsonl", [
        now_event("a-1", action="complex"), now_event("g-1", org="globex", model="frontier-large"),
    ]))
    engine = balances_engine(settings.database_url)
    limiter = live_limiter(settings.billing_config(), engine)
    client = TestClient(create_app(engine, limiter, key_seconds=0, settings=settings))
    return settings, engine, client


def _get(client, token=None, **kwargs):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.get("/v1/balance", headers=headers, **kwargs)


def test_missing_token_is_401(served):
    _, _, client = served
    response = _get(client)
    assert response.status_code == 401 and "Bearer" in response.headers["www-authenticate"]
    assert client.get("/v1/balance", headers={"Authorization": "Basic YWNtZTpwdw=="}).status_code == 401


def test_wrong_token_is_401(served):
    _, engine, client = served
    _, token = create_token(engine, "acme")
    assert _get(client, token + "x").status_code == 401
    assert _get(client, "bpk_nothing_here").status_code == 401


def test_a_token_shows_its_own_org_only(served):
    _, engine, client = served
    _, acme = create_token(engine, "acme")
    _, globex = create_token(engine, "globex")
    mine = _get(client, acme).json()
    theirs = _get(client, globex, params={"org_id": "acme"}).json()  # no way to ask for another org
    assert mine["org_id"] == "acme" and mine["consumed_credits"] == 5
    assert theirs["org_id"] == "globex" and theirs["consumed_credits"] == 1
    assert all(g["grant_id"].startswith(("plan:globex", "rollover:globex")) for g in theirs["grants"])
    assert {u["model"] for u in theirs["usage"]["by_model"]} == {"frontier-large"}


def test_revoked_token_is_401(served):
    _, engine, client = served
    token_id, token = create_token(engine, "acme")
    _, other = create_token(engine, "acme")
    assert _get(client, token).status_code == 200
    assert revoke_token(engine, token_id) == "acme"
    assert _get(client, token).status_code == 401
    assert _get(client, other).status_code == 200
    assert revoke_token(engine, other) == "acme" and _get(client, other).status_code == 401
    assert revoke_token(engine, token_id) is None


def test_tokens_are_stored_hashed(served):
    _, engine, _ = served
    _, token = create_token(engine, "acme")
    with engine.connect() as conn:
        stored = conn.execute(select(ApiTokenRow.__table__)).mappings().all()
    assert token not in repr(stored)
    assert len(stored[0]["token_sha256"]) == 64


def test_balance_document(served):
    _, engine, client = served
    _, token = create_token(engine, "acme")
    body = _get(client, token).json()
    assert body["credits_left"] == sum(g["credits_left"] for g in body["grants"])
    assert body["usage"]["by_tier"] == [{"action": "complex", "requests": 1, "credits": 5}]
    assert body["as_of"].endswith("Z") and body["overage_amount"] == "0.00"
    assert all(g["expires_at"] > body["as_of"] for g in body["grants"])


def test_page_assets_and_rate_limiter_are_served(served):
    _, engine, client = served
    page = client.get("/")
    assert page.status_code == 200 and "/static/portal.js" in page.text
    assert client.get("/static/portal.css").status_code == 200
    gateway = {"Authorization": f"Bearer {create_gateway_key(engine, 'gateway-1')[1]}"}
    decision = client.post("/v1/ratelimit/decide", json={"org_id": "acme", "model": "small-fast"}, headers=gateway)
    assert decision.status_code == 200 and decision.json()["lease"]
    unknown = client.post("/v1/ratelimit/decide", json={"org_id": "nobody", "model": "small-fast"}, headers=gateway)
    assert unknown.status_code == 400


def test_the_rate_limiter_takes_live_gateway_keys_and_refuses_customer_tokens(served):
    _, engine, client = served
    key_id, key = create_gateway_key(engine, "gateway-1")
    _, token = create_token(engine, "acme")
    ask = lambda bearer: client.post(  # noqa: E731
        "/v1/ratelimit/decide", json={"org_id": "acme", "model": "small-fast"},
        headers={"Authorization": f"Bearer {bearer}"})
    assert ask(key).status_code == 200
    assert ask(token).status_code == 403 and "customer API token" in ask(token).json()["error"]
    assert ask(key + "x").status_code == 401
    assert _get(client, key).status_code == 401, "a gateway key reads no balance"
    assert revoke_gateway_key(engine, key_id) == "gateway-1"
    assert ask(key).status_code == 401
    with engine.connect() as conn:
        stored = conn.execute(select(GatewayKeyRow.__table__)).mappings().all()
    assert key not in repr(stored) and len(stored[0]["key_sha256"]) == 64


def test_live_gateway_keys_are_remembered_for_seconds_only(served):
    _, engine, _ = served
    key_id, key = create_gateway_key(engine, "gateway-1")
    clock = SimClock(0)
    live = LiveGatewayKeys(engine, seconds=5, clock=clock)
    assert live(key) == key_id and live("bgk_unknown_x") is None
    revoke_gateway_key(engine, key_id)
    clock.advance(4.9)
    assert live(key) == key_id, "remembered: no database read"
    clock.advance(0.1)
    assert live(key) is None and live(key) is None


def test_the_limiter_sees_the_live_balance_of_a_plan_without_overage(tmp_path):
    settings = live_settings(tmp_path)
    process_landed_file(settings, land(settings, "a.jsonl", [
        now_event(f"i-{n}", org="initech", action="complex") for n in range(41)  # 205 > 200 credits
    ]))
    _, key = create_gateway_key(balances_engine(settings.database_url), "gateway-1")
    client = TestClient(serve_app(settings), headers={"Authorization": f"Bearer {key}"})
    response = client.post("/v1/ratelimit/decide", json={"org_id": "initech", "model": "small-fast"})
    assert response.status_code == 402


def serve_commands(settings):
    """`billing tokens|gateway-keys ...` run on `settings`, as the CLI would."""
    parser = argparse.ArgumentParser()
    serve_cli.register(parser.add_subparsers(dest="command"))
    return lambda *argv: (lambda a: a.handler(a, settings))(parser.parse_args(list(argv)))


def test_tokens_commands(tmp_path, capsys):
    run = serve_commands(live_settings(tmp_path))
    run("tokens", "create", "acme")
    out, err = capsys.readouterr()
    token, token_id = out.strip(), err.split()[2]
    assert token.startswith("bpk_") and token_id in token
    run("tokens", "list")
    assert token_id in capsys.readouterr().out
    run("tokens", "revoke", token_id)
    assert "revoked" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="not a customer"):
        run("tokens", "create", "nobody")
    with pytest.raises(SystemExit, match="no live token"):
        run("tokens", "revoke", token_id)


def test_gateway_keys_commands(tmp_path, capsys):
    settings = live_settings(tmp_path)
    run = serve_commands(settings)
    run("gateway-keys", "create", "gateway-eu-1")
    out, err = capsys.readouterr()
    key, key_id = out.strip(), err.split()[3]
    assert key.startswith(f"bgk_{key_id}_") and "shown once" in err
    client = TestClient(serve_app(settings), headers={"Authorization": f"Bearer {key}"})
    assert client.post("/v1/ratelimit/decide", json={"org_id": "acme", "model": "small-fast"}).status_code == 200
    run("gateway-keys", "list")
    listed = capsys.readouterr().out
    assert key_id in listed and "gateway-eu-1" in listed and "live" in listed and key not in listed
    run("gateway-keys", "revoke", key)
    assert "revoked a gateway key of gateway-eu-1" in capsys.readouterr().out
    assert gateway_key_id(balances_engine(settings.database_url), key) is None
    run("gateway-keys", "list", "gateway-eu-1")
    assert "revoked" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="no live gateway key"):
        run("gateway-keys", "revoke", key_id)
    with pytest.raises(SystemExit, match="empty"):
        run("gateway-keys", "create", " ")
