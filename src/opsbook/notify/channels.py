"""One delivery attempt per channel. Each raises DeliveryFailed with a short reason.

Hand-written on purpose (smtplib from the standard library and httpx, already a dependency):
apprise was considered, but its JSON webhook builds its own envelope, so the exact bytes cannot
be signed with HMAC, and it reports only success or failure per call, not why.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

SIGNATURE_HEADER = "X-Opsbook-Signature"
TIMESTAMP_HEADER = "X-Opsbook-Timestamp"


class DeliveryFailed(Exception):
    """A channel did not accept the message (not an OpsbookError: it is recorded, not shown)."""


@dataclass(frozen=True)
class Message:
    subject: str
    text: str
    event: str  # incident.page | notify.test | incident.update
    incident: dict[str, Any] | None = None
    ack_url: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "text": self.text,
            "event": self.event,
            "incident": self.incident,
            "ack_url": self.ack_url,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Message:
        return cls(
            subject=str(d["subject"]),
            text=str(d["text"]),
            event=str(d["event"]),
            incident=d.get("incident"),
            ack_url=d.get("ack_url"),
        )

    def full_text(self) -> str:
        tail = f"\n\nAcknowledge: {self.ack_url}" if self.ack_url else ""
        return self.text + tail


def signature(key: bytes, timestamp: str, body: bytes) -> str:
    """``sha256=`` + hex HMAC-SHA256 of ``timestamp + "." + body``: what receivers recompute."""
    mac = hmac.new(key, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={mac}"


def _send_mail_sync(
    *, host: str, port: int, sender: str, to: str, msg: Message, timeout: float, starttls: bool
) -> None:
    import smtplib  # noqa: PLC0415
    from email.message import EmailMessage  # noqa: PLC0415

    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = msg.subject
    mail.set_content(msg.full_text())
    try:
        with smtplib.SMTP(host, port, timeout=timeout) as smtp:
            if starttls:
                smtp.starttls()
            smtp.send_message(mail)
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailed(f"smtp {host}:{port}: {exc}".strip()) from exc


async def send_email(
    *, host: str, port: int, sender: str, to: str, msg: Message, timeout: float, starttls: bool
) -> None:
    await asyncio.to_thread(
        _send_mail_sync,
        host=host,
        port=port,
        sender=sender,
        to=to,
        msg=msg,
        timeout=timeout,
        starttls=starttls,
    )


async def _post(
    client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], timeout: float
) -> None:
    import httpx  # noqa: PLC0415

    try:
        resp = await client.post(url, content=body, headers=headers, timeout=timeout)
    except httpx.TimeoutException as exc:
        raise DeliveryFailed(f"timed out after {timeout:g}s") from exc
    except httpx.HTTPError as exc:
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
    if resp.status_code >= 300:
        raise DeliveryFailed(f"HTTP {resp.status_code}")


async def post_webhook(
    *, client: httpx.AsyncClient, url: str, msg: Message, key: bytes, timeout: float
) -> None:
    """Generic JSON webhook, signed: receivers check ``X-Opsbook-Signature``."""
    body = json.dumps(msg.to_dict(), sort_keys=True, separators=(",", ":")).encode()
    ts = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        TIMESTAMP_HEADER: ts,
        SIGNATURE_HEADER: signature(key, ts, body),
    }
    await _post(client, url, body, headers, timeout)


async def post_chat(*, client: httpx.AsyncClient, url: str, msg: Message, timeout: float) -> None:
    """Slack and Microsoft Teams incoming webhooks both accept ``{"text": …}``."""
    text = f"*{msg.subject}*\n{msg.full_text()}"
    body = json.dumps({"text": text}).encode()
    await _post(client, url, body, {"Content-Type": "application/json"}, timeout)


async def send_sms(
    *, client: httpx.AsyncClient, url: str, to: str, msg: Message, timeout: float
) -> None:
    """SMS provider adapter: ``{"to": …, "text": …}`` POSTed to the provider's HTTP API."""
    text = msg.subject + (f" {msg.ack_url}" if msg.ack_url else "")
    body = json.dumps({"to": to, "text": text[:600]}).encode()
    await _post(client, url, body, {"Content-Type": "application/json"}, timeout)
