"""``opsbook doctor``'s notification checks: can each configured channel be reached now?

A real connection attempt with a short timeout: the SMTP server of ``incident_policy.yaml``
(connect, EHLO, NOOP) when anyone is paged by email, and a TCP connection to the host of every
chat, webhook and SMS URL in ``contacts.yaml`` / the policy. Nothing is sent. A channel that
cannot be reached is a failed check: a page through it would fail at 3 a.m.
"""

from __future__ import annotations

import smtplib
import socket
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from opsbook.errors import OpsbookError

if TYPE_CHECKING:
    from opsbook.incidents.policy import NotifySettings
    from opsbook.workspace import Workspace

TIMEOUT = 3.0
#: (name, status, detail, hint): a doctor ``Check``'s fields.
Result = tuple[str, Literal["ok", "warning", "failed"], str, str]
HINT = {
    "smtp": "incident_policy.yaml notify.smtp (host, port): is the mail relay up and reachable?",
    "webhook": "the URL in contacts.yaml: is the receiver up and reachable from here?",
    "chat": "the chat URL in contacts.yaml: is the chat service reachable from here (proxy)?",
    "sms": "incident_policy.yaml notify.sms_url: is the SMS gateway reachable?",
}


def channel_checks(workspace: Workspace) -> list[Result]:
    """One check per reachable endpoint (none without a contacts.yaml)."""
    from opsbook.incidents.config import load_config  # noqa: PLC0415

    if not workspace.contacts_path.exists():
        return []
    try:
        config = load_config(workspace)
    except OpsbookError as exc:
        return [("notify", "failed", exc.message, exc.hint or "")]
    notify = config.policy.notify
    targets: dict[tuple[str, str, int], None] = {}
    for level in config.contacts.levels:
        for r in level.recipients:
            for c in r.channels:
                if c.kind == "email":
                    targets[("smtp", notify.smtp_host, notify.smtp_port)] = None
                elif c.kind == "sms":
                    _add_url(targets, "sms", notify.sms_url)
                else:
                    _add_url(targets, c.kind, c.target)
    if not targets:
        return [("notify", "warning", "no contact has a channel", HINT["webhook"])]
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        return list(pool.map(lambda t: _check(t, notify), targets))


def _add_url(targets: dict[tuple[str, str, int], None], kind: str, url: str) -> None:
    parts = urlsplit(url)
    if parts.hostname:
        default = 443 if parts.scheme == "https" else 80
        targets[(kind, parts.hostname, parts.port or default)] = None


def _check(target: tuple[str, str, int], notify: NotifySettings) -> Result:
    kind, host, port = target
    name = "notify smtp" if kind == "smtp" else f"notify {kind} {host}:{port}"
    try:
        if kind == "smtp":
            detail = _smtp(host, port, starttls=notify.smtp_starttls)
        else:
            with socket.create_connection((host, port), timeout=TIMEOUT):
                detail = f"{host}:{port} accepts connections"
    except (OSError, smtplib.SMTPException) as exc:
        reason = str(exc) or type(exc).__name__
        where = f"smtp {host}:{port}" if kind == "smtp" else f"{host}:{port}"
        return (name, "failed", f"{where}: {reason}", HINT[kind])
    return (name, "ok", detail, "")


def _smtp(host: str, port: int, *, starttls: bool) -> str:
    with smtplib.SMTP(host, port, timeout=TIMEOUT) as smtp:
        code, _ = smtp.ehlo()
        if code != 250:
            raise smtplib.SMTPException(f"EHLO answered {code}")
        if starttls and not smtp.has_extn("starttls"):
            raise smtplib.SMTPException("STARTTLS is configured but not offered")
        code, _ = smtp.noop()
        if code != 250:
            raise smtplib.SMTPException(f"NOOP answered {code}")
    return f"smtp {host}:{port} answers EHLO and NOOP"
