"""Shared set-up for the rate-limit tests: a config folder and the Redis fixture."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from billing_pipelines.config import BillingConfig, load_config

PRICEBOOK = """\
currency: USD
target_credit_to_cost_ratio: "3.0"
models:
  - {model: frontier-large, effective_from: 2026-01-01, input_usd_per_1k: "0.0030", output_usd_per_1k: "0.0150",
     degrade_to: balanced-medium}
  - {model: balanced-medium, effective_from: 2026-01-01, input_usd_per_1k: "0.0008", output_usd_per_1k: "0.0032",
     degrade_to: small-fast}
  - {model: small-fast, effective_from: 2026-01-01, input_usd_per_1k: "0.00015", output_usd_per_1k: "0.0006"}
  - {model: embed-v3, effective_from: 2026-01-01, input_usd_per_1k: "0.00002", output_usd_per_1k: "0"}
actions:
  - {action: simple, credits: 1}
"""
PLANS = """\
plans:
  - {plan: free, monthly_fee: "0.00", included_credits: 200, overage_credit_price: null,
     rate_limits: {concurrent: 2, requests_per_minute: 20, burst_multiplier: 2, burst_seconds: 60}}
  - {plan: pro, monthly_fee: "49.00", included_credits: 5000, overage_credit_price: "0.0120",
     rate_limits: {concurrent: 10, requests_per_minute: 300, burst_multiplier: 2, burst_seconds: 60}}
  - {plan: enterprise, monthly_fee: "2000.00", included_credits: 250000, overage_credit_price: "0.0080",
     rate_limits: {concurrent: 50, requests_per_minute: 3000, burst_multiplier: 2, burst_seconds: 60}}
  - {plan: solo, monthly_fee: "10.00", included_credits: 100, overage_credit_price: "0.1",
     rate_limits: {concurrent: 1, requests_per_minute: 1, burst_multiplier: 1, burst_seconds: 0}}
  - {plan: crowd, monthly_fee: "10.00", included_credits: 100, overage_credit_price: "0.1",
     rate_limits: {concurrent: 8, requests_per_minute: 6000000, burst_multiplier: 2, burst_seconds: 60}}
"""
CUSTOMERS = """\
customers:
  - {org_id: acme, plan: pro, start_date: 2026-10-01}
  - {org_id: globex, plan: enterprise, start_date: 2026-09-15}
  - {org_id: initech, plan: free, start_date: 2026-11-01}
  - {org_id: solo, plan: solo, start_date: 2026-01-01}
  - {org_id: crowd, plan: crowd, start_date: 2026-01-01}
  - {org_id: climber, plan: solo, start_date: 2026-01-01}
  - {org_id: saver, plan: free, start_date: 2026-01-01}
  - {org_id: leaver, plan: pro, start_date: 2026-01-01}
  - {org_id: sinker, plan: pro, start_date: 2026-01-01}
plan_changes:  # SPEC §7: from 00:00 UTC of 2026-11-04, the day after NOV_2026
  - {org_id: climber, effective_from: 2026-11-04, plan: pro}
  - {org_id: sinker, effective_from: 2026-11-04, plan: solo}
  - {org_id: saver, effective_from: 2026-11-04, plan: pro}
  - {org_id: leaver, effective_from: 2026-11-04, plan: null}
"""
PLAN_OF = {"acme": "pro", "globex": "enterprise", "initech": "free"}
NOV_2026 = 1793664000.0  # 2026-11-03T00:00:00Z
NOV_4 = NOV_2026 + 86400  # when the plan changes take effect
REDIS_URL = os.environ.get("BILLING_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


def write_config(folder: Path) -> BillingConfig:
    for name, text in (("pricebook.yaml", PRICEBOOK), ("plans.yaml", PLANS), ("customers.yaml", CUSTOMERS)):
        (folder / name).write_text(text)
    return load_config(folder)


def redis_prefix_or_skip() -> str:
    """A fresh key prefix on the test Redis; skip (fail under CI=true) when it is down."""
    import redis

    try:
        redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1).ping()
    except redis.exceptions.RedisError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"Redis at {REDIS_URL} is required under CI: {exc}")
        pytest.skip(f"Redis at {REDIS_URL} is not reachable: {exc}")
    return f"test:rl:{uuid.uuid4().hex}:"


def drop_keys(prefix: str) -> None:
    import redis

    client = redis.Redis.from_url(REDIS_URL)
    keys = list(client.scan_iter(f"{prefix}*"))
    if keys:
        client.delete(*keys)


def replay(limiter, clock, org, model, spacing, seconds):
    """Send one request every `spacing` seconds for `seconds`, each released at once;
    return [(offset, decision)]."""
    start, answers = clock.now, []
    for i in range(round(seconds / spacing) + 1):
        clock.now = start + i * spacing
        decision = limiter.decide(org, model)
        if decision.lease:
            limiter.release(decision.lease)
        answers.append((i * spacing, decision))
    return answers
