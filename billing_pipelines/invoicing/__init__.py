"""Invoice documents: seller details, rendering to HTML/PDF and the PDFs' storage keys."""

from billing_pipelines.invoicing.document import InvoiceDocumentError
from billing_pipelines.invoicing.pdf import pdf_key, render_invoice_html, render_invoice_pdf
from billing_pipelines.invoicing.seller import Seller, load_seller

__all__ = ["InvoiceDocumentError", "Seller", "load_seller", "pdf_key", "render_invoice_html",
           "render_invoice_pdf"]
