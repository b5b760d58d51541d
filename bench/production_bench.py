"""Production limits (issue 8), measured with the generator; each measurement in a fresh process.

- partition: one landing date of N events ingested alone (seconds, events/s, peak RSS);
- backfill: D daily partitions of E events, with 1 and with 4 runs at once through a Dagster
  instance on PostgreSQL (wall time, slowest run), the outputs compared byte for byte;
- s3: the same partition from a moto S3 server into an S3 warehouse, against local files.

    .venv/bin/python bench/production_bench.py partition --events 100000 400000
    .venv/bin/python bench/production_bench.py backfill --days 31 --events 20000 --workers 1 4
    .venv/bin/python bench/production_bench.py s3 --events 100000
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out" / "production"
ROOT = Path(__file__).resolve().parents[1]
START = date(2026, 10, 1)
PG_SERVER = os.environ.get("BILLING_BENCH_PG", "postgres@127.0.0.1:5432")

INGEST = """
import json, resource, sys, time
from datetime import date
from billing_pipelines.resources import BillingSettings
from billing_pipelines.ingest.pipeline import ingest
settings = BillingSettings.from_env(json.loads(sys.argv[1]))
start = time.perf_counter()
[summary] = ingest(settings, [date.fromisoformat(sys.argv[2])])
print(json.dumps({"events": summary.rows_read, "seconds": time.perf_counter() - start,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""

BACKFILL = """
import json, sys, time
from billing_pipelines.cli.backfill import run_backfill
from billing_pipelines.resources import BillingSettings
settings = BillingSettings.from_env(json.loads(sys.argv[1]))
keys, workers = json.loads(sys.argv[2]), int(sys.argv[3])
start = time.perf_counter()
runs = run_backfill("daily_ingest", keys, settings, workers)
print(json.dumps({"seconds": time.perf_counter() - start, "failed": [r.partition_key for r in runs if not r.success],
                  "slowest_run_s": max(r.seconds for r in runs)}))
"""


def generated(days: int, events: int) -> Path:
    """A cached landing zone of `days` dates with about `events` events each."""
    root = OUT / f"zone-{days}x{events}"
    if not (root / "done").exists():
        shutil.rmtree(root, ignore_errors=True)
        from billing_pipelines.generate import GeneratorSpec, generate

        generate(GeneratorSpec(seed=3, orgs=50, start=START, days=days, events_per_day=events),
                 root / "config", str(root / "landing"))
        (root / "done").touch()
    return root


def measure(code: str, *args: str, env: dict | None = None) -> dict:
    proc = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, check=True, capture_output=True,
                          text=True, env={**os.environ, **(env or {})})
    return json.loads(proc.stdout.strip().splitlines()[-1])


def billing_env(root: Path, home: Path, **extra: str) -> dict:
    shutil.rmtree(home, ignore_errors=True)
    return {"BILLING_HOME": str(home), "BILLING_CONFIG": str(root / "config"),
            "BILLING_LANDING": str(root / "landing"), **extra}


def partition(events_list: list[int]) -> list[dict]:
    results = []
    for events in events_list:
        root = generated(1, events)
        got = measure(INGEST, json.dumps(billing_env(root, root / "home")), START.isoformat())
        results.append({"events": got["events"], "seconds": round(got["seconds"], 2),
                        "events_per_s": round(got["events"] / got["seconds"]), "peak_rss_mib": got["peak_rss_mib"]})
    return results


def backfill(days: int, events: int, workers_list: list[int]) -> list[dict]:
    import psycopg2

    root = generated(days, events)
    keys = [(START + timedelta(n)).isoformat() for n in range(days)]
    results, outputs = [], []
    for workers in workers_list:
        database = f"billing_bench_{uuid.uuid4().hex[:8]}"
        admin = psycopg2.connect(f"postgresql://{PG_SERVER}/postgres")
        admin.autocommit = True
        admin.cursor().execute(f'CREATE DATABASE "{database}"')
        dagster_home = root / f"dagster-{workers}"
        shutil.rmtree(dagster_home, ignore_errors=True)
        dagster_home.mkdir(parents=True)
        shutil.copy(ROOT / "deploy" / "dagster.yaml", dagster_home)
        env = {"DAGSTER_HOME": str(dagster_home), "DAGSTER_PG_URL": f"postgresql+psycopg2://{PG_SERVER}/{database}"}
        home = root / f"home-{workers}"
        try:
            got = measure(BACKFILL, json.dumps(billing_env(root, home)), json.dumps(keys), str(workers), env=env)
        finally:
            admin.cursor().execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.close()
        outputs.append(sorted(p.relative_to(home).as_posix() for p in (home / "warehouse").rglob("*.parquet")))
        results.append({"partitions": days, "events_per_partition": events, "workers": workers,
                        "seconds": round(got["seconds"], 1), "slowest_run_s": round(got["slowest_run_s"], 1),
                        "failed": got["failed"]})
    # Data files are named by their content hash: equal names mean equal bytes.
    results.append({"same_outputs": all(o == outputs[0] for o in outputs)})
    return results


def s3(events: int) -> list[dict]:
    sys.path.insert(0, str(ROOT))  # the tests package: its S3 support
    import boto3

    root = generated(1, events)
    port = 45000 + os.getpid() % 1000
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    aws = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_REGION": "us-east-1",
           "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    try:
        time.sleep(3)
        client = boto3.client("s3", endpoint_url=aws["AWS_ENDPOINT_URL"], region_name="us-east-1",
                              aws_access_key_id="bench", aws_secret_access_key="bench")
        client.create_bucket(Bucket="bench")
        for f in (root / "landing").rglob("*"):
            if f.is_file():
                client.upload_file(str(f), "bench", f"landing/{f.relative_to(root / 'landing').as_posix()}")
        on_s3 = billing_env(root, root / "home-s3", BILLING_LANDING="s3://bench/landing",
                            BILLING_WAREHOUSE="s3://bench/warehouse")
        remote = measure(INGEST, json.dumps(on_s3), START.isoformat(), env=aws)
    finally:
        server.terminate()
        server.wait()
    local = measure(INGEST, json.dumps(billing_env(root, root / "home-local")), START.isoformat())
    return [{"where": name, "events": got["events"], "seconds": round(got["seconds"], 2)}
            for name, got in (("local", local), ("moto S3", remote))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["partition", "backfill", "s3"])
    parser.add_argument("--events", type=int, nargs="+", default=[100_000])
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    if args.what == "partition":
        results = partition(args.events)
    elif args.what == "backfill":
        results = backfill(args.days, args.events[0], args.workers)
    else:
        results = s3(args.events[0])
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
