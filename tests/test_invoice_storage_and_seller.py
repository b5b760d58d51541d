"""PDF storage keys that cannot escape the invoices folder, and seller.yaml."""

from __future__ import annotations

import posixpath
import re
from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from billing_pipelines.config import ConfigError
from billing_pipelines.invoicing.pdf import pdf_key, safe_org_segment
from billing_pipelines.invoicing.seller import Seller, load_seller

SAFE_SEGMENT = re.compile(r"[a-z0-9_-][a-z0-9._-]*")


def test_predictable_keys():
    assert pdf_key("acme", "2026-11", "INV-2026-000001") == "invoices/2026-11/acme/INV-2026-000001.pdf"
    assert pdf_key("acme", "2026-11") == "invoices/2026-11/acme/invoice-draft.pdf"
    assert pdf_key("acme", "2026-11", kind="credit_note") == "invoices/2026-11/acme/credit_note-draft.pdf"
    assert pdf_key("acme-eu_2.io", "2026-11", "CN-2026-000007", "credit_note") == (
        "invoices/2026-11/acme-eu_2.io/CN-2026-000007.pdf")


@pytest.mark.parametrize("org_id", ["../x", "..", ".", "a/b", "a\\b", "/etc/passwd", "a\0b", "Ünïcødé",
                                    "日本", "Acme", "  ", "x/../../y", "~root", "a" * 300])
def test_hostile_org_ids_stay_in_one_folder(org_id):
    key = pdf_key(org_id, "2026-11", "INV-2026-000001")
    prefix, segment, name = key.rsplit("/", 2)
    assert prefix == "invoices/2026-11" and name == "INV-2026-000001.pdf"
    assert SAFE_SEGMENT.fullmatch(segment) and len(segment) <= 61
    assert re.search(r"-[0-9a-f]{12}$", segment)  # altered ids carry a hash of the original


def test_altered_ids_do_not_collide():
    ids = ["a/b", "a\\b", "a-b", "A-B", "a b", "a\0b", "ä-b"]
    assert len({safe_org_segment(org_id) for org_id in ids}) == len(ids)
    assert safe_org_segment("a-b") == "a-b"


@given(st.text(min_size=1, max_size=80))
def test_any_org_id_gives_a_normalised_key_under_its_month(org_id):
    key = pdf_key(org_id, "2026-11")
    assert posixpath.normpath(key) == key and not key.startswith("/")
    parts = key.split("/")
    assert parts[:2] == ["invoices", "2026-11"] and len(parts) == 4
    assert SAFE_SEGMENT.fullmatch(parts[2])


@pytest.mark.parametrize(
    "args, message",
    [
        (("", "2026-11"), "org_id must be non-empty"),
        (("acme", "2026-1x"), "not a month"),
        (("acme", "2026-11", "../INV-1"), "not a document number"),
        (("acme", "2026-11", "INV 1"), "not a document number"),
        (("acme", "2026-11", None, "receipt"), "unknown document kind"),
    ],
)
def test_bad_key_arguments_are_refused(args, message):
    with pytest.raises(ValueError, match=message):
        pdf_key(*args)


def test_seller_defaults_without_a_file(tmp_path):
    seller = load_seller(tmp_path)
    assert seller == Seller()
    assert seller.payment_terms_days == 30
    assert seller.due_date(date(2026, 12, 4)) == date(2027, 1, 3)


def test_seller_from_yaml(tmp_path):
    (tmp_path / "seller.yaml").write_text(
        'name: Zürich AI AG\naddress: "Bahnhofstrasse 1\\n8001 Zürich"\nemail: ar@zai.example\n'
        "tax_id: CHE-123.456.789 MWST\npayment_terms_days: 14\n", encoding="utf-8")
    seller = load_seller(tmp_path)
    assert seller == Seller("Zürich AI AG", "Bahnhofstrasse 1\n8001 Zürich", "ar@zai.example",
                            "CHE-123.456.789 MWST", 14)
    assert seller.as_dict()["payment_terms_days"] == 14


@pytest.mark.parametrize(
    "text, message",
    [
        ("payment_terms_days: -1\n", "payment_terms_days"),
        ("payment_terms_days: 30.5\n", "payment_terms_days"),
        ("name: ''\n", "field `name`: must not be empty"),
        ("name: [a]\n", "field `name`: must be text, got a list (line 1)"),
        ("iban: X\n", "field `iban`: unknown field"),
        ("- a\n", "must be a mapping"),
        ("name: [\n", "not valid YAML"),
    ],
)
def test_bad_seller_yaml_is_refused(tmp_path, text, message):
    (tmp_path / "seller.yaml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_seller(tmp_path)
