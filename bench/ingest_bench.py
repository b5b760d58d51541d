"""Ingest benchmark (issue 2): ingest + dedupe + price against the floor, side by side, in one run.

Generates (once, cached under bench/out/) a landing zone of 20 M events in Parquet and one of 2 M
events in gzipped JSON lines, then for each measures, in fresh subprocesses:
- the floor: DuckDB reading every column the pipeline uses over the same files (sum/count of each),
  best of three runs;
- the pipeline: `ingest` of every landing date (validate, quarantine, price, dedupe, commit);
- the least work, best of three, in DuckDB and (Parquet only) in Polars: for each landing date,
  hash every request_id, find the repeated hashes and write one row per event (position, hash,
  cost, credits), with no validation, config, quarantine or cross-day check: no pipeline can be
  faster than that, so its ratio to the floor bounds what the pipeline can reach. For JSON lines
  it reads with the floor's `read_json`, which cannot tell a wrong JSON type or keep a malformed
  line with its line number, as the quarantine must.
Reports events/second, the ratio to the floor and the peak RSS of each subprocess.

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

READ_JSON = """
def read_json(files):
    schema = {"request_id": "VARCHAR", "org_id": "VARCHAR", "user_id": "VARCHAR", "ts": "VARCHAR",
              "model": "VARCHAR", "action": "VARCHAR", "input_tokens": "BIGINT",
              "output_tokens": "BIGINT", "latency_ms": "BIGINT"}
    return f"read_json({files!r}, format='newline_delimited', columns={schema!r}, ignore_errors=true)"
"""

FLOOR = READ_JSON + """
import duckdb, json, resource, sys, time
files, kind = json.loads(sys.argv[1]), sys.argv[2]
con = duckdb.connect(config={"memory_limit": "3GB"})
cols = ("count(request_id), count(org_id), count(user_id), max(ts), count(model), count(action), "
        "sum(input_tokens), sum(output_tokens), sum(latency_ms)")
if kind == "parquet":
    source = f"read_parquet({files!r})"
else:
    source = read_json(files)
start = time.perf_counter()
row = con.execute(f"SELECT count(*), {cols} FROM {source}").fetchone()
print(json.dumps({"events": row[0], "seconds": time.perf_counter() - start,
                  "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))
"""

LEAST_WORK = READ_JSON + """
import duckdb, json, resource, sys, time
import polars as pl
by_date, engine, out = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
con = duckdb.connect(config={"memory_limit": "3GB"})
price = ("input_tokens * 3 + output_tokens * 15 AS cost_e12, "
         "greatest(1, (input_tokens + output_tokens + 999) // 1000) AS credits")
start = time.perf_counter()
for day, files in by_date.items():
    target = f"{out}/{day}.parquet"
    if engine != "polars":
        if engine == "duckdb-json":
            source, position = read_json(files), "row_number() OVER ()"
        else:
            source, position = f"read_parquet({files!r}, file_row_number = true)", "file_row_number"
        con.execute(f"COPY (SELECT {position} AS position, hash(request_id) AS h, {price} FROM {source}) TO '{target}'")
        con.execute(f"SELECT count(*) FROM (SELECT hash(request_id) FROM {source} GROUP BY 1 HAVING count(*) > 1)")
    else:
        tokens = pl.col("input_tokens") + pl.col("output_tokens")
        (pl.scan_parquet(files).with_row_index("position")
         .select("position", pl.col("request_id").hash().alias("h"),
                 (pl.col("input_tokens") * 3 + pl.col("output_tokens") * 15).alias("cost_e12"),
                 pl.max_horizontal(1, (tokens + 999) // 1000).alias("credits"))
         .with_columns(pl.col("h").is_first_distinct().alias("first")).sink_parquet(target))
seconds = time.perf_counter() - start
events = con.execute(f"SELECT count(*) FROM '{out}/*.parquet'").fetchone()[0]
print(json.dumps({"events": events, "seconds": seconds,
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
    floor = best_of_three(FLOOR, json.dumps(files), kind)
    home = root / "home"
    shutil.rmtree(home, ignore_errors=True)
    env = {"BILLING_HOME": str(home), "BILLING_CONFIG": str(root / "config"), "BILLING_LANDING": str(root / "landing")}
    pipeline = measure(PIPELINE, json.dumps(env))
    result = {
        "zone": name, "files": len(files), "events": pipeline["events"],
        "floor_events_per_s": round(floor["events"] / floor["seconds"]),
        "pipeline_events_per_s": round(pipeline["events"] / pipeline["seconds"]),
        "ratio_pipeline_to_floor": round(floor["seconds"] / pipeline["seconds"], 3),
        "floor_seconds": round(floor["seconds"], 2), "pipeline_seconds": round(pipeline["seconds"], 2),
        "floor_peak_rss_mib": floor["peak_rss_mib"], "pipeline_peak_rss_mib": pipeline["peak_rss_mib"],
        "billed": pipeline["billed"], "duplicates": pipeline["duplicates"],
    }
    for engine in (("duckdb", "polars") if kind == "parquet" else ("duckdb-json",)):
        least = best_of_three(LEAST_WORK, json.dumps(_by_date(files)), engine, str(_scratch(root)))
        result[f"least_work_{engine}_events_per_s"] = round(least["events"] / least["seconds"])
        result[f"least_work_{engine}_ratio_to_floor"] = round(floor["seconds"] / least["seconds"], 3)
    return result


def best_of_three(code: str, *args: str) -> dict:
    return min((measure(code, *args) for _ in range(3)), key=lambda r: r["seconds"])


def _by_date(files: list[str]) -> dict[str, list[str]]:
    by_date: dict[str, list[str]] = {}
    for f in files:
        day = next(part for part in Path(f).parts if part.startswith("dt="))
        by_date.setdefault(day, []).append(f)
    return by_date


def _scratch(root: Path) -> Path:
    scratch = root / "least-work"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    return scratch


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
