"""Admission control for the AI gateway: allow, degrade to a cheaper model, or reject.

Rules, in order, for `decide(org, model, est_credits)`, with the plan in effect now (SPEC §7:
a plan change counts from 00:00 UTC of its effective_from, by the limiter's clock):

0. Subscription: from its cancellation on, the org is rejected (``subscription_ended``).
1. Credits: an org whose plan bills no overage (``overage_credit_price: null``) and whose
   credits left (from the `credits_left` provider) are below `est_credits`, or zero, is
   rejected (``out_of_credits``). Without a provider, or where it answers None, this is skipped.
2. Concurrency, per org: at most the plan's ``concurrent`` unexpired leases across all models.
   Degrading frees no slot, so a full org is rejected (``concurrency``).
3. Rate, per (org, model), each model with the plan's own limits (see `policy`): the requested
   model if its rate allows, else the first model down the price book's ``degrade_to`` chain
   whose own rate allows (``degrade``, reason ``rate_limited``), else ``reject`` (``rate_limited``)
   with retry-after = the soonest any model of the chain admits again.

When Redis does not answer within its deadline, a local cap decides, one step down the chain
(reason ``limiter_unavailable``; see `FailoverBackend`).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from functools import lru_cache

from billing_pipelines.config import BillingConfig, Plan
from billing_pipelines.ratelimit.backends import Backend, Grant, Lease, MemoryBackend
from billing_pipelines.ratelimit.policy import MICROS, Policy, to_micros, wall_clock

CreditsLeft = Callable[[str], "int | None"]

ALLOW, DEGRADE, REJECT = "allow", "degrade", "reject"


class UnknownOrg(KeyError):
    """The org is not a customer in customers.yaml."""


class UnknownModel(KeyError):
    """The model has no rate in the price book today."""


@dataclass(frozen=True)
class Decision:
    """What the gateway should do with one request.

    `model` is the model to serve (None on reject); `reason` says why a request was degraded or
    rejected ("" on a plain allow); `retry_after` (seconds) is set on a rate or concurrency
    rejection. limit/remaining/reset describe the rate of the model served (of the requested one
    on reject), for the response headers.
    """

    outcome: str
    org_id: str
    requested_model: str
    model: str | None
    lease: Lease | None
    reason: str
    retry_after: float | None
    limit_requests: int
    remaining_requests: int
    reset_requests: float

    @property
    def admitted(self) -> bool:
        return self.outcome != REJECT

    def to_json(self) -> dict:
        return {
            "outcome": self.outcome, "org_id": self.org_id, "requested_model": self.requested_model,
            "model": self.model, "lease": self.lease.to_json() if self.lease else None,
            "reason": self.reason, "retry_after": self.retry_after,
            "limit_requests": self.limit_requests, "remaining_requests": self.remaining_requests,
            "reset_requests": self.reset_requests,
        }


class RateLimited(Exception):
    """Raised by `RateLimiter.lease` when the request is rejected; carries the decision."""

    def __init__(self, decision: Decision):
        super().__init__(f"{decision.org_id}/{decision.requested_model}: rejected ({decision.reason})")
        self.decision = decision


class RateLimiter:
    """Plan limits from `config`, state in `backend`; thread-safe as its backend is.

    `lease_ttl` (seconds) is how long a slot outlives a worker that neither releases nor sends
    heartbeats; `clock` dates the plan in effect and the price-book lookup of the degrade chain.
    """

    def __init__(self, config: BillingConfig, backend: Backend | None = None, *,
                 credits_left: CreditsLeft | None = None, lease_ttl: float = 120.0,
                 clock: Callable[[], float] = wall_clock):
        self.config = config
        self.backend = backend or MemoryBackend(clock)
        self.credits_left = credits_left
        self.ttl_us = to_micros(lease_ttl)
        self._clock = clock
        self._policies = {name: Policy.of(plan.rate_limits) for name, plan in config.plans.items()}
        self._chains: dict[tuple[str, date], tuple[str, ...]] = {}
        self._plan_on = lru_cache(maxsize=65536)(config.plan_on)

    def decide(self, org: str, model: str, est_credits: int = 1, *, holder: str = "") -> Decision:
        """Admit, degrade or reject one request; an admitted one holds a lease of `holder` (the
        gateway key asking; "" in process), which only the same holder can release or renew."""
        if org not in self.config.customers:
            raise UnknownOrg(f"unknown org {org!r}")
        if isinstance(est_credits, bool) or not isinstance(est_credits, int) or est_credits < 0:
            raise ValueError(f"est_credits must be an integer >= 0, got {est_credits!r}")
        chain = self.degrade_chain(model)
        plan = self.plan_now(org)
        if plan is None:
            return Decision(REJECT, org, model, None, None, "subscription_ended", None, 0, 0, 0.0)
        policy = self._policies[plan.plan]
        if self._out_of_credits(org, plan, est_credits):
            return Decision(REJECT, org, model, None, None, "out_of_credits", None,
                            policy.requests_per_minute, 0, 0.0)
        lease_id = uuid.uuid4().hex
        grant = self.backend.acquire(org, chain, policy, lease_id, self.ttl_us, holder)
        return self._decision(org, chain, policy, lease_id, holder, grant)

    def release(self, lease: Lease) -> bool:
        """Give the slot back; False when it had already lapsed or been released, or when the
        lease's holder, id, org or model is not that of a slot held."""
        return self.backend.release(lease)

    def heartbeat(self, lease: Lease) -> Lease | None:
        """Extend the lease by the TTL from now; None when no slot is held under it (lapsed,
        released, or not its holder's)."""
        expiry = self.backend.heartbeat(lease, self.ttl_us)
        return None if expiry is None else replace(lease, expires_at=expiry / MICROS)

    def plan_now(self, org: str) -> Plan | None:
        """The org's plan in effect today by the limiter's clock; None from its cancellation."""
        return self._plan_on(org, self._today())

    @contextmanager
    def lease(self, org: str, model: str, est_credits: int = 1) -> Iterator[Decision]:
        """``with limiter.lease(org, model) as d: call(d.model)``; raises RateLimited on reject."""
        decision = self.decide(org, model, est_credits)
        if not decision.admitted:
            raise RateLimited(decision)
        try:
            yield decision
        finally:
            self.release(decision.lease)

    def degrade_chain(self, model: str) -> tuple[str, ...]:
        """The model, then its ``degrade_to`` fallbacks, by the price book rows effective today."""
        today = self._today()
        key = (model, today)
        if key not in self._chains:
            book, chain = self.config.price_book, []
            rate = book.rate_at(model, today)
            if rate is None:
                raise UnknownModel(f"model {model!r} has no rate in the price book on {today}")
            while rate is not None and rate.model not in chain:
                chain.append(rate.model)
                rate = book.rate_at(rate.degrade_to, today) if rate.degrade_to else None
            self._chains[key] = tuple(chain)
        return self._chains[key]

    def _today(self) -> date:
        return datetime.fromtimestamp(self._clock(), UTC).date()

    def _out_of_credits(self, org: str, plan: Plan, est_credits: int) -> bool:
        if self.credits_left is None or plan.overage_credit_price is not None:
            return False
        left = self.credits_left(org)
        return left is not None and (left <= 0 or left < est_credits)

    def _decision(self, org: str, chain: tuple[str, ...], policy: Policy, lease_id: str, holder: str,
                  grant: Grant) -> Decision:
        rate = (policy.requests_per_minute, grant.remaining, grant.reset_us / MICROS)
        if grant.index is None:
            return Decision(REJECT, org, chain[0], None, None, grant.reason, grant.retry_after_us / MICROS, *rate)
        served = chain[grant.index]
        lease = Lease(lease_id, org, served, grant.store, grant.expires_us / MICROS, holder)
        reason = "limiter_unavailable" if grant.failover else ("rate_limited" if grant.index else "")
        outcome = DEGRADE if grant.index else ALLOW
        return Decision(outcome, org, chain[0], served, lease, reason, None, *rate)
