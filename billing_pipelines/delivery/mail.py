"""Sending e-mail: over SMTP where BILLING_SMTP_URL says so, else as .eml files in
BILLING_HOME/outbox (the embedded default, nothing leaves the machine).

    smtp://host:25                                   plain SMTP
    smtp://user:pass@host:587?starttls=true          STARTTLS, then login
    smtps://user:pass@host:465                       TLS from the start, then login

Login happens where the URL has a user; user and password are percent-decoded. TLS verifies the
server against the system's CAs (SSL_CERT_FILE to add one).
"""

from __future__ import annotations

import os
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol
from urllib.parse import parse_qs, unquote, urlsplit

SMTP_TIMEOUT_SECONDS = 30


class Mailer(Protocol):
    def send(self, message: EmailMessage) -> None: ...


@dataclass(frozen=True)
class SmtpMailer:
    """One SMTP connection per message, as `url` says."""

    url: str

    def __post_init__(self):
        parts = urlsplit(self.url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError(f"BILLING_SMTP_URL must be smtp://[user:pass@]host[:port][?starttls=true] or smtps://..., "
                             f"got {parts.scheme}://{parts.hostname or ''}")

    def send(self, message: EmailMessage) -> None:
        parts = urlsplit(self.url)
        starttls = parse_qs(parts.query).get("starttls", ["false"])[0].lower() in ("true", "1", "yes")
        tls = ssl.create_default_context()
        if parts.scheme == "smtps":
            client = smtplib.SMTP_SSL(parts.hostname, parts.port or 465, timeout=SMTP_TIMEOUT_SECONDS, context=tls)
        else:
            client = smtplib.SMTP(parts.hostname, parts.port or 25, timeout=SMTP_TIMEOUT_SECONDS)
        with client:
            if starttls:
                client.starttls(context=tls)
            if parts.username:
                client.login(unquote(parts.username), unquote(parts.password or ""))
            client.send_message(message)


@dataclass(frozen=True)
class EmlMailer:
    """Writes each message to `folder/<Message-ID>.eml` (a resend writes the same file again)."""

    folder: Path

    def send(self, message: EmailMessage) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^\w.@-]", "_", message["Message-ID"].strip("<>"))
        partial = self.folder / f".{name}.eml.partial"
        partial.write_bytes(message.as_bytes())
        os.replace(partial, self.folder / f"{name}.eml")


def mailer_for(smtp_url: str, home: str) -> Mailer:
    """The SMTP mailer of `smtp_url`, or .eml files under `home`/outbox where it is empty."""
    return SmtpMailer(smtp_url) if smtp_url else EmlMailer(Path(home) / "outbox")
