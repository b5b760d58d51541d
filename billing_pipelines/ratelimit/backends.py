"""Where admission state lives: in this process (the default) or in Redis.

Both apply the same rule (see `policy`): concurrency leases per org, kept with their expiry so a
crashed worker's slot frees itself, and under their holder and model (`Lease.slot`) so only the
holder can give one back; then the GCRA rate rule per (org, model) down the degrade chain,
admitting on the first model whose rate allows. One call is atomic: a lock in process,
one Lua script in Redis (time from the server's TIME unless a clock is given, for simulations).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Protocol

from billing_pipelines.ratelimit.policy import MICROS, Policy, gcra, to_micros, wall_clock

log = logging.getLogger(__name__)

REDIS_URL_ENV = "BILLING_REDIS_URL"
CONCURRENCY_RETRY_US = MICROS  # a slot is usually freed by a release, long before expiry


@dataclass(frozen=True)
class Lease:
    """A held concurrency slot; give it back with `release`, keep it alive with `heartbeat`.

    `holder` is who acquired it (a gateway key's id; "" in process): the backend records the slot
    under `slot`, so only its holder can release or renew it, and a lease whose id, org or model
    was edited matches no slot. `expires_at` is informational: the store's clock decides.
    """

    id: str
    org_id: str
    model: str
    store: str  # the backend holding it: "redis" or "local"
    expires_at: float  # seconds since the epoch, on the store's clock
    holder: str = ""

    @property
    def slot(self) -> str:
        return lease_slot(self.holder, self.model, self.id)

    def to_json(self) -> dict:
        return {"id": self.id, "org_id": self.org_id, "model": self.model, "store": self.store,
                "expires_at": self.expires_at}

    @classmethod
    def from_json(cls, data: dict, holder: str = "") -> Lease:
        """The lease `data` describes, as presented by `holder` (never read from `data`)."""
        try:
            return cls(str(data["id"]), str(data["org_id"]), str(data["model"]), str(data["store"]),
                       float(data["expires_at"]), holder)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"not a lease: {data!r}") from exc


def lease_slot(holder: str, model: str, lease_id: str) -> str:
    """The member a lease is recorded under in its org's lease set."""
    return f"{holder}|{model}|{lease_id}"


@dataclass(frozen=True)
class Grant:
    """A backend's answer: which chain entry was admitted (None: refused) and the figures."""

    index: int | None
    reason: str  # "" when admitted, else "concurrency" or "rate_limited"
    now_us: int
    expires_us: int  # the lease's expiry when admitted
    retry_after_us: int
    remaining: int
    reset_us: int
    store: str
    failover: bool = False  # decided by the local cap because Redis did not answer


class Backend(Protocol):
    store: str

    def acquire(self, org: str, chain: Sequence[str], policy: Policy, lease_id: str, ttl_us: int,
                holder: str = "") -> Grant:
        """Admit the first model of `chain` whose rate allows, recording its lease's slot."""

    def release(self, lease: Lease) -> bool: ...

    def heartbeat(self, lease: Lease, ttl_us: int) -> int | None:
        """The lease's new expiry (microseconds), or None when it has already lapsed."""

    def active_leases(self, org: str) -> int: ...


class MemoryBackend:
    """Admission state in this process, behind one lock."""

    store = "local"

    def __init__(self, clock: Callable[[], float] = wall_clock):
        self._clock = clock
        self._lock = threading.Lock()
        self._leases: dict[str, dict[str, int]] = {}  # org -> lease slot -> expiry
        self._tats: dict[tuple[str, str], int] = {}

    def acquire(self, org, chain, policy, lease_id, ttl_us, holder=""):
        with self._lock:
            now = to_micros(self._clock())
            leases = self._live_leases(org, now)
            if len(leases) >= policy.concurrent:
                return _concurrency_refusal(now, min(leases.values()), self.store)
            states = []
            for index, model in enumerate(chain):
                state = gcra(self._tats.get((org, model)), now, policy)
                if state.admitted:
                    self._tats[(org, model)] = state.tat_us
                    leases[lease_slot(holder, model, lease_id)] = now + ttl_us
                    return Grant(index, "", now, now + ttl_us, 0, state.remaining, state.reset_us, self.store)
                states.append(state)
            first = states[0]
            retry = min(s.retry_after_us for s in states)
            return Grant(None, "rate_limited", now, 0, retry, 0, first.reset_us, self.store)

    def release(self, lease):
        with self._lock:
            return self._leases.get(lease.org_id, {}).pop(lease.slot, None) is not None

    def heartbeat(self, lease, ttl_us):
        with self._lock:
            now = to_micros(self._clock())
            leases = self._live_leases(lease.org_id, now)
            if lease.slot not in leases:
                return None
            leases[lease.slot] = now + ttl_us
            return now + ttl_us

    def active_leases(self, org):
        with self._lock:
            return len(self._live_leases(org, to_micros(self._clock())))

    def _live_leases(self, org: str, now: int) -> dict[str, int]:
        leases = self._leases.setdefault(org, {})
        for lease_id in [i for i, expiry in leases.items() if expiry <= now]:
            del leases[lease_id]
        return leases


def _concurrency_refusal(now: int, earliest_expiry: int, store: str) -> Grant:
    retry = min(CONCURRENCY_RETRY_US, earliest_expiry - now)
    return Grant(None, "concurrency", now, 0, retry, 0, 0, store)


# KEYS[1]: the org's lease set; KEYS[2..]: GCRA keys of the chain's models, in order.
# ARGV: now_us ("" = server TIME), ttl_us, concurrent, interval_us, tolerance_us, the longest
# retry-after on a full lease set, then the lease's slot for each model of the chain, in order.
# Returns {index (0 = refused), reason, now, expires, retry_after, remaining, reset}.
_ACQUIRE_LUA = """
local function clock(arg)
  if arg ~= '' then return tonumber(arg) end
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local function keep(key, until_us, now)
  local want = math.ceil((until_us - now) / 1000) + 1000
  if redis.call('PTTL', key) < want then redis.call('PEXPIRE', key, want) end
end
local now = clock(ARGV[1])
local ttl, cap = tonumber(ARGV[2]), tonumber(ARGV[3])
local interval, tolerance = tonumber(ARGV[4]), tonumber(ARGV[5])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= cap then
  local first = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, 'concurrency', now, 0, math.min(tonumber(ARGV[6]), tonumber(first[2]) - now), 0, 0}
end
local retry, first_reset = nil, 0
for i = 2, #KEYS do
  local tat = tonumber(redis.call('GET', KEYS[i]) or now)
  if tat < now then tat = now end
  if tat - now <= tolerance then
    local new_tat = tat + interval
    redis.call('SET', KEYS[i], string.format('%d', new_tat), 'PX', math.ceil((new_tat - now) / 1000) + 1)
    redis.call('ZADD', KEYS[1], now + ttl, ARGV[i + 5])
    keep(KEYS[1], now + ttl, now)
    local slack = tolerance - (new_tat - now)
    local left = 0
    if slack >= 0 then left = math.floor(slack / interval) + 1 end
    return {i - 1, '', now, now + ttl, 0, left, new_tat - now}
  end
  local wait = tat - tolerance - now
  if retry == nil or wait < retry then retry = wait end
  if i == 2 then first_reset = tat - now end
end
return {0, 'rate_limited', now, 0, retry, 0, first_reset}
"""

# KEYS[1]: the org's lease set. ARGV: now_us ("" = server TIME), the lease's slot, ttl_us.
# Returns the new expiry, or -1 when the lease has expired or was released.
_HEARTBEAT_LUA = """
local now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) * 1000000 + tonumber(t[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return -1 end
local expiry = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], 'XX', expiry, ARGV[2])
local want = math.ceil(tonumber(ARGV[3]) / 1000) + 1000
if redis.call('PTTL', KEYS[1]) < want then redis.call('PEXPIRE', KEYS[1], want) end
return expiry
"""

_ACTIVE_LUA = """
local now
if ARGV[1] ~= '' then now = tonumber(ARGV[1]) else
  local t = redis.call('TIME'); now = tonumber(t[1]) * 1000000 + tonumber(t[2]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""


class RedisBackend:
    """Admission state in Redis, shared by every process; each decision is one Lua script.

    Keys: ``{prefix}{org}:leases`` (sorted set, each lease's `slot` scored by its expiry in
    microseconds) and ``{prefix}{org}:rate:{model}`` (the TAT); the org is a hash tag, so all keys
    of one decision sit in one cluster slot. `deadline` (seconds) bounds connect and each reply, no retries.
    """

    store = "redis"

    def __init__(self, url: str, *, deadline: float = 0.05, prefix: str = "billing:rl:",
                 clock: Callable[[], float] | None = None):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        self.client = redis.Redis.from_url(
            url, socket_timeout=deadline, socket_connect_timeout=deadline,
            retry=Retry(NoBackoff(), 0), decode_responses=True,
        )
        self.prefix = prefix
        self._clock = clock
        self._acquire = self.client.register_script(_ACQUIRE_LUA)
        self._heartbeat = self.client.register_script(_HEARTBEAT_LUA)
        self._active = self.client.register_script(_ACTIVE_LUA)

    def acquire(self, org, chain, policy, lease_id, ttl_us, holder=""):
        keys = [self._leases_key(org)] + [f"{self.prefix}{{{org}}}:rate:{m}" for m in chain]
        args = [self._now(), ttl_us, policy.concurrent, policy.interval_us, policy.tolerance_us,
                CONCURRENCY_RETRY_US, *(lease_slot(holder, m, lease_id) for m in chain)]
        index, reason, *figures = self._acquire(keys=keys, args=args)
        now, expires, retry, left, reset = (int(f) for f in figures)
        return Grant(int(index) - 1 if int(index) else None, reason, now, expires, retry, left, reset, self.store)

    def release(self, lease):
        return bool(self.client.zrem(self._leases_key(lease.org_id), lease.slot))

    def heartbeat(self, lease, ttl_us):
        expiry = int(self._heartbeat(keys=[self._leases_key(lease.org_id)], args=[self._now(), lease.slot, ttl_us]))
        return expiry if expiry >= 0 else None

    def active_leases(self, org):
        return int(self._active(keys=[self._leases_key(org)], args=[self._now()]))

    def _leases_key(self, org: str) -> str:
        return f"{self.prefix}{{{org}}}:leases"

    def _now(self) -> str:
        return "" if self._clock is None else str(to_micros(self._clock()))


class FailoverBackend:
    """Redis first; when it does not answer within its deadline, a local cap decides.

    The local cap is an in-process backend with the same plan limits (per process), starting
    one step down the degrade chain: the request degrades to the cheaper model, or keeps its
    model where it has none. After a failure Redis is not asked again for `probe_after` seconds,
    so a dead server costs one deadline, not one per decision.
    """

    def __init__(self, primary: RedisBackend, local: MemoryBackend | None = None, probe_after: float = 1.0):
        import redis

        self.primary = primary
        self.local = local or MemoryBackend()
        self.store = primary.store
        self._probe_after = probe_after
        self._down_until = 0.0
        self._errors = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

    def acquire(self, org, chain, policy, lease_id, ttl_us, holder=""):
        if time.monotonic() >= self._down_until:
            try:
                return self.primary.acquire(org, chain, policy, lease_id, ttl_us, holder)
            except self._errors as exc:
                log.warning("rate limiter: Redis unavailable (%s); local cap for %.1fs", exc, self._probe_after)
                self._down_until = time.monotonic() + self._probe_after
        cheaper = chain[1:] or chain
        grant = self.local.acquire(org, cheaper, policy, lease_id, ttl_us, holder)
        index = None if grant.index is None else grant.index + len(chain) - len(cheaper)
        return replace(grant, index=index, failover=True)

    def release(self, lease):
        return self._route(lease, "release", False)

    def heartbeat(self, lease, ttl_us):
        return self._route(lease, "heartbeat", None, ttl_us)

    def active_leases(self, org):
        return self.primary.active_leases(org) + self.local.active_leases(org)

    def _route(self, lease, method, unreachable, *args):
        if lease.store == self.local.store:
            return getattr(self.local, method)(lease, *args)
        try:
            return getattr(self.primary, method)(lease, *args)
        except self._errors as exc:
            log.warning("rate limiter: Redis unavailable for %s (%s); the lease lapses by itself", method, exc)
            return unreachable


def backend_from_env(deadline: float = 0.05) -> Backend:
    """Redis (with a local failover cap) when BILLING_REDIS_URL is set, else in process."""
    url = os.environ.get(REDIS_URL_ENV)
    if not url:
        return MemoryBackend()
    return FailoverBackend(RedisBackend(url, deadline=deadline))
