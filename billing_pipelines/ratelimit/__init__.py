"""Rate limiting as margin protection: admission control for the AI gateway (issue 7).

``decide(org, model, est_credits)`` answers allow (with a lease), degrade (to a cheaper model,
with a lease) or reject (with retry-after); ``release``/``heartbeat`` manage the lease and
``lease(...)`` is the context manager. The module-level functions use a limiter built from
BILLING_CONFIG and BILLING_REDIS_URL (in process when unset); build a `RateLimiter` yourself to
pass a credits-left provider. Rules: `limiter`; burst model: `policy`; backends: `backends`.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from billing_pipelines.ratelimit.backends import FailoverBackend, Lease, MemoryBackend, RedisBackend, backend_from_env
from billing_pipelines.ratelimit.headers import response_headers
from billing_pipelines.ratelimit.limiter import (
    ALLOW,
    DEGRADE,
    REJECT,
    Decision,
    RateLimited,
    RateLimiter,
    UnknownModel,
    UnknownOrg,
)
from billing_pipelines.ratelimit.policy import Policy, SimClock

__all__ = [
    "ALLOW", "DEGRADE", "REJECT", "Decision", "FailoverBackend", "Lease", "MemoryBackend", "Policy",
    "RateLimited", "RateLimiter", "RedisBackend", "SimClock", "UnknownModel", "UnknownOrg",
    "backend_from_env", "configure", "decide", "default_limiter", "heartbeat", "lease", "release",
    "response_headers",
]

_default: RateLimiter | None = None


def configure(limiter: RateLimiter | None) -> None:
    """Install the limiter the module-level functions use (None: rebuild from the environment)."""
    global _default
    _default = limiter


def default_limiter() -> RateLimiter:
    """The installed limiter, else one from BILLING_CONFIG (./config) and BILLING_REDIS_URL."""
    global _default
    if _default is None:
        from billing_pipelines.config import load_config

        _default = RateLimiter(load_config(os.environ.get("BILLING_CONFIG", "./config")), backend_from_env())
    return _default


def decide(org: str, model: str, est_credits: int = 1) -> Decision:
    return default_limiter().decide(org, model, est_credits)


def release(lease_: Lease) -> bool:
    return default_limiter().release(lease_)


def heartbeat(lease_: Lease) -> Lease | None:
    return default_limiter().heartbeat(lease_)


@contextmanager
def lease(org: str, model: str, est_credits: int = 1) -> Iterator[Decision]:
    with default_limiter().lease(org, model, est_credits) as decision:
        yield decision
