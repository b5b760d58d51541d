"""The company that issues the invoices: optional `seller.yaml` in the BILLING_CONFIG folder.

```yaml
name: Example AI Ltd
address: "10 Market Street\nLondon EC1A 1AA\nUnited Kingdom"
email: billing@example.com
tax_id: GB123456789
payment_terms_days: 30
```
Every field is optional; a missing file gives the defaults below.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date, timedelta
from pathlib import Path

import yaml

from billing_pipelines.config import ConfigError

SELLER_FILE = "seller.yaml"


@dataclass(frozen=True)
class Seller:
    name: str = "Example AI Ltd"
    address: str = ""
    email: str = "billing@example.com"
    tax_id: str = ""
    payment_terms_days: int = 30

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
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: must be a mapping of seller fields")
    return seller_from_dict(doc, where=str(path))


def seller_from_dict(doc: dict, where: str = "seller") -> Seller:
    """A Seller from a mapping (seller.yaml or an invoice document's `seller`), validated."""
    unknown = sorted(set(doc) - set(Seller.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(unknown)}")
    text = {}
    for key in ("name", "address", "email", "tax_id"):
        value = doc.get(key)
        if value is not None and not isinstance(value, str):
            raise ConfigError(f"{where}: `{key}` must be text, got {value!r}")
        if value is not None:
            text[key] = value.strip()
    if text.get("name") == "":
        raise ConfigError(f"{where}: `name` must not be empty")
    terms = doc.get("payment_terms_days", Seller.payment_terms_days)
    if isinstance(terms, bool) or not isinstance(terms, int) or not 0 <= terms <= 365:
        raise ConfigError(f"{where}: `payment_terms_days` must be an integer 0..365, got {terms!r}")
    return Seller(**text, payment_terms_days=terms)
