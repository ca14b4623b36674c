"""Real things for incident tests: an SMTP server (aiosmtpd), an HTTP receiver for webhooks,
and a workspace whose policy and contacts point at them."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opsbook.db import Database, open_database
from opsbook.incidents.config import IncidentConfig, load_config
from opsbook.workspace import Workspace
from opsbook.workspace.init import init_workspace
from tests.conftest import free_port


@dataclass
class Mail:
    to: str
    subject: str
    body: str


@dataclass
class SmtpSink:
    port: int
    mails: list[Mail] = field(default_factory=list)

    def to(self, address: str) -> list[Mail]:
        return [m for m in self.mails if m.to == address]

    def wait_for(self, n: int, timeout: float = 20.0) -> list[Mail]:
        deadline = time.monotonic() + timeout
        while len(self.mails) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} mails, got {len(self.mails)}: {self.mails}")
            time.sleep(0.02)
        return list(self.mails)


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = message_from_bytes(envelope.content)
        payload = msg.get_payload(decode=True)
        body = payload if isinstance(payload, bytes) else b""
        for rcpt in envelope.rcpt_tos:
            self.sink.mails.append(Mail(rcpt, str(msg["Subject"]), body.decode()))
        return "250 OK"


@contextmanager
def smtp_server() -> Iterator[SmtpSink]:
    from aiosmtpd.controller import Controller

    sink = SmtpSink(free_port())
    controller = Controller(_Handler(sink), hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    url: str
    hits: list[Hit] = field(default_factory=list)
    status: int = 200
    delay: float = 0.0

    def on(self, path: str) -> list[Hit]:
        return [h for h in self.hits if h.path == path]


@contextmanager
def http_receiver() -> Iterator[Receiver]:
    port = free_port()
    rec = Receiver(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            rec.hits.append(Hit(self.path, dict(self.headers.items()), body))
            if rec.delay:
                time.sleep(rec.delay)
            status = 500 if self.path.startswith("/fail") else rec.status
            try:
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
            except OSError:
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield rec
    finally:
        server.shutdown()
        server.server_close()


def contacts_yaml(webhook: str, *, loop: bool = False) -> str:
    return f"""\
levels:
  - name: level-1
    title: Level 1 Operations
    webhook: {webhook}/hook/l1
    contacts:
      - {{id: l1, role: Operations Lead, phone: "+1-555-0101", email: l1@bank.test, when: on call}}
  - name: level-2
    title: Level 2 Engineering
    contacts:
      - {{id: l2, role: Platform Lead, phone: "+1-555-0201", email: l2@bank.test, when: L2}}
      - {{id: l2chat, role: Platform Chat, chat: {webhook}/chat/l2, when: L2 channel}}
  - name: level-3
    title: Level 3 Management
{"    escalate_to: level-1" if loop else ""}
    contacts:
      - {{id: l3, role: Engineering Manager, phone: "+1-555-0301", email: l3@bank.test, when: L3}}
      - {{id: broken, role: Broken Pager, webhook: {webhook}/fail, email: broken@bank.test,
         when: falls back to email}}
escalation_policy:
  repeat: 1
"""


def policy_yaml(template: str, *, smtp_port: int, ack: str = "2s", public: str = "") -> str:
    text = template.replace("port: 25,", f"port: {smtp_port},")
    text = text.replace("host: localhost,", "host: 127.0.0.1,")
    text = text.replace("retry_delay: 1s", "retry_delay: 50ms")
    text = text.replace("timeout: 10s ", "timeout: 2s ")
    text = text.replace("ack_target: 15m", f"ack_target: {ack}")
    if public:
        text = text.replace("public_url: http://127.0.0.1:8000", f"public_url: {public}")
    return text


def make_ws(
    root: Path, *, smtp_port: int, webhook: str, ack: str = "2s", public: str = ""
) -> Workspace:
    init_workspace(target=root)
    path = root / "incident_policy.yaml"
    path.write_text(policy_yaml(path.read_text(), smtp_port=smtp_port, ack=ack, public=public))
    (root / "contacts.yaml").write_text(contacts_yaml(webhook))
    return Workspace.load(root)


@dataclass
class Env:
    ws: Workspace
    db: Database
    config: IncidentConfig
    smtp: SmtpSink
    hooks: Receiver


@contextmanager
def incident_env(tmp: Path, *, ack: str = "2s") -> Iterator[Env]:
    with smtp_server() as smtp, http_receiver() as hooks:
        ws = make_ws(tmp / "ws", smtp_port=smtp.port, webhook=hooks.url, ack=ack)
        db = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
        try:
            yield Env(ws, db, load_config(ws), smtp, hooks)
        finally:
            db.close()
