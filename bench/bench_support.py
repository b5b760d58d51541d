"""What the benchmarks share: a fresh process per measured run, its peak memory, a BILLING_HOME."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The end of a measured script: its seconds and its own peak RSS as JSON. VmHWM, because
# ru_maxrss would count the pages of the parent that a forked process begins with.
REPORT = """
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"seconds": time.perf_counter() - start, "peak_rss_mib": hwm // 1024, "what": what}))
"""


def fresh_process(script: str, env: dict, *args: str) -> dict:
    """Run `script` (which ends with REPORT) in a new Python process; its report."""
    out = subprocess.run([sys.executable, "-c", script + REPORT, json.dumps(env), *args],
                         capture_output=True, text=True, cwd=ROOT)
    if out.returncode:
        sys.exit(out.stderr[-3000:])
    reports = [line for line in out.stdout.splitlines() if line.startswith('{"seconds"')]
    if not reports:
        sys.exit(f"no report line in the output of {args}:\n{out.stdout[-3000:]}")
    return json.loads(reports[-1])


def fresh_home(out: Path, **extra: str) -> dict:
    """An empty folder `out` and the BILLING_* environment of a deployment in it."""
    shutil.rmtree(out, ignore_errors=True)
    return home(out, **extra)


def home(out: Path, **extra: str) -> dict:
    """The BILLING_* environment of a deployment in folder `out`."""
    return {"BILLING_HOME": str(out / "home"), "BILLING_CONFIG": str(out / "config"),
            "BILLING_LANDING": str(out / "landing"), **extra}
