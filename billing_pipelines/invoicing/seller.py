"""The company that issues the invoices: optional `seller.yaml` in the BILLING_CONFIG folder.

```yaml
name: Example AI Ltd
address: "10 Market Street\nLondon EC1A 1AA\nUnited Kingdom"
email: billing@example.com
tax_id: GB123456789
payment_terms_days: 30
```
Every field is optional. Drafts render without the file (the placeholder seller below, under
their DRAFT watermark); a final document, which is sent to the customer and never changes, needs
it (`final_seller`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated

from pydantic import Field, Strict, StringConstraints, with_config

from billing_pipelines.config import ENTRY, ConfigError, read_yaml, validate_documents

SELLER_FILE = "seller.yaml"
SellerText = Annotated[str, Strict(), StringConstraints(strip_whitespace=True)]


@with_config(ENTRY)
@dataclass(frozen=True)
class Seller:
    name: Annotated[SellerText, StringConstraints(min_length=1)] = "Example AI Ltd"
    address: SellerText = ""
    email: SellerText = "billing@example.com"
    tax_id: SellerText = ""
    payment_terms_days: Annotated[int, Strict(), Field(ge=0, le=365)] = 30

    def due_date(self, issue_date: date) -> date:
        """The date payment is due for an invoice issued on `issue_date`."""
        return issue_date + timedelta(days=self.payment_terms_days)

    def as_dict(self) -> dict:
        """The `seller` object of an invoice document."""
        return asdict(self)


def load_seller(config_folder: str | Path) -> Seller:
    """Seller details from `<config_folder>/seller.yaml`, or the defaults when it is absent."""
    path = Path(config_folder) / SELLER_FILE
    if not path.is_file():
        return Seller()
    return validate_documents(dict[str, Seller], [read_yaml(path.read_bytes(), SELLER_FILE)])[SELLER_FILE]


def final_seller(config_folder: str | Path) -> Seller:
    """The seller of final documents: `<config_folder>/seller.yaml`, which must exist (a
    ConfigError saying so otherwise, so no invoice is frozen with the placeholder seller)."""
    path = Path(config_folder) / SELLER_FILE
    if not path.is_file():
        raise ConfigError(f"{SELLER_FILE}: final invoices need the seller who issues them: write {path} "
                          "(name, address, email, tax_id, payment_terms_days; see docs/invoices.md)")
    return load_seller(config_folder)
