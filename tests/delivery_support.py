"""Helpers of the delivery tests: a real SMTP server (aiosmtpd) and a real HTTP receiver on
loopback, each in a thread, and a delivering process that is killed right after it sent."""

from __future__ import annotations

import email
import json
import os
import signal
import socket
import threading
from contextlib import contextmanager
from datetime import datetime
from email import policy
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

SMTP_USER, SMTP_PASSWORD = "billing", "s3cret pass"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Inbox:
    """What the SMTP server accepted: (envelope recipients, parsed message), in order."""

    def __init__(self):
        self.messages: list[tuple[list[str], email.message.EmailMessage]] = []

    async def handle_DATA(self, server, session, envelope):
        parsed = email.message_from_bytes(envelope.original_content, policy=policy.default)
        self.messages.append((list(envelope.rcpt_tos), parsed))
        return "250 OK"

    def to(self, recipient: str) -> list[email.message.EmailMessage]:
        return [m for rcpts, m in self.messages if recipient in rcpts]


def _login(server, session, envelope, mechanism, auth_data) -> AuthResult:
    return AuthResult(success=(auth_data.login, auth_data.password) == (SMTP_USER.encode(), SMTP_PASSWORD.encode()))


@contextmanager
def smtp_server(tls_context=None):
    """A loopback SMTP server that requires login (and STARTTLS, given a server TLS context);
    yields (inbox, port)."""
    inbox, port = Inbox(), free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port, authenticator=_login, auth_required=True,
                            auth_require_tls=tls_context is not None, tls_context=tls_context,
                            require_starttls=tls_context is not None)
    controller.start()
    try:
        yield inbox, port
    finally:
        controller.stop()


class Receiver:
    """A loopback HTTP endpoint that records each POST (headers, body) and answers the statuses
    it is told, in order, then 200."""

    def __init__(self):
        self.requests: list[tuple[dict[str, str], str]] = []
        self.statuses: list[int] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                receiver.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(receiver.statuses.pop(0) if receiver.statuses else 200)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks/billing"

    def events(self) -> list[str]:
        return [json.loads(body)["type"] for _, body in self.requests]

    def __enter__(self) -> Receiver:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


def deliver_then_die(database_url: str, smtp_url: str, store_root: str, now: str) -> None:
    """Process body: deliver the outbox, and be killed (SIGKILL) as soon as the first message
    is sent, before the process can record it."""
    from billing_pipelines.delivery.mail import SmtpMailer
    from billing_pipelines.delivery.outbox import deliver_outbox
    from billing_pipelines.storage import billing_db
    from billing_pipelines.storage.objects import Store

    class KilledAfterSending:
        def send(self, message):
            SmtpMailer(smtp_url).send(message)
            os.kill(os.getpid(), signal.SIGKILL)

    deliver_outbox(billing_db.engine_from_url(database_url), KilledAfterSending(), Store(store_root),
                   datetime.fromisoformat(now))
