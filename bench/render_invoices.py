"""Benchmark: render realistic one-page invoices to PDF.

Reports the per-invoice time of a single process, and invoices/second with a pool of worker
processes (each warmed up once: WeasyPrint font configuration, parsed stylesheet, template).
Target: at least 15 invoices/s with 2 workers on a 2-core machine.

    python bench/render_invoices.py [--count 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

from billing_pipelines.invoicing.examples import EXAMPLE_CUSTOMER, example_invoice
from billing_pipelines.invoicing.pdf import render_invoice_pdf, render_invoice_pdfs, warm_up

TARGET_PER_SECOND = 15
# Customer names as a real customer base has them: mostly Latin, some accented, a few CJK.
NAMES = ["Acme Corp", "Globex Corporation", "Initech", "Umbrella Labs", "Müller & Søn GmbH",
         "Åsa Ødegård AS", "Café Crème SARL", "Hooli", "Stark Industries", "Wayne Enterprises",
         "Soylent Ltd", "Cyberdyne Systems", "Tyrell Corp", "Vandelay Industries", "Dunder Mifflin",
         "Oscorp", "Ginkgo Analytics", "Zürich Data AG", "Piedmont Robotics", "日本データ株式会社"]


def sample_invoices(count: int, seed: int = 7) -> list[dict]:
    """`count` varied one-page invoices (names, rates, purchases, drafts and finals)."""
    rng = random.Random(seed)
    invoices = []
    for i in range(count):
        final = rng.random() < 0.5
        customer = dict(EXAMPLE_CUSTOMER, name=NAMES[i % len(NAMES)],
                        tax_rate=rng.choice(["0", "0.0825", "0.19", "0.20"]))
        invoices.append(example_invoice(
            org_id=f"org-{i:04d}", customer=customer, status="final" if final else "draft",
            number=f"INV-2026-{i + 1:06d}" if final else None, extra_purchases=rng.randint(0, 3)))
    return invoices


def single_process(invoices: list[dict]) -> dict:
    warm_up()
    times = []
    for document in invoices:
        start = time.perf_counter()
        render_invoice_pdf(document)
        times.append(time.perf_counter() - start)
    return {"invoices": len(times), "mean_ms": round(1000 * statistics.fmean(times), 1),
            "median_ms": round(1000 * statistics.median(times), 1),
            "p95_ms": round(1000 * sorted(times)[int(len(times) * 0.95)], 1)}


def worker_pool(invoices: list[dict], workers: int) -> dict:
    start = time.perf_counter()
    sizes = [len(pdf) for pdf in render_invoice_pdfs(invoices, workers=workers)]
    elapsed = time.perf_counter() - start
    assert len(sizes) == len(invoices)
    rate = len(sizes) / elapsed
    return {"workers": workers, "invoices": len(sizes), "seconds": round(elapsed, 2),
            "invoices_per_second": round(rate, 1), "target": TARGET_PER_SECOND,
            "meets_target": rate >= TARGET_PER_SECOND, "mean_pdf_kb": round(sum(sizes) / len(sizes) / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    invoices = sample_invoices(args.count)
    print(json.dumps({"single_process": single_process(invoices)}))
    print(json.dumps({"pool": worker_pool(invoices, args.workers)}))


if __name__ == "__main__":
    main()
