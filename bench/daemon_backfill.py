"""A real backfill through the Dagster daemon (issue 8): deploy/dagster.yaml on a fresh PostgreSQL
database, `dagster-daemon run`, `dagster job backfill -j daily_ingest --from --to`; the queued run
coordinator starts the runs (DefaultRunLauncher: a process per run), at most 4 at once.
Reports the wall time, the most runs at once and the run durations, and checks that the outputs
are byte-identical to a sequential in-process ingest. Too slow for the test suite (a process per
run): tests/test_backfill.py covers the same outcome with worker processes.

    .venv/bin/python bench/daemon_backfill.py [--landing tests/data/conformance/landing]
        [--config tests/data/conformance/config] [--from 2026-10-01 --to 2026-10-31]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PG_SERVER = os.environ.get("BILLING_BENCH_PG", "postgres@127.0.0.1:5432")


def postgres(sql: str) -> None:
    import psycopg2

    con = psycopg2.connect(f"postgresql://{PG_SERVER}/postgres")
    con.autocommit = True
    con.cursor().execute(sql)
    con.close()


def wait_for_runs(expected: int, timeout: float) -> list:
    import dagster as dg

    deadline = time.monotonic() + timeout
    with dg.DagsterInstance.get() as instance:
        while time.monotonic() < deadline:
            records = instance.get_run_records()
            if len(records) == expected and all(r.dagster_run.is_finished for r in records):
                return records
            time.sleep(5)
    raise TimeoutError(f"{expected} runs not finished after {timeout} s")


def most_at_once(records) -> int:
    running = most = 0
    for _, step in sorted([(r.start_time, 1) for r in records] + [(r.end_time, -1) for r in records]):
        running += step
        most = max(most, running)
    return most


def committed(settings) -> dict[str, bytes]:
    wh = settings.warehouse()
    return {f"{ds}/{p}/{name}": wh.store.read_bytes(f"{ds}/{p}/{file}")
            for ds in ("priced_events", "billed_usage") for p in wh.partitions(ds)
            for name, file in wh.manifest(ds, p)["files"].items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--landing", default=str(ROOT / "tests" / "data" / "conformance" / "landing"))
    parser.add_argument("--config", default=str(ROOT / "tests" / "data" / "conformance" / "config"))
    parser.add_argument("--from", dest="first", default="2026-10-01")
    parser.add_argument("--to", dest="last", default="2026-10-31")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="billing-daemon-"))
    database = f"billing_bench_{uuid.uuid4().hex[:8]}"
    (work / "dagster_home").mkdir()
    shutil.copy(ROOT / "deploy" / "dagster.yaml", work / "dagster_home")
    os.environ.update(DAGSTER_HOME=str(work / "dagster_home"), BILLING_HOME=str(work / "home"),
                      DAGSTER_PG_URL=f"postgresql+psycopg2://{PG_SERVER}/{database}",
                      BILLING_CONFIG=args.config, BILLING_LANDING=args.landing,
                      PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    days = [first + timedelta(n) for n in range((last - first).days + 1)]
    postgres(f'CREATE DATABASE "{database}"')
    daemon = subprocess.Popen([BIN / "dagster-daemon", "run", "-w", "workspace.yaml"], cwd=ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        start = time.time()
        subprocess.run([BIN / "dagster", "job", "backfill", "-j", "daily_ingest", "-w", "workspace.yaml",
                        "--from", args.first, "--to", args.last, "--noprompt"],
                       cwd=ROOT, check=True, capture_output=True)
        records = wait_for_runs(len(days), args.timeout)
        wall = time.time() - start
    finally:
        os.killpg(daemon.pid, signal.SIGTERM)
        daemon.wait(timeout=60)
        postgres(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')

    from billing_pipelines.ingest.pipeline import ingest
    from billing_pipelines.resources import BillingSettings

    backfilled = BillingSettings.from_env()
    sequential = BillingSettings.from_env({**os.environ, "BILLING_HOME": str(work / "sequential")})
    ingest(sequential, days)
    durations = sorted(r.end_time - r.start_time for r in records)
    print(json.dumps({
        "partitions": len(days), "wall_seconds": round(wall),
        "statuses": sorted({r.dagster_run.status.value for r in records}),
        "most_runs_at_once": most_at_once(records),
        "run_seconds_p50": round(durations[len(durations) // 2], 1), "run_seconds_max": round(durations[-1], 1),
        "identical_to_sequential": committed(backfilled) == committed(sequential),
    }, indent=1))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
