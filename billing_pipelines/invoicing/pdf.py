"""Invoice documents as HTML and PDF (templates/invoice.html.j2, assets/invoice.css), and the
storage key of each PDF.

Renders are deterministic: the PDF's dates come from the document's issue date, so the same
document always gives the same bytes (a finalized invoice's PDF can be reproduced and hashed).
The WeasyPrint font configuration, parsed stylesheet and image cache are built once per process
and reused by every render.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import re
import unicodedata
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from functools import cache

import jinja2
from weasyprint import CSS, HTML
from weasyprint.text.fonts import FontConfiguration

from billing_pipelines.invoicing.document import TITLES, invoice_view
from billing_pipelines.paths import resource_dir
from billing_pipelines.periods import month_key, parse_month

TEMPLATE = "invoice.html.j2"
STYLESHEET = "invoice.css"
USER_AGENT_STYLESHEET = "user-agent.css"
_NUMBER = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
_SLUG_MAX = 48


def render_invoice_html(document: dict) -> str:
    """The invoice document as a standalone HTML page (stylesheet linked from assets/)."""
    return _html(document, link_stylesheet=True)


def render_invoice_pdf(document: dict) -> bytes:
    """The invoice document as PDF bytes; the same document always gives the same bytes."""
    renderer = _renderer()
    html = _InvoiceHTML(string=_html(document, link_stylesheet=False), base_url=renderer.base_url)
    return html.write_pdf(
        stylesheets=[renderer.stylesheet], font_config=renderer.fonts, cache=renderer.images
    )


def render_invoice_pdfs(documents: Iterable[dict], workers: int = 2, chunksize: int = 8) -> Iterator[bytes]:
    """PDF bytes of each document, in order, rendered by `workers` processes (each warmed up
    once: fonts, stylesheet, template)."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(workers, mp_context=context, initializer=warm_up) as pool:
        yield from pool.map(render_invoice_pdf, documents, chunksize=chunksize)


def warm_up() -> None:
    """Load fonts, stylesheet and template, and lay out one example (a process pool initializer)."""
    from billing_pipelines.invoicing.examples import example_invoice

    render_invoice_pdf(example_invoice())


def pdf_key(org_id: str, month: str, number: str | None = None, kind: str = "invoice") -> str:
    """Relative storage key of a document's PDF, e.g. `invoices/2026-11/acme/INV-2026-000001.pdf`
    (`invoices/2026-11/acme/invoice-draft.pdf` before it has a number). Whatever characters
    `org_id` holds, the key stays inside `invoices/<month>/`."""
    if kind not in TITLES:
        raise ValueError(f"unknown document kind {kind!r}; expected one of {', '.join(TITLES)}")
    month = month_key(parse_month(month))
    if number is None:
        name = f"{kind}-draft"
    elif isinstance(number, str) and _NUMBER.fullmatch(number):
        name = number
    else:
        raise ValueError(f"not a document number usable in a file name: {number!r}")
    return f"invoices/{month}/{safe_org_segment(org_id)}/{name}.pdf"


def safe_org_segment(org_id: str) -> str:
    """`org_id` as one safe path segment: lower-case ASCII letters, digits, `-`, `_`, `.` (not
    leading). An id that had to be changed gets a hash of the original appended, so two
    different ids never share a folder."""
    if not isinstance(org_id, str) or not org_id:
        raise ValueError(f"org_id must be non-empty text, got {org_id!r}")
    folded = unicodedata.normalize("NFKD", org_id).encode("ascii", "ignore").decode().lower()
    slug = re.sub(r"[^a-z0-9._-]+", "-", folded).lstrip(".-")[:_SLUG_MAX].rstrip(".-")
    if slug == org_id:
        return slug
    digest = hashlib.sha256(org_id.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{slug or 'org'}-{digest}"


@dataclass
class _Renderer:
    """What every render in this process shares."""

    base_url: str
    fonts: FontConfiguration
    stylesheet: CSS
    user_agent: CSS
    images: dict = field(default_factory=dict)


@cache
def _renderer() -> _Renderer:
    assets = resource_dir("assets")
    fonts = FontConfiguration()
    stylesheet = CSS(filename=str(assets / STYLESHEET), font_config=fonts)
    user_agent = CSS(filename=str(assets / USER_AGENT_STYLESHEET))
    return _Renderer(assets.as_uri() + "/", fonts, stylesheet, user_agent)


class _InvoiceHTML(HTML):
    """An invoice page with the small user-agent stylesheet of assets/user-agent.css."""

    def _ua_stylesheets(self, forms: bool = False) -> list[CSS]:
        return [_renderer().user_agent]


@cache
def _template() -> jinja2.Template:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(resource_dir("templates")),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return environment.get_template(TEMPLATE)


def _html(document: dict, link_stylesheet: bool) -> str:
    return _template().render(
        inv=invoice_view(document),
        assets_url=resource_dir("assets").as_uri() + "/",
        link_stylesheet=link_stylesheet,
    )
