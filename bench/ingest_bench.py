"""Ingest benchmark (issue 2): ingest + dedupe + price against the floor, side by side, in one run.

Generates (once, cached under bench/out/) a landing zone of 20 M events in Parquet and one of 2 M
events in gzipped JSON lines, then for each measures, in fresh subprocesses:
- the floor: DuckDB reading every column the pipeline uses over the same files (sum/count of each),
  best of three runs;
- the pipeline: `ingest` of every landing date (validate, quarantine, price, dedupe, commit).
Reports events/second, the ratio pipeline/floor and the peak RSS of each subprocess.

    .venv/bin/python bench/ingest_bench.py [--parquet-events 20000000] [--json-events 2000000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"
DAYS = 10

FLOOR = """
import duckdb, json, resource, sys, time
files, kind = json.loads(sys.argv[1]), sys.argv[2]
con = duckdb.connect(config={"memory_limit": "3GB"})
cols = ("count(request_id), count(org_id), count(user_id), max(ts), count(model), count(action), "
        "sum(input_tokens), sum(output_tokens), sum(latency_ms)")
if kind == "parquet":
    source = f"read_parquet({files!r})"
else:
    schema = {"request_id": "VARCHAR", "org_id": "VARCHAR", "user_id": "VARCHAR", "ts": "VARCHAR",
              "model": "VARCHAR", "action": "VARCHAR", "input_tokens": "BIGINT",
              "output_tokens": "BIGINT", "latency_ms": "BIGINT"}
    source = f"read_json({files!r}, format='newline_delimited', columns={schema!r}, ignore_errors=true)"
start = time.perf_counter()
row = con.execute(f"SELECT count(*), {cols} FROM {source}").fetchone()
print(json.dumps({"events": row[0], "seconds": time.perf_counter() - start,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""

PIPELINE = """
import json, resource, sys, time
from billing_pipelines.resources import BillingSettings
from billing_pipelines.ingest.pipeline import LandingZone, ingest
settings = BillingSettings.from_env(json.loads(sys.argv[1]))
start = time.perf_counter()
summaries = ingest(settings, LandingZone(settings).dates)
print(json.dumps({"events": sum(s.rows_read for s in summaries), "billed": sum(s.billed for s in summaries),
                  "duplicates": sum(s.duplicates for s in summaries), "seconds": time.perf_counter() - start,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""


def generate(name: str, events: int, parquet_share: float) -> Path:
    root = OUT / name
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    subprocess.run(
        [sys.executable, "-m", "billing_pipelines.cli", "generate", "--seed", "11", "--orgs", "200",
         "--start", "2026-09-01", "--days", str(DAYS), "--events-per-day", str(events // DAYS * 100 // 93),
         "--parquet-share", str(parquet_share), "--gzip-share", "1", "--files-per-day", "8",
         "--config-out", str(root / "config"), "--landing-out", str(root / "landing")],
        check=True,
    )
    (root / "done").touch()
    return root


def measure(code: str, *args: str) -> dict:
    """Run `code` in a fresh interpreter; it prints its result (with its own peak RSS) as JSON."""
    proc = subprocess.run([sys.executable, "-c", code, *args], check=True, capture_output=True, text=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def bench(name: str, root: Path, kind: str) -> dict:
    suffixes = (".parquet",) if kind == "parquet" else (".jsonl.gz", ".jsonl")
    files = sorted(str(p) for p in (root / "landing").rglob("*") if p.name.endswith(suffixes))
    # the floor at its best of three (warm page cache), so the ratio is not flattered by a cold read
    floor = min((measure(FLOOR, json.dumps(files), kind) for _ in range(3)), key=lambda r: r["seconds"])
    home = root / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = {"BILLING_HOME": str(home), "BILLING_CONFIG": str(root / "config"), "BILLING_LANDING": str(root / "landing")}
    pipeline = measure(PIPELINE, json.dumps(env))
    return {
        "zone": name, "files": len(files), "events": pipeline["events"],
        "floor_events_per_s": round(floor["events"] / floor["seconds"]),
        "pipeline_events_per_s": round(pipeline["events"] / pipeline["seconds"]),
        "ratio_pipeline_to_floor": round(floor["seconds"] / pipeline["seconds"], 3),
        "floor_seconds": round(floor["seconds"], 2), "pipeline_seconds": round(pipeline["seconds"], 2),
        "floor_peak_rss_mib": floor["peak_rss_mib"], "pipeline_peak_rss_mib": pipeline["peak_rss_mib"],
        "billed": pipeline["billed"], "duplicates": pipeline["duplicates"],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--parquet-events", type=int, default=20_000_000)
    parser.add_argument("--json-events", type=int, default=2_000_000)
    args = parser.parse_args()
    zones = [("parquet", generate(f"parquet-{args.parquet_events}", args.parquet_events, 1.0), "parquet"),
             ("jsonl.gz", generate(f"jsonl-{args.json_events}", args.json_events, 0.0), "json")]
    results = [bench(name, root, kind) for name, root, kind in zones]
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
