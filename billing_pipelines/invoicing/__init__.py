"""Invoice documents: seller details, rendering to HTML/PDF and the PDFs' storage keys."""

from billing_pipelines.invoicing.document import InvoiceDocumentError, invoice_document
from billing_pipelines.invoicing.pdf import (
    pdf_key,
    render_invoice_html,
    render_invoice_pdf,
    render_invoice_pdfs,
)
from billing_pipelines.invoicing.seller import Seller, load_seller

__all__ = ["InvoiceDocumentError", "Seller", "invoice_document", "load_seller", "pdf_key",
           "render_invoice_html", "render_invoice_pdf", "render_invoice_pdfs"]
