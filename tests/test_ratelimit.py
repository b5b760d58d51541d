"""Admission rules on a simulated clock, with the in-process backend."""

from __future__ import annotations

import pytest

from billing_pipelines.ratelimit import (
    ALLOW,
    DEGRADE,
    REJECT,
    MemoryBackend,
    Policy,
    RateLimited,
    RateLimiter,
    SimClock,
    UnknownModel,
    UnknownOrg,
    response_headers,
)
from tests.ratelimit_support import NOV_4, NOV_2026, PLAN_OF, replay, write_config


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    return write_config(tmp_path_factory.mktemp("config"))


@pytest.fixture
def clock():
    return SimClock(NOV_2026)


def limiter_for(config, clock, **kwargs) -> RateLimiter:
    return RateLimiter(config, MemoryBackend(clock), clock=clock, **kwargs)


@pytest.mark.parametrize("org", sorted(PLAN_OF))
def test_steady_rate_is_never_throttled(config, clock, org):
    limiter = limiter_for(config, clock)
    steady = config.plan_of(org).rate_limits.requests_per_minute
    answers = replay(limiter, clock, org, "frontier-large", 60 / steady, 600)
    assert len(answers) == steady * 10 + 1
    assert {(d.outcome, d.model) for _, d in answers} == {(ALLOW, "frontier-large")}


@pytest.mark.parametrize("org", sorted(PLAN_OF))
def test_twice_steady_is_admitted_for_exactly_the_burst_window_then_throttled(config, clock, org):
    limits = config.plan_of(org).rate_limits
    interval = 60 / limits.requests_per_minute
    answers = replay(limiter_for(config, clock), clock, org, "embed-v3", interval / 2, 3 * limits.burst_seconds)
    admitted = {round(t, 6) for t, d in answers if d.outcome == ALLOW}
    burst = {round(t, 6) for t, _ in answers if t <= limits.burst_seconds}
    assert burst <= admitted, "every request within the burst window is admitted"
    first_refusal = min(t for t, d in answers if d.outcome == REJECT)
    assert first_refusal == pytest.approx(limits.burst_seconds + interval / 2)
    after = sorted(admitted - burst)
    gaps = {round(b - a, 6) for a, b in zip(after, after[1:])}
    assert gaps == {round(interval, 6)}, "after the window exactly the steady rate is admitted"


def test_a_limited_model_degrades_down_its_chain_and_the_exhausted_chain_is_rejected(config, clock):
    limiter = limiter_for(config, clock)
    answers = []
    for _ in range(4):
        answers.append(limiter.decide("solo", "frontier-large"))
        if answers[-1].lease:
            limiter.release(answers[-1].lease)
    assert [(d.outcome, d.model, d.reason) for d in answers] == [
        (ALLOW, "frontier-large", ""),
        (DEGRADE, "balanced-medium", "rate_limited"),
        (DEGRADE, "small-fast", "rate_limited"),
        (REJECT, None, "rate_limited"),
    ]
    assert answers[3].retry_after == 60.0  # one a minute, no burst: each model admits again in 60 s
    clock.advance(60)
    assert limiter.decide("solo", "balanced-medium").outcome == ALLOW


def test_degrading_skips_a_cheaper_model_that_is_itself_over_its_limit(config, clock):
    limiter = limiter_for(config, clock)
    for model in ("balanced-medium", "frontier-large"):
        limiter.release(limiter.decide("solo", model).lease)
    decision = limiter.decide("solo", "frontier-large")
    assert (decision.outcome, decision.model) == (DEGRADE, "small-fast")


def test_concurrency_is_capped_per_org_across_models_and_freed_on_release(config, clock):
    limiter = limiter_for(config, clock)
    held = [limiter.decide("acme", model) for model in ("frontier-large", "small-fast") * 5]
    assert all(d.outcome == ALLOW for d in held)
    refused = limiter.decide("acme", "embed-v3")
    assert (refused.outcome, refused.reason, refused.retry_after) == (REJECT, "concurrency", 1.0)
    assert limiter.decide("globex", "embed-v3").outcome == ALLOW, "another org has its own slots"
    assert limiter.release(held[0].lease) is True
    assert limiter.release(held[0].lease) is False
    assert limiter.decide("acme", "embed-v3").outcome == ALLOW


def test_a_lapsed_lease_frees_its_slot_and_cannot_be_renewed(config, clock):
    limiter = limiter_for(config, clock, lease_ttl=30)
    first, second = limiter.decide("initech", "small-fast"), limiter.decide("initech", "small-fast")
    clock.advance(20)
    renewed = limiter.heartbeat(first.lease)
    assert renewed.expires_at == pytest.approx(clock.now + 30)
    clock.advance(15)  # second lapsed at +30, first renewed until +50
    assert limiter.heartbeat(second.lease) is None
    assert limiter.backend.active_leases("initech") == 1
    assert limiter.decide("initech", "small-fast").outcome == ALLOW


def test_the_context_manager_releases_and_raises_on_reject(config, clock):
    limiter = limiter_for(config, clock)
    with limiter.lease("solo", "embed-v3") as decision:
        assert decision.model == "embed-v3"
        assert limiter.backend.active_leases("solo") == 1
        with pytest.raises(RateLimited) as refused:
            with limiter.lease("solo", "embed-v3"):
                pytest.fail("a rejected request must not run")
        assert refused.value.decision.reason == "concurrency"
    assert limiter.backend.active_leases("solo") == 0


@pytest.mark.parametrize(("org", "left", "outcome"), [
    ("initech", 0, REJECT), ("initech", 4, REJECT), ("initech", 5, ALLOW), ("initech", None, ALLOW),
    ("acme", 0, ALLOW),  # pro bills overage: never out of credits
])
def test_an_org_out_of_credits_without_overage_price_is_rejected(config, clock, org, left, outcome):
    asked = []
    limiter = limiter_for(config, clock, credits_left=lambda o: asked.append(o) or left)
    decision = limiter.decide(org, "small-fast", est_credits=5)
    assert decision.outcome == outcome
    if outcome == REJECT:
        assert (decision.reason, decision.retry_after, decision.lease) == ("out_of_credits", None, None)
        assert limiter.backend.active_leases(org) == 0


def test_an_upgrade_raises_the_limits_from_its_effective_instant(config, clock):
    """climber: solo (1 slot, 1 a minute, no burst) until 2026-11-04, pro (10 slots, 300 a
    minute, 60 s of burst) from 00:00 UTC that day, by the limiter's clock."""
    limiter = limiter_for(config, clock)
    clock.now = NOV_4 - 0.001
    first, second = limiter.decide("climber", "embed-v3"), limiter.decide("climber", "embed-v3")
    assert [(d.outcome, d.reason, d.limit_requests) for d in (first, second)] == [
        (ALLOW, "", 1), (REJECT, "concurrency", 1)]
    limiter.release(first.lease)
    assert limiter.decide("climber", "embed-v3").reason == "rate_limited", "one a minute on solo"
    clock.now = NOV_4
    upgraded = limiter.decide("climber", "embed-v3")
    assert (upgraded.outcome, upgraded.limit_requests) == (ALLOW, 300), "pro's burst admits it at once"
    held = [upgraded] + [limiter.decide("climber", "small-fast") for _ in range(10)]
    assert [d.outcome for d in held] == [ALLOW] * 10 + [REJECT] and held[-1].reason == "concurrency"


def test_a_cancelled_customer_is_refused_from_the_cancellation_on(config, clock):
    limiter = limiter_for(config, clock)
    clock.now = NOV_4 - 0.001
    assert limiter.decide("leaver", "small-fast").outcome == ALLOW
    clock.now = NOV_4
    ended = limiter.decide("leaver", "small-fast")
    assert (ended.outcome, ended.reason, ended.lease, ended.retry_after) == (REJECT, "subscription_ended", None, None)
    assert "retry-after" not in response_headers(ended)
    assert limiter.backend.active_leases("leaver") == 1, "the refusal took no slot"
    clock.advance(40 * 86400)
    assert limiter.decide("leaver", "small-fast").reason == "subscription_ended"


@pytest.mark.parametrize(("when", "outcome", "reason"), [(NOV_4 - 0.001, REJECT, "out_of_credits"), (NOV_4, ALLOW, "")])
def test_the_credits_rule_follows_the_plan_in_effect(config, clock, when, outcome, reason):
    """saver: free (no overage price) until 2026-11-04, pro (bills overage) from then."""
    clock.now = when
    decision = limiter_for(config, clock, credits_left=lambda org: 0).decide("saver", "small-fast")
    assert (decision.outcome, decision.reason) == (outcome, reason)


def test_unknown_org_and_model_are_clear_errors(config, clock):
    limiter = limiter_for(config, clock)
    with pytest.raises(UnknownOrg, match="nobody"):
        limiter.decide("nobody", "small-fast")
    with pytest.raises(UnknownModel, match="gpt-9"):
        limiter.decide("acme", "gpt-9")
    with pytest.raises(ValueError, match="est_credits"):
        limiter.decide("acme", "small-fast", est_credits=-1)
    clock.now = NOV_2026 - 366 * 86400  # 2025: no rate effective yet
    with pytest.raises(UnknownModel, match="2025"):
        limiter.decide("acme", "small-fast")


def test_response_headers(config, clock):
    limiter = limiter_for(config, clock)
    allowed = limiter.decide("solo", "frontier-large")
    assert response_headers(allowed) == {
        "x-ratelimit-limit-requests": "1", "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": "60.000s",
    }
    limiter.release(allowed.lease)
    clock.advance(0.5)
    degraded = limiter.decide("solo", "frontier-large")
    assert response_headers(degraded)["x-degraded-from"] == "frontier-large"
    limiter.release(degraded.lease)
    limiter.release(limiter.decide("solo", "frontier-large").lease)
    rejected = response_headers(limiter.decide("solo", "frontier-large"))
    assert rejected["retry-after"] == "60" and rejected["x-ratelimit-remaining-requests"] == "0"
    assert rejected["x-ratelimit-reset-requests"] == "59.500s"
    burst = limiter_for(config, clock).decide("acme", "small-fast")
    assert burst.remaining_requests == 300  # 301 back to back: 1 + (2 - 1) x 60 s x 5/s


def test_policy_in_integer_microseconds(config):
    assert Policy.of(config.plans["pro"].rate_limits) == Policy(10, 300, 200_000, 60_000_000)
    assert Policy.of(config.plans["solo"].rate_limits).tolerance_us == 0


def test_module_functions_use_a_limiter_from_the_environment(config, tmp_path, monkeypatch):
    from billing_pipelines import ratelimit

    write_config(tmp_path)
    monkeypatch.setenv("BILLING_CONFIG", str(tmp_path))
    monkeypatch.delenv("BILLING_REDIS_URL", raising=False)
    ratelimit.configure(None)
    try:
        assert isinstance(ratelimit.default_limiter().backend, MemoryBackend)
        with ratelimit.lease("solo", "small-fast") as decision:
            assert ratelimit.heartbeat(decision.lease) is not None
            assert ratelimit.decide("solo", "small-fast").reason == "concurrency"
        assert ratelimit.release(decision.lease) is False, "the context manager released it"
    finally:
        ratelimit.configure(None)
