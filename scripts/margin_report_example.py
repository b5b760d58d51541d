"""Regenerate docs/margin-report-example.png: the first page of the margin report of the demo
data (`billing generate`'s generator, three months from August 2026, October's report).

    python scripts/margin_report_example.py [--keep DIR]

Needs pdftoppm (poppler-utils).
"""

from __future__ import annotations

import argparse
import subprocess
import tempfile
from datetime import date
from pathlib import Path

from billing_pipelines.generate import GeneratorSpec, generate
from billing_pipelines.ingest.landing import landing_dates
from billing_pipelines.ingest.pipeline import ingest
from billing_pipelines.margin.report_document import TREND_MONTHS, write_margin_report
from billing_pipelines.month_close.documents import closes_through
from billing_pipelines.month_close.run import close_months
from billing_pipelines.resources import BillingSettings

SPEC = GeneratorSpec(start=date(2026, 8, 1), days=92)
MONTHS = (date(2026, 8, 1), date(2026, 9, 1), date(2026, 10, 1))
PNG = Path(__file__).resolve().parent.parent / "docs" / "margin-report-example.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="work in this folder and keep it (default: a temporary one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="margin-report-example-") as scratch:
        root = Path(args.keep or scratch)
        generate(SPEC, root / "config", str(root / "landing"))
        settings = BillingSettings.from_env({"BILLING_HOME": str(root / "home"), "BILLING_CONFIG": str(root / "config"),
                                             "BILLING_LANDING": str(root / "landing")})
        ingest(settings, sorted(landing_dates(settings.landing_store())))
        close_months(settings, MONTHS[-1])  # and every month before it
        _, keys = write_margin_report(settings, closes_through(settings.warehouse(), MONTHS[-1], TREND_MONTHS))
        pdf = settings.warehouse().store.path(keys["pdf"])
        subprocess.run(["pdftoppm", "-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile", pdf,
                        str(PNG.with_suffix(""))], check=True)
        print(PNG, "from", pdf)


if __name__ == "__main__":
    main()
