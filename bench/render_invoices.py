"""Benchmark: render realistic one-page invoices to PDF.

Reports the per-invoice time of a single process, and invoices/second with a pool of worker
processes (each warmed up once: WeasyPrint font configuration, parsed stylesheet, template).
Target: at least 15 invoices/s with 2 workers on a 2-core machine.

    python bench/render_invoices.py [--count 1000] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import resource
import statistics
import time

from pypdf import PdfReader

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


def check_one_page(invoices: list[dict]) -> None:
    """The benchmark is about one-page invoices: check the longest of each name."""
    longest = {}
    for document in invoices:
        name = document["customer"]["name"]
        if len(document["lines"]) >= len(longest.get(name, {"lines": ()})["lines"]):
            longest[name] = document
    for document in longest.values():
        pages = len(PdfReader(io.BytesIO(render_invoice_pdf(document))).pages)
        assert pages == 1, f"{document['org_id']}: {pages} pages"


def single_process(invoices: list[dict]) -> dict:
    warm_up()
    times, cpu_start = [], time.process_time()
    for document in invoices:
        start = time.perf_counter()
        render_invoice_pdf(document)
        times.append(time.perf_counter() - start)
    cpu = time.process_time() - cpu_start
    return {"invoices": len(times), "mean_ms": round(1000 * statistics.fmean(times), 1),
            "median_ms": round(1000 * statistics.median(times), 1),
            "p95_ms": round(1000 * sorted(times)[int(len(times) * 0.95)], 1),
            "cpu_ms_per_invoice": round(1000 * cpu / len(times), 1)}


def worker_pool(invoices: list[dict], workers: int) -> dict:
    """Wall-clock throughput of the pool (start-up included), and the workers' CPU seconds per
    invoice: on a machine shared with other load, workers / cpu_s is what free cores would give."""
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    sizes = [len(pdf) for pdf in render_invoice_pdfs(invoices, workers=workers)]
    elapsed = time.perf_counter() - start
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime + cpu_after.ru_stime) - (cpu_before.ru_utime + cpu_before.ru_stime)
    assert len(sizes) == len(invoices) and min(sizes) > 0
    rate = len(sizes) / elapsed
    return {"workers": workers, "invoices": len(sizes), "seconds": round(elapsed, 2),
            "invoices_per_second": round(rate, 1), "target": TARGET_PER_SECOND,
            "meets_target": rate >= TARGET_PER_SECOND,
            "worker_cpu_ms_per_invoice": round(1000 * cpu / len(sizes), 1),
            "free_cores_invoices_per_second": round(workers * len(sizes) / cpu, 1),
            "mean_pdf_kb": round(sum(sizes) / len(sizes) / 1024, 1),
            "load_average_1m": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    invoices = sample_invoices(args.count)
    check_one_page(invoices)
    print(json.dumps({"single_process": single_process(invoices)}))
    print(json.dumps({"pool": worker_pool(invoices, args.workers)}))


if __name__ == "__main__":
    main()
