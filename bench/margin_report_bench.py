"""Benchmark: render the monthly margin report (charts, HTML, PDF) for a large customer base.

Synthetic stored closes (billing_pipelines.margin.examples): `--customers` customers over
`--months` closed months. Reports wall and CPU seconds per stage (the machine may be shared:
CPU seconds are the figure to compare), pages and PDF size. Target: a 1,000-customer report
(build, charts, HTML, PDF) in under 30 CPU seconds.

    python bench/margin_report_bench.py [--customers 1000] [--months 12]
"""

from __future__ import annotations

import argparse
import io
import json
import time
from datetime import date

from pypdf import PdfReader

from billing_pipelines.margin.examples import example_closes, example_config
from billing_pipelines.margin.report_document import (
    build_margin_report,
    margin_report_html,
    margin_report_pdf,
    report_charts,
)

TARGET_CPU_SECONDS = 30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1000)
    parser.add_argument("--months", type=int, default=12)
    args = parser.parse_args()
    config = example_config(args.customers)
    closes = example_closes(config, date(2026, 10, 1), args.months)
    stages = {}
    report = _timed(stages, "build", lambda: build_margin_report(config, closes))
    _timed(stages, "charts", lambda: report_charts(report))
    html = _timed(stages, "html", lambda: margin_report_html(report))  # draws the charts again
    pdf = _timed(stages, "pdf", lambda: margin_report_pdf(html))
    cpu = sum(v for k, v in stages.items() if k.endswith("cpu_s") and not k.startswith("charts"))
    print(json.dumps({
        "customers": args.customers, "months": args.months, **{k: round(v, 2) for k, v in stages.items()},
        "total_cpu_s": round(cpu, 2), "pages": len(PdfReader(io.BytesIO(pdf)).pages), "pdf_kb": len(pdf) // 1024,
        "below_target": len(report.below_target), "target_cpu_s": TARGET_CPU_SECONDS, "met": cpu < TARGET_CPU_SECONDS,
    }, indent=1))


def _timed(stages: dict, name: str, work):
    """Run `work`, recording its wall and CPU seconds under `name`."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = work()
    stages[f"{name}_wall_s"], stages[f"{name}_cpu_s"] = time.perf_counter() - wall, time.process_time() - cpu
    return result


if __name__ == "__main__":
    main()
