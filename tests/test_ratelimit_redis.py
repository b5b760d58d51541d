"""The Redis backend against the real server: shared slots across processes, crashed workers,
degrade chains, parity with the in-process backend, and failing over when Redis is gone."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import socket
import threading
import time
from dataclasses import replace

import pytest
import redis

from billing_pipelines.config import load_config
from billing_pipelines.ratelimit import (
    ALLOW,
    DEGRADE,
    REJECT,
    FailoverBackend,
    Lease,
    MemoryBackend,
    RateLimiter,
    RedisBackend,
    SimClock,
)
from tests.ratelimit_support import NOV_2026, REDIS_URL, drop_keys, redis_prefix_or_skip, replay, write_config

pytestmark = pytest.mark.redis
FORK = multiprocessing.get_context("fork")
# Count holders and keep the highest count seen, atomically.
TRACK_MAX_LUA = """
local n = redis.call('INCR', KEYS[1])
if n > tonumber(redis.call('GET', KEYS[2]) or 0) then redis.call('SET', KEYS[2], n) end
return n
"""


@pytest.fixture
def prefix():
    prefix = redis_prefix_or_skip()
    yield prefix
    drop_keys(prefix)


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("config")
    write_config(folder)
    return folder


def redis_limiter(config_dir, prefix, **kwargs) -> RateLimiter:
    return RateLimiter(load_config(config_dir), RedisBackend(REDIS_URL, prefix=prefix, deadline=5.0), **kwargs)


def _hammer(config_dir, prefix, seconds, threads, results):
    limiter = redis_limiter(config_dir, prefix, lease_ttl=30)
    client = redis.Redis.from_url(REDIS_URL)
    track = client.register_script(TRACK_MAX_LUA)
    holders, peak = f"{prefix}holders", f"{prefix}peak"
    tallies = []

    def worker():
        tally = {"admitted": 0, "refused": 0, "unexpected": 0}
        until = time.monotonic() + seconds
        while time.monotonic() < until:
            decision = limiter.decide("crowd", random.choice(["frontier-large", "small-fast"]))
            if not decision.admitted:
                tally["refused" if decision.reason == "concurrency" else "unexpected"] += 1
                continue
            track(keys=[holders, peak])
            time.sleep(random.uniform(0, 0.002))
            client.decr(holders)
            tally["admitted" if limiter.release(decision.lease) else "unexpected"] += 1
        tallies.append(tally)

    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put({key: sum(t[key] for t in tallies) for key in ("admitted", "refused",
                                                               "unexpected")} | {"threads": len(tallies)})


def test_processes_hammering_one_org_never_hold_more_than_its_concurrency(config_dir, prefix):
    limit = load_config(config_dir).plans["crowd"].rate_limits.concurrent
    results = FORK.Queue()
    workers = [FORK.Process(target=_hammer, args=(config_dir, prefix, 3.0, 32, results)) for _ in range(4)]
    client = redis.Redis.from_url(REDIS_URL)
    for w in workers:
        w.start()
    sampled = 0
    while any(w.is_alive() for w in workers):
        sampled = max(sampled, client.zcard(f"{prefix}{{crowd}}:leases"))
    tallies = [results.get(timeout=30) for _ in workers]
    for w in workers:
        w.join(timeout=30)
        assert w.exitcode == 0
    peak = int(client.get(f"{prefix}peak"))
    assert peak <= limit, f"holders peaked at {peak}, the org may hold {limit}"
    assert sampled <= limit
    # a concurrency refusal happens only on a full lease set: the cap was reached, not exceeded
    assert [t["threads"] for t in tallies] == [32] * 4 and sum(t["unexpected"] for t in tallies) == 0
    assert sum(t["admitted"] for t in tallies) > 100 and sum(t["refused"] for t in tallies) > 0
    assert client.exists(f"{prefix}{{crowd}}:leases") == 0, "no lease is left at the end"
    assert int(client.get(f"{prefix}holders")) == 0


def _hold_until_killed(config_dir, prefix, ttl, leases):
    decision = redis_limiter(config_dir, prefix, lease_ttl=ttl).decide("solo", "embed-v3")
    leases.put(decision.lease.to_json() if decision.lease else None)
    time.sleep(60)


def test_a_worker_killed_with_sigkill_frees_its_slot_within_the_lease_ttl(config_dir, prefix):
    ttl, leases = 1.0, FORK.Queue()
    worker = FORK.Process(target=_hold_until_killed, args=(config_dir, prefix, ttl, leases))
    worker.start()
    lease = Lease.from_json(leases.get(timeout=10))
    os.kill(worker.pid, signal.SIGKILL)
    worker.join(timeout=10)
    assert worker.exitcode == -signal.SIGKILL
    limiter = redis_limiter(config_dir, prefix)
    client = redis.Redis.from_url(REDIS_URL)
    assert limiter.decide("solo", "small-fast").reason == "concurrency", "the dead worker's slot is held"
    while (decision := limiter.decide("solo", "small-fast")).outcome == REJECT:
        assert decision.reason == "concurrency"
        time.sleep(0.01)
    seconds, micros = client.time()
    freed_at = seconds + micros / 1e6
    assert lease.expires_at <= freed_at <= lease.expires_at + 0.5  # polling slack on a busy machine
    assert lease.expires_at - time.time() < ttl + 0.5


def test_a_degraded_model_that_is_itself_over_its_limit_is_rejected(config_dir, prefix):
    limiter = redis_limiter(config_dir, prefix)
    answers = []
    for _ in range(4):
        answers.append(limiter.decide("solo", "frontier-large"))
        if answers[-1].lease:
            assert limiter.release(answers[-1].lease)
    assert [(d.outcome, d.model) for d in answers] == [
        (ALLOW, "frontier-large"), (DEGRADE, "balanced-medium"), (DEGRADE, "small-fast"), (REJECT, None),
    ]
    assert answers[3].reason == "rate_limited" and 59 < answers[3].retry_after <= 60


def test_heartbeat_extends_and_a_released_lease_cannot_be_renewed(config_dir, prefix):
    limiter = redis_limiter(config_dir, prefix, lease_ttl=5)
    decision = limiter.decide("acme", "small-fast")
    renewed = limiter.heartbeat(decision.lease)
    assert renewed.expires_at >= decision.lease.expires_at and renewed.store == "redis"
    assert limiter.release(renewed) and limiter.heartbeat(renewed) is None
    assert limiter.backend.active_leases("acme") == 0


@pytest.mark.parametrize("store", ["memory", "redis"])
def test_only_the_holder_of_a_lease_can_release_or_renew_it(config_dir, request, store):
    """A lease is recorded under the key that acquired it and the model served: another key, or
    an edited id, org or model, matches no slot, and the slot stays held until its holder acts."""
    clock = SimClock(NOV_2026)
    backend = MemoryBackend(clock) if store == "memory" else RedisBackend(
        REDIS_URL, prefix=request.getfixturevalue("prefix"), clock=clock)
    limiter = RateLimiter(load_config(config_dir), backend, clock=clock, lease_ttl=30)
    lease = limiter.decide("solo", "frontier-large", holder="key-a").lease
    presented = Lease.from_json(lease.to_json(), holder="key-a")
    assert presented == lease and lease.holder == "key-a"
    forgeries = [Lease.from_json(lease.to_json(), holder="key-b"), Lease.from_json(lease.to_json())]
    forgeries += [replace(presented, **edit) for edit in ({"id": "0" * 32}, {"model": "small-fast"})]
    forgeries.append(replace(presented, org_id="acme"))
    for forged in forgeries:
        assert limiter.release(forged) is False and limiter.heartbeat(forged) is None, forged
    assert limiter.backend.active_leases("solo") == 1
    assert limiter.decide("solo", "embed-v3", holder="key-b").reason == "concurrency"
    clock.advance(20)
    assert limiter.heartbeat(presented).expires_at == pytest.approx(clock.now + 30)
    assert limiter.release(presented) is True and limiter.backend.active_leases("solo") == 0


@pytest.mark.parametrize(("org", "model"),
                         [("initech", "embed-v3"), ("acme", "frontier-large"), ("solo", "frontier-large")])
def test_redis_and_in_process_backends_decide_alike_on_a_simulated_clock(config_dir, prefix, org, model):
    config = load_config(config_dir)
    outcomes = []
    for backend in (MemoryBackend, lambda clock: RedisBackend(REDIS_URL, prefix=prefix, clock=clock)):
        clock = SimClock(NOV_2026)
        limiter = RateLimiter(config, backend(clock), clock=clock)
        outcomes.append([(t, d.outcome, d.model, d.remaining_requests, d.retry_after)
                         for t, d in replay(limiter, clock, org, model, 0.1, 90)])
    assert outcomes[0] == outcomes[1]
    assert {o[1] for o in outcomes[0]} >= {ALLOW}


@pytest.fixture
def black_hole():
    """A TCP port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"redis://127.0.0.1:{server.getsockname()[1]}/0"
    server.close()


def _refused_port() -> str:
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"redis://127.0.0.1:{port}/0"


@pytest.mark.parametrize("where", ["refused", "black_hole"])
def test_unreachable_redis_degrades_within_the_deadline_under_a_local_cap(config_dir, request, where):
    url = _refused_port() if where == "refused" else request.getfixturevalue("black_hole")
    deadline = 0.05
    limiter = RateLimiter(load_config(config_dir), FailoverBackend(RedisBackend(url, deadline=deadline)))
    started = time.perf_counter()
    first = limiter.decide("solo", "frontier-large")
    assert time.perf_counter() - started < 2 * deadline + 0.1
    assert (first.outcome, first.model, first.reason) == (DEGRADE, "balanced-medium", "limiter_unavailable")
    assert first.lease.store == "local"
    started = time.perf_counter()
    capped = limiter.decide("solo", "frontier-large")
    assert time.perf_counter() - started < deadline, "a known-dead Redis is not asked again"
    assert (capped.outcome, capped.reason) == (REJECT, "concurrency"), "the local cap holds the plan's slots"
    assert limiter.release(first.lease)
    lone = limiter.decide("solo", "embed-v3")
    assert (lone.outcome, lone.model, lone.reason) == (ALLOW, "embed-v3", "limiter_unavailable")
