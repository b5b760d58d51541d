"""Delivery against real servers on loopback: invoices e-mailed once by the finalize job (aiosmtpd
with login, and STARTTLS), a delivering process killed after sending, .eml files without SMTP,
webhooks signed per Standard Webhooks and retried (a ThreadingHTTPServer), alerts fired by the
live micro-batch once at 80 % and once at 100 %, and finance's alert of a close."""

from __future__ import annotations

import base64
import hashlib
import hmac
import multiprocessing
import re
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from email import message_from_bytes, policy
from pathlib import Path

import dagster as dg
import httpx
import pytest
import trustme
import yaml
from sqlalchemy import select

from billing_pipelines.balances.balances import Balance, GrantBalance
from billing_pipelines.balances.live import process_landed_file
from billing_pipelines.config import ConfigError, load_config
from billing_pipelines.definitions import defs
from billing_pipelines.delivery import queue
from billing_pipelines.delivery.alerts import queue_margin_alert, raised_alerts, update_states
from billing_pipelines.delivery.assets import delivery_sensor
from billing_pipelines.delivery.mail import EmlMailer, SmtpMailer, mailer_for
from billing_pipelines.delivery.outbox import OUTBOX, add_messages, deliver_outbox, outbox_row
from billing_pipelines.delivery.service import delivery_engine
from billing_pipelines.delivery.webhooks import ATTEMPTS, DELIVERIES, deliver_webhooks, queue_webhook, webhook_secret
from billing_pipelines.ingest.landing import landing_dates
from billing_pipelines.ingest.pipeline import ingest
from billing_pipelines.invoicing.seller import Seller, final_seller
from billing_pipelines.margin.report import stored_margin
from billing_pipelines.month_close.run import close_months
from billing_pipelines.resources import BillingSettings
from billing_pipelines.storage import billing_db
from tests.common import Landing, event
from tests.db_support import DATABASE_KINDS, fresh_database
from tests.delivery_support import SMTP_PASSWORD, SMTP_USER, Receiver, deliver_then_die, free_port, smtp_server
from tests.finalize_support import copy_config, pdf_text

OCTOBER = date(2026, 10, 1)
NOW = datetime(2026, 11, 5, 9, 0, tzinfo=UTC)
START, END = datetime(2026, 11, 1), datetime(2026, 11, 5, 9, 0)  # grants' times are naive UTC, as the ledger's


def smtp_url(port: int, query: str = "") -> str:
    return f"smtp://{SMTP_USER}:{SMTP_PASSWORD.replace(' ', '%20')}@127.0.0.1:{port}{query}"


def finalize_october(settings: BillingSettings) -> dg.ExecuteInProcessResult:
    """`billing finalize 2026-10` as the CLI runs it: the finalize_invoices job."""
    return defs.resolve_job_def("finalize_invoices").execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), resources={"billing": settings},
        run_config={"ops": {"finalize_month_invoices": {"config": {"month": "2026-10", "issue_date": "2026-11-05"}}}})


@pytest.fixture(scope="module")
def october(tmp_path_factory):
    """October of acme and globex closed, then finalized through Dagster with a real SMTP server."""
    root = tmp_path_factory.mktemp("october")
    landing = Landing(root / "landing")
    landing.jsonl("2026-10-02", "events.jsonl",
                  [event(f"a{i}", "acme", "2026-10-02T09:00:00Z", action="complex") for i in range(10)]
                  + [event(f"g{i}", "globex", "2026-10-02T10:00:00Z") for i in range(5)])
    with smtp_server() as (inbox, port):
        settings = BillingSettings.from_env({
            "BILLING_HOME": str(root / "home"), "BILLING_CONFIG": str(copy_config(root / "config")),
            "BILLING_LANDING": str(landing.root), "BILLING_SMTP_URL": smtp_url(port)})
        ingest(settings, sorted(landing_dates(settings.landing_store())))
        close_months(settings, OCTOBER)
        yield settings, inbox, landing, finalize_october(settings)


def mail_domain(settings: BillingSettings) -> str:
    """The domain of the invoices' Message-IDs: the seller's e-mail's."""
    return final_seller(settings.config_dir).email.split("@")[1]


def final_rows(settings: BillingSettings) -> list[billing_db.InvoiceRow]:
    with billing_db.Session(billing_db.engine_from_url(settings.database_url)) as session:
        final = select(billing_db.InvoiceRow).where(billing_db.InvoiceRow.status == "final")
        return list(session.exec(final).scalars())


def materialization(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [event_] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event_.materialization.metadata.items()}


def test_finalizing_sends_one_message_per_invoice_with_its_pdf(october):
    settings, inbox, _, result = october
    invoices = [r for r in final_rows(settings) if r.kind == "invoice"]
    assert sorted(r.org_id for r in invoices) == ["acme", "globex"]
    domain = mail_domain(settings)
    for row, address in zip(sorted(invoices, key=lambda r: r.org_id), ["billing@acme.example", "ap@globex.example"]):
        [message] = [m for m in inbox.to(address) if m["Message-ID"] == f"<{row.number}.{row.org_id}@{domain}>"]
        [pdf] = [part for part in message.iter_attachments() if part.get_content_type() == "application/pdf"]
        content = pdf.get_content()
        assert pdf.get_filename() == f"{row.number}.pdf"
        assert hashlib.sha256(content).hexdigest() == row.pdf_sha256
        total = f"{Decimal(row.total):,.2f}"
        assert row.number in pdf_text(content) and total in pdf_text(content)
        assert row.number in message["Subject"] and total in message.get_body(("plain",)).get_content()
    assert len(inbox.messages) == 2
    shown = materialization(result, "invoice_delivery")
    counts = (shown["documents_queued"], shown["email_sent_now"], shown["email_sent"], shown["email_failed"])
    assert counts == (2, 2, 2, 0)
    assert shown["failing"] == {}


def test_finalizing_again_sends_no_second_copy(october):
    settings, inbox, _, _ = october
    before = [m["Message-ID"] for _, m in inbox.messages]
    shown = materialization(finalize_october(settings), "invoice_delivery")
    assert shown["documents_queued"] == 0 and shown["email_sent_now"] == 0
    assert [m["Message-ID"] for _, m in inbox.messages] == before


def test_a_delivery_killed_after_sending_sends_no_copy_under_a_new_message_id(october):
    """Late usage re-closes October: acme's adjustment is queued; the delivering process is killed
    (SIGKILL) right after the SMTP server accepted it. A run within the lease sends nothing; once
    the outcome is taken as unknown it is sent again under the same Message-ID."""
    settings, inbox, landing, _ = october
    domain = mail_domain(settings)
    landing.jsonl("2026-10-03", "late.jsonl", [event(f"late{i}", "acme", "2026-10-03T08:00:00Z", action="complex")
                                                for i in range(2000)])
    ingest(settings, sorted(landing_dates(settings.landing_store())))
    close_months(settings, OCTOBER)
    [adjustment] = [r for r in final_rows(settings) if r.kind != "invoice"]
    wanted = f"<{adjustment.number}.acme@{domain}>"
    engine = billing_db.engine_from_url(settings.database_url)
    now = datetime.now(UTC)
    process = multiprocessing.get_context("spawn").Process(target=deliver_then_die, args=(
        settings.database_url, settings.smtp_url, settings.warehouse().store.root, now.isoformat()))
    process.start()
    process.join(120)
    assert process.exitcode == -9
    assert [m["Message-ID"] for m in inbox.to("billing@acme.example")][-1] == wanted
    assert queue.counts(engine, OUTBOX)["sending"] == 1
    mailer = SmtpMailer(settings.smtp_url)
    later = now + timedelta(minutes=1)
    assert deliver_outbox(engine, mailer, settings.warehouse().store, later) == {"sent": 0, "failed": 0}
    assert deliver_outbox(engine, mailer, settings.warehouse().store, now + queue.LEASE) == {"sent": 1, "failed": 0}
    to_acme = [m["Message-ID"] for m in inbox.to("billing@acme.example")]
    invoice = next(r for r in final_rows(settings) if r.org_id == "acme" and r.kind == "invoice")
    assert to_acme == [f"<{invoice.number}.acme@{domain}>", wanted, wanted]
    assert queue.counts(engine, OUTBOX) == {"pending": 0, "sending": 0, "sent": 3, "failed": 0}


def test_a_refused_message_is_retried_after_its_backoff_and_starttls_login(tmp_path, monkeypatch):
    """Against a server that requires STARTTLS and login: without them the message fails and waits
    its backoff; with them (a test CA trusted through SSL_CERT_FILE) it is delivered."""
    ca = trustme.CA()
    server_tls = __import__("ssl").create_default_context(__import__("ssl").Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_tls)
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "ca.pem"))
    engine = billing_db.engine_from_url(f"sqlite:///{tmp_path}/billing.db")
    seller = Seller()
    with engine.begin() as conn:
        add_messages(conn, [outbox_row("<hello.acme@example.com>", "alert", "acme", "billing@acme.example",
                                       "Hello", "Hello.\n", NOW, seller)])
    with smtp_server(server_tls) as (inbox, port):
        plain = SmtpMailer(f"smtp://127.0.0.1:{port}")
        assert deliver_outbox(engine, plain, None, NOW) == {"sent": 0, "failed": 1}
        with engine.connect() as conn:
            row = conn.execute(select(OUTBOX)).mappings().one()
        assert row["status"] == "failed" and row["next_attempt_at"] == NOW + queue.BACKOFF_FIRST
        assert "STARTTLS" in row["last_error"] or "530" in row["last_error"]
        secure = SmtpMailer(smtp_url(port, "?starttls=true"))
        assert deliver_outbox(engine, secure, None, NOW + timedelta(seconds=10)) == {"sent": 0, "failed": 0}
        assert deliver_outbox(engine, secure, None, NOW + queue.BACKOFF_FIRST) == {"sent": 1, "failed": 0}
    [(rcpts, message)] = inbox.messages
    assert rcpts == ["billing@acme.example"] and message["Message-ID"] == "<hello.acme@example.com>"
    assert message["From"] == "Example AI Ltd <billing@example.com>"


def test_a_bad_smtp_url_is_refused_with_what_it_must_be():
    for url in ("http://mail.example:25", "smtp://"):
        with pytest.raises(ValueError, match="BILLING_SMTP_URL must be smtp://"):
            SmtpMailer(url)


def test_the_delivery_sensor_runs_deliver_messages_while_something_is_due(tmp_path):
    """Nothing due: no run. A due message: a run request, the same while it stays due. A run whose
    SMTP server is down shows the failure (counts, a failing check); the message waits its backoff."""
    env = {"BILLING_HOME": str(tmp_path / "home"), "BILLING_CONFIG": str(tmp_path),
           "BILLING_SMTP_URL": f"smtp://127.0.0.1:{free_port()}"}
    settings = BillingSettings.from_env(env)
    with dg.build_sensor_context(resources={"billing": settings}) as context:
        assert isinstance(delivery_sensor(context), dg.SkipReason)
        queued_at = datetime.now(UTC) - timedelta(seconds=1)
        with delivery_engine(settings).begin() as conn:
            add_messages(conn, [outbox_row("<due.acme@example.com>", "alert", "acme", "billing@acme.example", "Due",
                                           "Due.\n", queued_at, Seller())])
        request = delivery_sensor(context)
        assert isinstance(request, dg.RunRequest) and delivery_sensor(context).run_key == request.run_key
        result = defs.resolve_job_def("deliver_messages").execute_in_process(
            instance=dg.DagsterInstance.ephemeral(), resources={"billing": settings})
        shown, [check] = materialization(result, "message_delivery"), result.get_asset_check_evaluations()
        assert (shown["email_failed_now"], shown["email_failed"], check.passed) == (1, 1, False)
        assert check.severity == dg.AssetCheckSeverity.WARN
        assert isinstance(delivery_sensor(context), dg.SkipReason)  # until its backoff is over


def test_without_smtp_messages_are_eml_files_in_the_outbox_folder(tmp_path):
    engine = billing_db.engine_from_url(f"sqlite:///{tmp_path}/billing.db")
    mailer = mailer_for("", str(tmp_path / "home"))
    assert mailer == EmlMailer(tmp_path / "home" / "outbox")
    with engine.begin() as conn:
        add_messages(conn, [outbox_row("<low.initech@example.com>", "alert", "initech", "peter@initech.example",
                                       "Credits low", "80 % used.\n", NOW, Seller())])
    assert deliver_outbox(engine, mailer, None, NOW) == {"sent": 1, "failed": 0}
    mailer.send(message_from_bytes((tmp_path / "home/outbox/low.initech@example.com.eml").read_bytes(),
                                   policy=policy.default))  # a resend writes the same file
    [eml] = (tmp_path / "home" / "outbox").iterdir()
    parsed = message_from_bytes(eml.read_bytes(), policy=policy.default)
    assert (parsed["To"], parsed["Subject"], parsed.get_content()) == (
        "peter@initech.example", "Credits low", "80 % used.\n")


@pytest.fixture(params=DATABASE_KINDS)
def engine(request, tmp_path):
    """A fresh billing database, SQLite or PostgreSQL, with every table."""
    with fresh_database(request.param, tmp_path) as url:
        engine = billing_db.engine_from_url(url)
        yield engine
        engine.dispose()


def verify_standard_webhook(secret: str, headers: dict[str, str], body: str) -> bool:
    """The receiver's check, written from the specification: HMAC-SHA256 keyed by the base64
    secret after `whsec_`, over `id.timestamp.body`, compared with each `v1,` signature."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.{body}".encode()
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    return any(hmac.compare_digest(sig.partition(",")[2], expected)
               for sig in headers["webhook-signature"].split() if sig.startswith("v1,"))


def test_a_webhook_is_signed_with_the_customers_secret_and_retried_after_a_500(engine):
    with Receiver() as receiver, httpx.Client() as client:
        receiver.statuses = [500]
        with engine.begin() as conn:
            assert queue_webhook(conn, "acme", receiver.url, "alert_acme_x_1", "alert.x", {"credits_left": 3}, NOW)
            assert not queue_webhook(conn, "acme", receiver.url, "alert_acme_x_1", "alert.x", {"credits_left": 3}, NOW)
        assert deliver_webhooks(engine, client, NOW) == {"sent": 0, "failed": 1}
        assert deliver_webhooks(engine, client, NOW + timedelta(seconds=29)) == {"sent": 0, "failed": 0}
        assert deliver_webhooks(engine, client, NOW + timedelta(seconds=30)) == {"sent": 1, "failed": 0}
    secret = webhook_secret(engine, "acme", NOW)
    assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 24
    assert webhook_secret(engine, "globex", NOW) != secret
    assert [h["webhook-id"] for h, _ in receiver.requests] == ["alert_acme_x_1"] * 2
    sent_at = int(NOW.timestamp())
    assert [h["webhook-timestamp"] for h, _ in receiver.requests] == [str(sent_at), str(sent_at + 30)]
    assert all(verify_standard_webhook(secret, h, body) for h, body in receiver.requests)
    headers, body = receiver.requests[0]
    assert not verify_standard_webhook(webhook_secret(engine, "globex", NOW), headers, body)
    assert not verify_standard_webhook(secret, headers, body.replace("3", "4"))
    with engine.connect() as conn:
        attempts = conn.execute(select(ATTEMPTS.c.status_code, ATTEMPTS.c.error))
        assert [tuple(r) for r in attempts] == [(500, "HTTP 500"), (200, None)]
        assert conn.execute(select(DELIVERIES.c.status, DELIVERIES.c.attempts)).one() == ("sent", 2)


def test_the_webhook_secret_command_prints_the_stored_secret(tmp_path, monkeypatch, capsys, config_dir):
    from billing_pipelines.cli import main

    monkeypatch.setenv("BILLING_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BILLING_CONFIG", str(config_dir))
    main(["webhook-secret", "acme"])
    printed = capsys.readouterr().out.strip()
    engine = billing_db.engine_from_url(f"sqlite:///{tmp_path}/home/billing.db")
    assert printed == webhook_secret(engine, "acme", NOW)
    with pytest.raises(SystemExit, match="not a customer"):
        main(["webhook-secret", "nobody"])


def initech_usage(settings: BillingSettings, name: str, complex_events: int) -> str:
    """A landed file of Initech's (Free plan: 200 credits) complex requests, 5 credits each."""
    rows = [event(f"{name}-{i}", "initech", "2026-11-10T09:00:00Z", action="complex") for i in range(complex_events)]
    Landing(Path(settings.landing)).jsonl("2026-11-10", f"{name}.jsonl", rows)
    return f"dt=2026-11-10/{name}.jsonl"


def test_the_live_micro_batch_fires_an_alert_once_at_80_and_once_at_100_percent(tmp_path, config_dir):
    customers = yaml.safe_load((config_dir / "customers.yaml").read_text())
    with Receiver() as receiver, httpx.Client() as client:
        initech = next(c for c in customers["customers"] if c["org_id"] == "initech")
        initech.update(webhook_url=receiver.url, alerts=["credits_used_80", "credits_used_100"])
        (config_dir / "customers.yaml").write_text(yaml.safe_dump(customers))
        settings = BillingSettings.from_env({"BILLING_HOME": str(tmp_path / "home"), "BILLING_CONFIG": str(config_dir),
                                             "BILLING_LANDING": str(tmp_path / "landing")})
        engine = delivery_engine(settings)
        at = datetime(2026, 11, 10, 12, tzinfo=UTC)
        fired, batches = [], []
        for name, complex_events in (("first", 34), ("second", 4), ("third", 3), ("fourth", 1)):  # 170, 190, 205, 210
            batches.append(process_landed_file(settings, initech_usage(settings, name, complex_events), at=at))
            deliver_webhooks(engine, client, at)
            fired.append(receiver.events())
    assert fired == [["alert.credits_used_80"], ["alert.credits_used_80"],
                     ["alert.credits_used_80", "alert.credits_used_100"],
                     ["alert.credits_used_80", "alert.credits_used_100"]]
    assert [b.alerts_fired for b in batches] == [["alert_initech_credits_used_80_2026-11_1"], [],
                                                 ["alert_initech_credits_used_100_2026-11_1"], []]
    secret = webhook_secret(engine, "initech", at)
    assert all(verify_standard_webhook(secret, h, body) for h, body in receiver.requests)
    with engine.connect() as conn:
        e_mails = conn.execute(select(OUTBOX.c.recipient, OUTBOX.c.subject).where(OUTBOX.c.kind == "alert")).all()
    assert [tuple(m) for m in e_mails] == [("peter@initech.example", "Initech: 80 % of this month's credits used"),
                                           ("peter@initech.example", "Initech: 100 % of this month's credits used")]


def balance(consumed: int, left: int, overage: int = 0, month: str = "2026-11", grants=()) -> Balance:
    return Balance("acme", month, "pro", "USD", list(grants) or [GrantBalance("g", "plan", START, END, 100, left)],
                   consumed, overage, None, [], None)


def test_an_alert_fires_again_only_after_it_was_clear_and_in_each_period(engine):
    alerts = ("credits_used_80", "overage_started")

    def step(b: Balance, at: datetime = NOW) -> list[tuple[str, int]]:
        with engine.begin() as conn:
            return update_states(conn, "acme", b.month, alerts, raised_alerts(b, alerts, at), at)

    assert step(balance(80, 20)) == [("credits_used_80", 1)]
    assert step(balance(90, 10)) == []
    assert step(balance(90, 110)) == []  # a purchase: 45 % used
    assert step(balance(190, 10)) == [("credits_used_80", 2)]
    assert step(balance(230, 0, overage=30)) == [("overage_started", 1)]
    assert step(balance(85, 15, month="2026-12")) == [("credits_used_80", 1)]


def test_credits_expiring_alerts_on_purchased_and_rolled_over_credits_only():
    soon, later = END + timedelta(days=6), END + timedelta(days=8)
    grants = [GrantBalance("plan:acme", "plan", START, soon, 100, 50),
              GrantBalance("p", "purchase", START, later, 10, 10)]
    assert raised_alerts(balance(0, 60, grants=grants), ("credits_expiring_7d",), NOW) == set()
    assert raised_alerts(balance(0, 60, grants=grants), ("credits_expiring_8d",), NOW) == {"credits_expiring_8d"}
    spent = [grants[0], GrantBalance("p", "purchase", START, later, 10, 0)]
    assert raised_alerts(balance(10, 50, grants=spent), ("credits_expiring_8d",), NOW) == set()


def test_finance_hears_once_of_the_customers_below_target_at_a_close(tmp_path):
    engine = billing_db.engine_from_url(f"sqlite:///{tmp_path}/billing.db")
    margin = stored_margin([
        {"org_id": "acme", "month": "2026-10", "revenue": "49.00", "breakage": "0.00", "cogs_usd": "23.3333",
         "gross_margin": "25.67", "margin_pct": "52.38", "credit_to_cost_ratio": "2.10", "below_target": True},
        {"org_id": "globex", "month": "2026-10", "revenue": "0.00", "breakage": "0.00", "cogs_usd": "0.0000",
         "gross_margin": "0.00", "margin_pct": None, "credit_to_cost_ratio": None, "below_target": False}])
    args = (engine, Seller(), "finance@example.com", "2026-10")
    assert queue_margin_alert(*args, margin, "3.0", NOW) == queue_margin_alert(*args, margin, "3.0", NOW)
    assert queue_margin_alert(*args, margin[1:], "3.0", NOW) is None
    assert queue_margin_alert(engine, Seller(), "", "2026-10", margin, "3.0", NOW) is None
    with engine.connect() as conn:
        [row] = conn.execute(select(OUTBOX)).mappings().all()
    assert row["recipient"] == "finance@example.com" and row["kind"] == "finance_alert"
    assert "acme" in row["body"] and "2.10" in row["body"] and "globex" not in row["body"]


@pytest.mark.parametrize(("file", "change", "message"), [
    ("plans.yaml", {"alerts": ["credits_used_120"]}, "plans entry 1 (plan 'free'), alerts entry 1: not an alert"),
    ("customers.yaml", {"webhook_url": "ftp://acme.example/hook"},
     "field `webhook_url`: not an http:// or https:// URL"),
    ("customers.yaml", {"alerts": ["credits_expiring_7"]}, "(org_id 'acme'), alerts entry 1: not an alert"),
    ("customers.yaml", {"webhok_url": "https://acme.example"},
     "`webhok_url`: unknown field (did you mean `webhook_url`?)"),
])
def test_alert_settings_are_validated_like_the_rest_of_the_config(config_dir, file, change, message):
    data = yaml.safe_load((config_dir / file).read_text())
    data[file.removesuffix(".yaml")][0].update(change)
    (config_dir / file).write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(config_dir)


def test_alerts_default_to_the_plans_and_a_customer_overrides_them(config_dir):
    customers = yaml.safe_load((config_dir / "customers.yaml").read_text())
    customers["customers"][0]["alerts"] = ["credits_used_50"]
    (config_dir / "customers.yaml").write_text(yaml.safe_dump(customers))
    config = load_config(config_dir)
    assert config.alerts_of("acme") == ("credits_used_50",)
    assert config.alerts_of("globex") == (
        "credits_used_80", "credits_used_100", "overage_started", "credits_expiring_7d")
