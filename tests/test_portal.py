"""The customer portal (issue 18) on real components: a landing zone ingested, months closed and
finalized (real invoices, real PDFs), events of right now counted by the micro-batch; `billing
serve`'s app through the test client and, in headless Chromium, on a real uvicorn on loopback."""

from __future__ import annotations

import io
import re
from datetime import UTC, date, datetime
from urllib.parse import parse_qs, urlparse

import pytest
from pypdf import PdfReader
from sqlmodel import Session, select
from starlette.testclient import TestClient

from billing_pipelines import cli
from billing_pipelines.balances.live import process_landed_file
from billing_pipelines.balances.state import balances_engine
from billing_pipelines.ingest.landing import landing_dates
from billing_pipelines.ingest.pipeline import ingest
from billing_pipelines.invoicing.finalize import finalize_month
from billing_pipelines.month_close.documents import margins_by_org
from billing_pipelines.month_close.run import close_months
from billing_pipelines.portal.links import SESSION_COOKIE, org_of_link, portal_secret, portal_url, sign_link
from billing_pipelines.resources import BillingSettings
from billing_pipelines.serve.app import create_app
from billing_pipelines.serve.server import server_config
from billing_pipelines.serve.tokens import create_token
from billing_pipelines.storage import billing_db
from tests.balances_support import browser, land, now_event, postgres_database, running  # noqa: F401  (browser: a fixture)
from tests.common import CONFORMANCE, Landing, config_with_seller, event

OCTOBER = date(2026, 10, 1)


USED_ON = {"2026-10-03": 4, "2026-10-17": 2, "2026-10-28": 3, "2026-11-04": 2}  # events per org and landing date


@pytest.fixture(scope="module")
def portal(tmp_path_factory):
    """Settings of a billing home where September and October 2026 are closed and October is
    finalized (real invoices and PDFs), November is open, and events of right now are counted
    by the micro-batch."""
    root = tmp_path_factory.mktemp("portal")
    landing = Landing(root / "landing")
    for day, count in USED_ON.items():
        landing.jsonl(day, "gw.jsonl", [
            event(f"{org}-{day}-{n}", org=org, ts=f"{day}T0{n}:30:00Z", model=model, action=action)
            for org, model, action in (("acme", "frontier-large", "complex"), ("globex", "small-fast", "simple"))
            for n in range(count)])
    settings = BillingSettings.from_env({
        "BILLING_HOME": str(root / "home"), "BILLING_LANDING": str(landing.root), "BILLING_GRACE_DAYS": "3",
        "BILLING_CONFIG": str(config_with_seller(CONFORMANCE / "config", root / "config"))})
    ingest(settings, sorted(landing_dates(settings.landing_store())))
    close_months(settings, OCTOBER)
    finalize_month(settings, OCTOBER, margins_by_org(settings.warehouse(), OCTOBER), date(2026, 11, 5), workers=1)
    process_landed_file(settings, land(settings, "now.jsonl", [
        now_event("now-1", action="complex"), now_event("now-2"),
        now_event("now-3", org="globex", model="frontier-large")]))
    return settings


@pytest.fixture(scope="module")
def engine(portal):
    return balances_engine(portal.database_url)


@pytest.fixture
def client(portal, engine):
    with TestClient(create_app(engine, settings=portal)) as client:
        yield client


def signed_in(client, engine, org_id: str, **link) -> TestClient:
    response = client.get("/portal/open", params={"link": sign_link(portal_secret(engine), org_id, **link)},
                          follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    return client


def documents(engine, org_id: str) -> list[dict]:
    """The org's documents as the billing database lists them (globex's September is a draft:
    closed, not finalized)."""
    return [i for month in ("2026-09", "2026-10") for i in billing_db.list_invoices(engine, month)
            if i["org_id"] == org_id]


def test_a_link_starts_an_httponly_samesite_session(client, engine):
    link = sign_link(portal_secret(engine), "acme")
    response = client.get("/portal/open", params={"link": link}, follow_redirects=False)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(SESSION_COOKIE) and "httponly" in cookie and "samesite=lax" in cookie
    assert "max-age=28800" in cookie
    balance = client.get("/v1/balance").json()
    assert balance["org_id"] == "acme" and balance["consumed_credits"] == 6
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", balance["as_of"])
    assert balance["as_of"] >= balance["newest_event_at"]  # the file landed after its events happened
    client.post("/session/end")
    assert client.get("/v1/balance").status_code == 401


def test_an_expired_or_altered_link_is_refused(client, engine):
    secret = portal_secret(engine)
    expired = sign_link(secret, "acme", minutes=5, now=datetime.now(UTC).timestamp() - 301)
    altered = sign_link(secret, "acme")
    altered = altered[:-1] + ("A" if altered[-1] != "A" else "B")
    forged = sign_link("not the server's secret", "acme")
    refusals = ((expired, "has expired"), (altered, "is not valid"), (forged, "is not valid"), ("", "is not valid"))
    for link, why in refusals:
        response = client.get("/portal/open", params={"link": link}, follow_redirects=False)
        assert response.status_code == 403 and why in response.text
        assert "set-cookie" not in response.headers
        assert client.get("/v1/balance").status_code == 401


def test_the_json_api_answers_for_the_session_org_only(client, engine, portal):
    signed_in(client, engine, "acme")
    listed = client.get("/v1/invoices").json()
    assert listed["org_id"] == "acme"
    assert [(d["number"], d["month"], d["status"], d["total"]) for d in listed["invoices"]] == sorted(
        ((i["number"], i["month"], i["status"], i["total"]) for i in documents(engine, "acme")),
        key=lambda t: t[1], reverse=True)
    first = listed["invoices"][0]
    pdf = client.get(first["pdf"])
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert f'filename="{first["number"]}.pdf"' in pdf.headers["content-disposition"]
    assert first["total"] in PdfReader(io.BytesIO(pdf.content)).pages[0].extract_text().replace(",", "")

    theirs = [row for row in _rows(engine) if row.org_id == "globex"]
    assert theirs and all(client.get(f"/v1/invoices/{row.id}/pdf").status_code == 404 for row in theirs)
    assert client.get("/v1/invoices/999999/pdf").status_code == 404

    october = client.get("/v1/usage", params={"month": "2026-10"}).json()
    margin = margins_by_org(portal.warehouse(), OCTOBER)["acme"]
    assert october["source"] == "month close" and october["org_id"] == "acme"
    assert {r["model"]: r["credits"] for r in october["by_model"]} == {r.model: r.credits for r in margin.by_model}
    assert {r["action"]: r["credits"] for r in october["by_tier"]} == {r.action: r.credits for r in margin.by_action}
    assert [(d["date"], d["model"], d["action"], d["requests"]) for d in october["days"]] == [
        (day, "frontier-large", "complex", n) for day, n in USED_ON.items() if day.startswith("2026-10")]
    november = client.get("/v1/usage", params={"month": "2026-11"}).json()  # open: the live balance's
    assert november["source"] == "live"
    assert [(d["date"], d["requests"]) for d in november["days"]] == [("2026-11-04", 2)]
    now = client.get("/v1/usage").json()
    assert now["source"] == "live" and now["total_credits"] == 6 and now["months"][0] == now["month"]
    assert now["months"][-1] == "2026-10"  # acme started in October
    assert client.get("/v1/usage", params={"month": "October"}).status_code == 400


def test_api_tokens_keep_working_and_a_bad_one_is_refused_even_with_a_session(client, engine):
    _, globex = create_token(engine, "globex")
    signed_in(client, engine, "acme")
    as_globex = {"Authorization": f"Bearer {globex}"}
    assert client.get("/v1/balance", headers=as_globex).json()["org_id"] == "globex"
    assert {d["number"] for d in client.get("/v1/invoices", headers=as_globex).json()["invoices"]} == {
        i["number"] for i in documents(engine, "globex")}
    assert [(r["model"], r["requests"]) for r in client.get("/v1/usage", headers=as_globex).json()["by_model"]] == [
        ("frontier-large", 1)]
    assert client.get("/v1/invoices", headers={"Authorization": "Bearer bpk_wrong"}).status_code == 401


def test_billing_portal_link_prints_a_link_for_a_customer(portal, monkeypatch, capsys):
    for name, value in {"BILLING_HOME": portal.home, "BILLING_CONFIG": portal.config_dir,
                        "BILLING_LANDING": portal.landing}.items():
        monkeypatch.setenv(name, value)
    cli.main(["portal-link", "acme", "--minutes", "5", "--base-url", "https://billing.example/"])
    link = capsys.readouterr().out.strip()
    assert link.startswith("https://billing.example/portal/open?link=")
    assert link == portal_url("https://billing.example", parse_qs(urlparse(link).query)["link"][0])
    with pytest.raises(SystemExit, match="'nobody' is not a customer"):
        cli.main(["portal-link", "nobody"])


@pytest.fixture
def served(portal, engine):
    with running(server_config(create_app(engine, settings=portal), "127.0.0.1", 0, log_level="warning")) as port:
        yield f"http://127.0.0.1:{port}"


def test_the_portal_in_chromium(browser, served, engine, tmp_path):
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 1500})
    page = context.new_page()
    page.goto(portal_url(served, sign_link(portal_secret(engine), "acme")))
    assert page.url == served + "/"
    page.wait_for_function("document.getElementById('consumed').textContent === '6'", timeout=15_000)
    assert page.is_hidden("#login") and page.is_visible("#balance")
    assert page.text_content("#org") == "acme · pro plan"
    grants = page.text_content("#grants tbody")
    assert "Credit pack p-1001" in grants and "acme" not in grants and not re.search(r"\d{4}-\d\d-\d\dT", grants)
    assert re.search(r"Balance as of \w+ \d+, \d{4}", page.text_content("main"))  # a local date, not ISO
    page.wait_for_selector("#usage-chart svg rect.bar")
    assert page.locator("#by-tier tbody tr").count() == 2
    page.wait_for_selector("#invoices tbody tr")
    numbers = [i["number"] for i in documents(engine, "acme")]
    assert sorted(page.locator("#invoices tbody tr td:first-child").all_text_contents()) == sorted(numbers)

    page.select_option("#usage-month", "2026-10")
    page.wait_for_function("document.getElementById('usage-summary').textContent.includes('October 2026')")
    assert page.locator("#usage-chart svg rect.bar").count() == 3
    page.screenshot(path=str(tmp_path / "portal.png"), full_page=True)

    october = next(i for i in documents(engine, "acme") if i["month"] == "2026-10")
    with page.expect_download() as download:
        page.locator("#invoices tbody tr", has_text=october["number"]).locator("a").click()
    path = download.value.path()
    assert download.value.suggested_filename == f"{october['number']}.pdf"
    assert f"Total USD {october['total']}" in PdfReader(path).pages[0].extract_text().replace(",", "")

    theirs = [row for row in _rows(engine) if row.org_id == "globex"]
    for row in theirs:  # org B's PDF, from org A's session
        assert context.request.get(f"{served}/v1/invoices/{row.id}/pdf").status == 404
    assert "globex" not in context.request.get(f"{served}/v1/invoices").text()
    assert "frontier-large" not in context.request.get(f"{served}/v1/usage").text()  # globex's model, not acme's

    refused = browser.new_page()
    expired = sign_link(portal_secret(engine), "acme", minutes=1, now=datetime.now(UTC).timestamp() - 61)
    assert refused.goto(portal_url(served, expired)).status == 403
    assert "has expired" in refused.text_content("#refused")
    context.close()


def _rows(engine):
    with Session(engine) as session:
        return list(session.exec(select(billing_db.InvoiceRow)))


@pytest.mark.postgres
def test_one_secret_is_kept_in_postgresql_for_every_server():
    with postgres_database() as url:
        engine = balances_engine(url)
        secret = portal_secret(engine)
        assert len(secret) >= 40 and portal_secret(engine) == secret
        link = sign_link(secret, "acme")
        assert org_of_link(portal_secret(balances_engine(url)), link) == "acme"
