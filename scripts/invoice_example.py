"""Render the example invoice's first page to docs/invoice-example.png (needs pdftoppm).

    python scripts/invoice_example.py
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from billing_pipelines.invoicing.examples import example_invoice
from billing_pipelines.invoicing.pdf import render_invoice_pdf

CUSTOMER = {
    "name": "Müller & Søn GmbH",
    "email": "buchhaltung@mueller-soen.example",
    "address": "Hauptstraße 5\n80331 München\nGermany",
    "tax_rate": "0.19",
}
OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "invoice-example.png"


def main() -> None:
    pdf = render_invoice_pdf(example_invoice(org_id="mueller-soen", customer=CUSTOMER))
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "invoice.pdf"
        source.write_bytes(pdf)
        subprocess.run(["pdftoppm", "-png", "-r", "110", "-f", "1", "-l", "1", "-singlefile",
                        str(source), str(OUTPUT.with_suffix(""))], check=True)
    print(OUTPUT)


if __name__ == "__main__":
    main()
