"""A plan's rate limits as an admission policy, and the GCRA rule both backends apply.

The burst model, exactly. Time is counted in integer microseconds. Each (org, model) has a
*theoretical arrival time* TAT (generic cell rate algorithm, equivalent to a token bucket).
With steady rate R = requests_per_minute, emission interval T = 60 s / R, multiplier m and
burst_seconds B, the tolerance is tau = (m - 1) x B. A request at time t is admitted iff
``max(TAT, t) - t <= tau``; an admitted request sets ``TAT = max(TAT, t) + T``; a refused one
changes nothing. Consequences, from an idle start:

- requests spaced T apart (the steady rate) are never refused, for ever;
- requests spaced T/m apart (m x steady) are all admitted for t in [0, B]; from then on exactly
  one in m is admitted (the steady rate): the first refusal is at B + T/m;
- at most tau/T + 1 requests are admitted at one instant (the concurrency cap bounds these too);
- m <= 1 or B = 0 means no burst: the steady rate only.

Concurrency is a separate, org-wide rule: at most ``concurrent`` unexpired leases per org.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from billing_pipelines.config import RateLimits

MICROS = 1_000_000


@dataclass(frozen=True)
class Policy:
    """Admission limits of one plan, in integer microseconds."""

    concurrent: int
    requests_per_minute: int
    interval_us: int
    tolerance_us: int

    @classmethod
    def of(cls, limits: RateLimits) -> Policy:
        excess = max(limits.burst_multiplier - 1, 0) * limits.burst_seconds * MICROS
        return cls(
            concurrent=limits.concurrent,
            requests_per_minute=limits.requests_per_minute,
            interval_us=round(60 * MICROS / limits.requests_per_minute),
            tolerance_us=int(excess),
        )


@dataclass(frozen=True)
class RateState:
    """Outcome of the GCRA rule for one request on one (org, model)."""

    admitted: bool
    tat_us: int  # the TAT to store (unchanged when refused)
    retry_after_us: int  # 0 when admitted
    remaining: int  # further requests admissible right now
    reset_us: int  # until the burst allowance is full again


def gcra(tat_us: int | None, now_us: int, policy: Policy) -> RateState:
    """Apply the rule in this module's docstring to a stored TAT (None: idle)."""
    tat = max(tat_us or now_us, now_us)
    if tat - now_us > policy.tolerance_us:
        return RateState(False, tat, tat - policy.tolerance_us - now_us, 0, tat - now_us)
    new_tat = tat + policy.interval_us
    return RateState(True, new_tat, 0, remaining(new_tat, now_us, policy), new_tat - now_us)


def remaining(tat_us: int, now_us: int, policy: Policy) -> int:
    """Requests admissible at `now_us` back to back, given the stored TAT."""
    slack = policy.tolerance_us - max(tat_us - now_us, 0)
    return slack // policy.interval_us + 1 if slack >= 0 else 0


class SimClock:
    """A settable clock (seconds since the epoch) for simulations and tests."""

    def __init__(self, now: float = 0.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def wall_clock() -> float:
    return time.time()


def to_micros(seconds: float) -> int:
    return round(seconds * MICROS)
