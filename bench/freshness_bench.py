"""Freshness benchmark (issue 6): seconds from a file landing to `GET /v1/balance` showing it.

Sets up, in a temporary folder: the demo landing zone and config (`billing generate`, the last
--history-days days up to today) ingested by the daily pipeline, every month before the current
one closed (a micro-batch starts from the last close: a longer history must not slow it); a Dagster
instance on PostgreSQL (database billing_bench_dagster, created here) with `dagster-webserver` and `dagster-daemon`
running the billing definitions plus the dashboard's sensor and job; and `billing serve`. Then
drops a file into today's landing folder `--drops` times and polls the API until the customer's
consumption shows it. Reports p50/p95/max (required p95 < 30 s, goal < 15 s), the in-process
time of a micro-batch of one demo-sized file, and the Dagster run durations. Stops every process
it started and drops the database at the end (unless --keep).

    .venv/bin/python bench/freshness_bench.py [--drops 20] [--events-per-file 1000] [--billing-db postgres]
        [--history-days 365] [--events-per-day 4000] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
BIN = Path(sys.executable).parent
PG_SERVER = "postgresql+psycopg2://postgres@127.0.0.1:5432"
DAGSTER_DB = "billing_bench_dagster"
BILLING_DB = "billing_bench_billing"

DEFS = """
import dagster as dg
from billing_pipelines import definitions as billing
from billing_pipelines.balances import assets as balances

defs = dg.Definitions.merge(billing.defs, dg.Definitions(
    assets=[balances.live_balances], jobs=[balances.live_balance_updates], sensors=[balances.landed_files_sensor]))
"""

DAGSTER_YAML = f"""
storage:
  postgres:
    postgres_url: "{PG_SERVER}/{DAGSTER_DB}"
run_coordinator:
  module: dagster.core.run_coordinator
  class: QueuedRunCoordinator
  config:
    dequeue_interval_seconds: 1
    tag_concurrency_limits:
      - key: billing/live
        limit: 2
telemetry:
  enabled: false
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get_json(url: str, token: str | None = None) -> tuple[int, dict]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return 0, {}


def wait_for(predicate, timeout: float, what: str, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise SystemExit(f"freshness bench: timed out after {timeout:.0f} s waiting for {what}")


def pg_admin():
    return create_engine(f"{PG_SERVER}/postgres", isolation_level="AUTOCOMMIT")


def recreate_database(name: str) -> None:
    with pg_admin().connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))


def drop_database(name: str) -> None:
    with pg_admin().connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def demo_data(work: Path, env: dict, history_days: int, events_per_day: int) -> tuple[list[str], float]:
    """The demo zone of the last `history_days` days up to today, ingested daily, every month
    before the current partition closed; returns (org_ids, ingest and close seconds)."""
    from billing_pipelines.generate import GeneratorSpec, generate
    from billing_pipelines.ingest.landing import landing_dates
    from billing_pipelines.ingest.pipeline import ingest
    from billing_pipelines.month_close.run import close_months
    from billing_pipelines.periods import add_months
    from billing_pipelines.resources import BillingSettings

    today = datetime.now(UTC).date()
    start = today - timedelta(days=history_days)
    generate(GeneratorSpec(start=start, days=history_days, events_per_day=events_per_day),
             Path(env["BILLING_CONFIG"]), env["BILLING_LANDING"])
    settings = BillingSettings.from_env(env)
    began = time.perf_counter()
    ingest(settings, sorted(landing_dates(settings.landing_store())))
    close_months(settings, add_months(today.replace(day=1), -2))
    return sorted(settings.billing_config().customers), time.perf_counter() - began


def drop_file(landing: Path, name: str, orgs: list[str], measured: str, events: int, tag: str) -> tuple[str, int]:
    """Land a gateway file atomically (hidden name, then rename): `events` simple requests over
    the orgs, 10 of them for `measured`; returns (key, credits of `measured`)."""
    now = datetime.now(UTC)
    rows = []
    for n in range(events):
        org = measured if n < 10 else random.choice(orgs)
        rows.append({"request_id": f"{tag}-{n}", "org_id": org, "user_id": f"{org}-bench",
                     "ts": (now - timedelta(seconds=random.randint(0, 30))).isoformat(timespec="seconds"),
                     "model": "small-fast", "action": "simple", "input_tokens": 120, "output_tokens": 40,
                     "latency_ms": 300})
    folder = landing / f"dt={now.date().isoformat()}" / "bench"
    folder.mkdir(parents=True, exist_ok=True)
    temp = folder / f".{name}.tmp"
    temp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    temp.rename(folder / name)
    return f"{folder.relative_to(landing).as_posix()}/{name}", sum(1 for r in rows if r["org_id"] == measured)


def micro_batch_seconds(env: dict, landing: Path, orgs: list[str], events: int, repeat: int = 5) -> list[float]:
    from billing_pipelines.balances.live import process_landed_file
    from billing_pipelines.resources import BillingSettings

    settings = BillingSettings.from_env(env)
    process_landed_file(settings, None)  # warm: first balances of every customer
    times = []
    for n in range(repeat):
        key, _ = drop_file(landing, f"inproc-{n}.jsonl", orgs, orgs[0], events, f"inproc{n}")
        began = time.perf_counter()
        process_landed_file(settings, key)
        times.append(time.perf_counter() - began)
    return times


def start(cmd: list[str], env: dict, log: Path) -> subprocess.Popen:
    handle = open(log, "w")
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)


def stop(processes: list[subprocess.Popen]) -> None:
    for p in processes:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
    for p in processes:
        try:
            p.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


def active_runs(instance) -> int:
    from dagster import DagsterRunStatus, RunsFilter

    busy = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
    return len(instance.get_run_records(RunsFilter(statuses=busy)))


def run_seconds(instance, keys: set[str]) -> list[float]:
    from dagster import DagsterRunStatus, RunsFilter

    records = instance.get_run_records(RunsFilter(job_name="live_balance_updates", statuses=[DagsterRunStatus.SUCCESS]))
    return [r.end_time - r.create_timestamp.timestamp() for r in records
            if r.dagster_run.tags.get("billing/file") in keys and r.end_time]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drops", type=int, default=20)
    parser.add_argument("--events-per-file", type=int, default=1000)
    parser.add_argument("--history-days", type=int, default=60, help="days of history before today (365: a year)")
    parser.add_argument("--events-per-day", type=int, default=4000, help="events a day of that history")
    parser.add_argument("--billing-db", choices=["sqlite", "postgres"], default="sqlite",
                        help=f"the billing database: SQLite in BILLING_HOME, or PostgreSQL ({BILLING_DB})")
    parser.add_argument("--keep", action="store_true", help="keep the temp folder and the databases")
    args = parser.parse_args()
    databases = [DAGSTER_DB] + ([BILLING_DB] if args.billing_db == "postgres" else [])

    work = Path(tempfile.mkdtemp(prefix="billing-freshness-"))
    env = {**os.environ, "BILLING_HOME": str(work / "home"), "BILLING_CONFIG": str(work / "config"),
           "BILLING_LANDING": str(work / "landing"), "DAGSTER_HOME": str(work / "dagster"),
           "PYTHONPATH": str(ROOT)}
    if args.billing_db == "postgres":
        env["BILLING_DATABASE_URL"] = f"{PG_SERVER}/{BILLING_DB}"
    os.environ.update({k: env[k] for k in ("BILLING_HOME", "BILLING_CONFIG", "BILLING_LANDING", "DAGSTER_HOME")})
    landing = Path(env["BILLING_LANDING"])
    processes: list[subprocess.Popen] = []
    try:
        for name in databases:
            recreate_database(name)
        orgs, ingest_seconds = demo_data(work, env, args.history_days, args.events_per_day)
        print(f"demo data: {len(orgs)} customers, {args.history_days} days of history ingested and closed "
              f"in {ingest_seconds:.1f} s", file=sys.stderr)
        inproc = micro_batch_seconds(env, landing, orgs, args.events_per_file)
        print(f"micro-batch of one {args.events_per_file}-event file, in process: "
              f"{', '.join(f'{t:.2f}' for t in inproc)} s", file=sys.stderr)

        home = Path(env["DAGSTER_HOME"])
        home.mkdir(parents=True)
        (home / "dagster.yaml").write_text(DAGSTER_YAML)
        (work / "bench_defs.py").write_text(DEFS)
        (work / "workspace.yaml").write_text(
            f"load_from:\n  - python_file:\n      relative_path: {work / 'bench_defs.py'}\n"
            f"      working_directory: {ROOT}\n      location_name: billing_pipelines\n")
        web_port, api_port = free_port(), free_port()
        workspace = ["-w", str(work / "workspace.yaml")]
        processes.append(start([str(BIN / "dagster-daemon"), "run", *workspace], env, work / "daemon.log"))
        processes.append(start([str(BIN / "dagster-webserver"), *workspace, "-h", "127.0.0.1", "-p", str(web_port)],
                               env, work / "webserver.log"))
        processes.append(start([sys.executable, "-m", "uvicorn", "--factory",
                                "billing_pipelines.serve.app:app_from_env",
                                "--http", "billing_pipelines.serve.server:LimitedHttpProtocol",
                                "--host", "127.0.0.1", "--port", str(api_port), "--log-level", "warning"],
                               env, work / "serve.log"))

        from dagster import DagsterInstance

        from billing_pipelines.balances.state import balances_engine
        from billing_pipelines.resources import BillingSettings
        from billing_pipelines.serve.tokens import create_token

        settings = BillingSettings.from_env(env)
        measured = orgs[0]
        _, token = create_token(balances_engine(settings.database_url), measured)
        api = f"http://127.0.0.1:{api_port}/v1/balance"
        wait_for(lambda: get_json(f"http://127.0.0.1:{web_port}/server_info")[0] == 200, 120, "dagster-webserver")
        wait_for(lambda: get_json(api, token)[0] == 200, 120, "billing serve")
        instance = DagsterInstance.get()
        wait_for(lambda: instance.get_run_records(limit=1), 180, "the sensor's first runs")
        wait_for(lambda: active_runs(instance) == 0, 300, "the sensor's first runs to finish", interval=1)
        time.sleep(6)

        latencies, keys = [], set()
        for n in range(args.drops):
            consumed = get_json(api, token)[1]["consumed_credits"]
            key, credits = drop_file(landing, f"drop-{n:02d}.jsonl", orgs, measured, args.events_per_file, f"drop{n}")
            landed = time.monotonic()
            keys.add(key)
            expected = consumed + credits
            wait_for(lambda expected=expected: get_json(api, token)[1].get("consumed_credits", 0) >= expected, 120,
                     f"{key} in the balance", interval=0.2)
            latencies.append(time.monotonic() - landed)
            print(f"drop {n + 1:2d}: {latencies[-1]:5.1f} s", file=sys.stderr)
            time.sleep(random.uniform(0, 3))
        runs = run_seconds(instance, keys)
        report = {
            "drops": args.drops, "events_per_file": args.events_per_file, "customers": len(orgs),
            "history_days": args.history_days, "events_per_day": args.events_per_day,
            "billing_db": args.billing_db,
            "landing_to_api_seconds": {"p50": round(statistics.median(latencies), 2),
                                       "p95": round(percentile(latencies, 0.95), 2),
                                       "max": round(max(latencies), 2), "min": round(min(latencies), 2)},
            "dagster_run_seconds_p50": round(statistics.median(runs), 2) if runs else None,
            "micro_batch_in_process_seconds": {"p50": round(statistics.median(inproc), 2),
                                               "max": round(max(inproc), 2)},
            "required_p95_under_30s": percentile(latencies, 0.95) < 30,
            "goal_p95_under_15s": percentile(latencies, 0.95) < 15,
        }
        print(json.dumps(report, indent=1))
    finally:
        stop(processes)
        if not args.keep:
            for name in databases:
                drop_database(name)  # WITH (FORCE): this process's own connections too
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"kept {work} and databases {', '.join(databases)}", file=sys.stderr)


if __name__ == "__main__":
    main()
