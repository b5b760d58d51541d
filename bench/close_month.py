"""Benchmark of issue 14: close one month of EVENTS billed events (default 100 M) for CUSTOMERS
(default 10,000), in 1 customer shard and in SHARDS (default 4), each shard in a fresh process
(its peak RSS from the OS), then the month's documents (union of the shards, tier advisor).

The month's collected events (`month_usage`, for 1 shard and for SHARDS) are generated with DuckDB (seeded; the
ingest and its collection are benchmarked in bench/year_bench.py): customers start the month
before (whose close, without events, gives them rollover grants to open with), one in ten buys
credits mid-month, 1 in 1,000 events is late usage (at the month's first instant).

    .venv/bin/python bench/close_month.py [--events 100000000] [--customers 10000] [--shards 4] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from datetime import date
from pathlib import Path

from bench_support import ROOT, fresh_home, fresh_process, home

sys.path.insert(0, str(ROOT))
MONTH, BEFORE = "2026-11", "2026-10"

CLOSE = """
import json, sys, time
from datetime import date
from billing_pipelines.resources import BillingSettings
settings = BillingSettings.from_env(json.loads(sys.argv[1]))
step, month, shard, shards = sys.argv[2], date.fromisoformat(sys.argv[3] + "-01"), int(sys.argv[4]), int(sys.argv[5])
config = settings.billing_config()
start = time.perf_counter()
if step == "ledger":
    from billing_pipelines.month_close.ledger import close_ledger_shard
    meta = close_ledger_shard(settings, config, month, shard, shards)["meta"]
    what = {"customers": len(meta["customers"]),
            "consumed": sum(s["consumed"] for s in meta["credit_summaries"].values())}
else:
    from billing_pipelines.month_close.documents import close_documents
    documents = close_documents(settings, config, month, shards)
    what = {"invoices": len(documents.invoices), "total": str(sum(i.total for i in documents.invoices))}
"""


def write_config(folder: Path, customers: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("pricebook.yaml", "plans.yaml"):
        shutil.copy(ROOT / "tests" / "data" / "examples" / name, folder / name)
    plans = ["free", "pro", "pro", "pro", "enterprise"]
    lines = ["customers:"] + [f"  - {{org_id: org-{i:05d}, name: Org {i}, plan: {plans[(i * 7) % 5]}, "
                              f"start_date: {BEFORE}-01, tax_rate: '0.10'}}" for i in range(customers)]
    lines += ["credit_purchases:"] + [
        f"  - {{purchase_id: p-{i:05d}, org_id: org-{i:05d}, purchased_at: '{MONTH}-{1 + i % 28:02d}T12:00:00Z', "
        f"credits: 10000, price: '100.00', expires_after_months: 12}}" for i in range(0, customers, 10)]
    (folder / "customers.yaml").write_text("\n".join(lines) + "\n")


def write_month_usage(settings, events: int, customers: int, shard_counts: tuple[int, ...]) -> None:
    """The collected events of MONTH (and an empty collection of the month before), for each of
    `shard_counts` customer shards."""
    from billing_pipelines.month_close.usage import EVENTS, MONTH_USAGE, no_events_sql, shard_partition
    from billing_pipelines.partitions import customer_bucket
    from billing_pipelines.storage import duck

    wh = settings.warehouse()
    con = duck.connect(settings.scratch_dir())
    con.create_function("bucket_of", customer_bucket, ["VARCHAR"], "SMALLINT")
    con.execute(f"""CREATE TABLE orgs AS SELECT n AS org_no, 'org-' || lpad(n::VARCHAR, 5, '0') AS org_id,
                    bucket_of('org-' || lpad(n::VARCHAR, 5, '0')) AS bucket FROM range({customers}) t(n)""")
    days = 30
    query = f"""
        SELECT 'req-' || i AS request_id, o.org_id, 'u-' || (hash(i, 1) % 50) AS user_id,
               CASE WHEN hash(i, 9) % 1000 = 0 THEN TIMESTAMP '{BEFORE}-05' + to_seconds((hash(i, 2) % 86400)::BIGINT)
                    ELSE TIMESTAMP '{MONTH}-01' + to_days((i // ({events} // {days}))::INTEGER)
                         + to_microseconds((hash(i, 2) % 86400000000)::BIGINT) END AS ts,
               DATE '{MONTH}-05' AS landing_date,
               ['frontier-large', 'balanced-medium', 'small-fast', 'embed-v3'][(hash(i, 3) % 4 + 1)::BIGINT] AS model,
               ['simple', 'complex', 'document', 'embedding'][(hash(i, 4) % 4 + 1)::BIGINT] AS action,
               (hash(i, 5) % 4000)::BIGINT AS input_tokens, (hash(i, 6) % 1000)::BIGINT AS output_tokens,
               (hash(i, 7) % 5000)::BIGINT AS latency_ms,
               CAST(((hash(i, 5) % 4000) * 800 + (hash(i, 6) % 1000) * 3200)::DECIMAL(38, 0) * 1e-12
                    AS DECIMAL(38, 12)) AS cost_usd,
               CASE hash(i, 4) % 4 WHEN 1 THEN 5
                    WHEN 2 THEN greatest(1, ((hash(i, 5) % 4000) + (hash(i, 6) % 1000) + 999) // 1000)
                    ELSE 1 END::BIGINT AS credits,
               o.bucket, DATE '{MONTH}-01' AS billing_month
        FROM range({events}) t(i) JOIN orgs o ON o.org_no = hash(i, 8) % {customers}
        ORDER BY billing_month, bucket, org_id, ts, request_id"""
    counts = dict(con.execute("SELECT bucket, count(*) FROM (SELECT hash(i, 8) % $1 AS org_no FROM range($2) t(i)) "
                              "JOIN orgs USING (org_no) GROUP BY 1", [customers, events]).fetchall())
    generated = settings.scratch_dir() / "generated.parquet"
    con.execute(f"COPY ({query}) TO {duck.literal(generated)} (FORMAT parquet)")
    for shards in shard_counts:
        for shard in range(shards):
            held = {b: c for b, c in counts.items() if b % shards == shard}
            select = f"SELECT * FROM read_parquet({duck.literal(generated)}) WHERE bucket % {shards} = {shard}"
            for month, events_sql, n in ((BEFORE, no_events_sql(), {}), (MONTH, select, held)):
                meta = {"month": month, "shard": shard, "shards": shards, "landing": None, "previous": None,
                        "events": sum(n.values()), "handed_over": 0,
                        "events_by_bucket": {str(b): c for b, c in sorted(n.items())}}
                wh.commit(MONTH_USAGE, shard_partition(date.fromisoformat(f"{month}-01"), shard, shards), con,
                          {EVENTS: events_sql}, meta)
    generated.unlink()
    con.close()



def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000_000)
    parser.add_argument("--customers", type=int, default=10_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "close"))
    parser.add_argument("--reuse", action="store_true",
                        help="close the events an earlier run collected in --out again "
                        "(their generation is most of a run)")
    args = parser.parse_args(argv)

    from billing_pipelines.resources import BillingSettings

    out = Path(args.out)
    if args.reuse:
        env = home(out)
    else:
        env = fresh_home(out)
        write_config(out / "config", args.customers)
        started = time.perf_counter()
        write_month_usage(BillingSettings.from_env(env), args.events, args.customers, (1, args.shards))
        print(f"collected {args.events:,} events of {MONTH} for {args.customers:,} customers "
              f"(generated in {time.perf_counter() - started:.0f} s)", flush=True)
    report = {}
    for shards in (1, args.shards):
        for shard in range(shards):
            fresh_process(CLOSE, env, "ledger", BEFORE, str(shard), str(shards))
        ledger = [fresh_process(CLOSE, env, "ledger", MONTH, str(shard), str(shards)) for shard in range(shards)]
        documents = fresh_process(CLOSE, env, "documents", MONTH, "0", str(shards))
        report[shards] = {"ledger": ledger, "documents": documents}
        print(f"{shards} shard(s): ledger {[round(r['seconds'], 1) for r in ledger]} s, "
              f"peak RSS {[r['peak_rss_mib'] for r in ledger]} MiB; documents {documents['seconds']:.1f} s, "
              f"{documents['peak_rss_mib']:,} MiB; {documents['what']}", flush=True)
    (out / "report.json").write_text(json.dumps(report, indent=1))
    one, many = report[1]["documents"]["what"], report[args.shards]["documents"]["what"]
    print("same invoices in 1 and", args.shards, "shards:", one == many)


if __name__ == "__main__":
    main()
