"""Admission decisions per second and decision latency (p50/p99), in process and on Redis
over loopback.

    python bench/ratelimit_bench.py [--decisions 20000] [--redis redis://127.0.0.1:6379/0] [--json]

Each decision is `decide` on one of 1,000 orgs (round robin) followed by `release`; latency is
the `decide` call alone. Throughput is measured with 1 and 8 threads in one process, and on
Redis also with 4 processes of 8 threads (the GIL caps one process).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import sys
import threading
import time
import uuid
from datetime import date
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's package

from billing_pipelines.config import BillingConfig, Customer, ModelRate, Plan, PriceBook, RateLimits  # noqa: E402
from billing_pipelines.ratelimit import MemoryBackend, RateLimiter, RedisBackend  # noqa: E402

ORGS = [f"org-{i:04d}" for i in range(1000)]
MODELS = ("frontier-large", "small-fast")


def bench_config() -> BillingConfig:
    """1,000 orgs on a plan whose limits never bind, so every decision does the full work."""
    rate = {"effective_from": date(2026, 1, 1), "input_usd_per_1k": Decimal("0.003"),
            "output_usd_per_1k": Decimal("0.015")}
    book = PriceBook("USD", Decimal(3), (ModelRate("frontier-large", degrade_to="small-fast", **rate),
                                         ModelRate("small-fast", **rate)), ())
    plan = Plan("bench", Decimal(0), 0, None, 0, 1, RateLimits(1_000_000, 60_000_000, Decimal(2), 60))
    customers = {org: Customer(org, org, "bench", date(2026, 1, 1)) for org in ORGS}
    return BillingConfig(book, {"bench": plan}, customers, ())


def make_limiter(url: str | None, prefix: str) -> RateLimiter:
    backend = RedisBackend(url, prefix=prefix, deadline=5.0) if url else MemoryBackend()
    return RateLimiter(bench_config(), backend)


def run(limiter: RateLimiter, count: int, offset: int = 0) -> list[int]:
    """`count` decide+release cycles; the decide latencies in nanoseconds."""
    latencies = []
    for i in range(offset, offset + count):
        started = time.perf_counter_ns()
        decision = limiter.decide(ORGS[i % len(ORGS)], MODELS[i % 2])
        latencies.append(time.perf_counter_ns() - started)
        limiter.release(decision.lease)
    return latencies


def threaded(limiter: RateLimiter, threads: int, count: int) -> tuple[float, list[int]]:
    """Decisions per second with `threads` threads sharing one limiter, and all latencies."""
    results: list[list[int]] = []
    pool = [threading.Thread(target=lambda i=i: results.append(run(limiter, count // threads, i * count)))
            for i in range(threads)]
    started = time.perf_counter()
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    latencies = [x for r in results for x in r]
    return len(latencies) / elapsed, latencies


def _process(url, prefix, threads, count, queue):
    queue.put(threaded(make_limiter(url, prefix), threads, count))


def multiprocess(url: str, prefix: str, processes: int, threads: int, count: int) -> tuple[float, list[int]]:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    workers = [ctx.Process(target=_process, args=(url, prefix, threads, count // processes, queue))
               for _ in range(processes)]
    for w in workers:
        w.start()
    results = [queue.get() for _ in workers]
    for w in workers:
        w.join()
    return sum(r[0] for r in results), [x for r in results for x in r[1]]


def figures(name: str, rate: float, latencies: list[int]) -> dict:
    cuts = statistics.quantiles(latencies, n=100)
    return {"case": name, "decisions_per_s": round(rate), "p50_us": round(cuts[49] / 1000, 1),
            "p99_us": round(cuts[98] / 1000, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=20000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    n, prefix = args.decisions, f"bench:rl:{uuid.uuid4().hex}:"
    rows = []
    for backend, url in (("memory", None), ("redis", args.redis)):
        limiter = make_limiter(url, prefix)
        run(limiter, 1000)  # warm up: script load, connections, chain cache
        for threads in (1, 8):
            rows.append(figures(f"{backend}, {threads} thread(s)", *threaded(limiter, threads, n)))
    rows.append(figures("redis, 4 processes x 8 threads", *multiprocess(args.redis, prefix, 4, 8, n)))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'case':34} {'decisions/s':>12} {'p50 µs':>9} {'p99 µs':>9}")
    for r in rows:
        print(f"{r['case']:34} {r['decisions_per_s']:>12,} {r['p50_us']:>9} {r['p99_us']:>9}")


if __name__ == "__main__":
    main()
