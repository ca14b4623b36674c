"""`sandbox load` against services that fail (issue 18 §4): every error sample says what
happened (no empty ``ReadError: ``), and a platform refusing to open the load's accounts (the
error-rate fault) is a clear OpsbookError, not a traceback. Real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from opsbook.errors import OpsbookError
from opsbook.sandbox import chaos
from opsbook.sandbox.load import describe_error, run_load
from tests.conftest import serving
from tests.sandbox.harness import Sandbox


@contextmanager
def bank(*, accounts_fail: bool) -> Iterator[str]:
    """Accounts open (or always answer 500), payments reset the connection, the rest is 200."""
    state = {"n": 0}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _answer(self, status: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            if self.path == "/payments":
                # a reset, as a crashing upstream gives: no answer at all
                self.connection.setsockopt(
                    socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)
                )
                self.close_connection = True
                return
            if self.path == "/accounts" and accounts_fail:
                self._answer(500, {"error": "upstream reset: injected internal error"})
                return
            state["n"] += 1
            self._answer(200, {"id": state["n"]})

        def do_GET(self) -> None:
            if self.path == "/ledger/check":
                self._answer(
                    200, {"ok": True, "entries": 0, "total_cents": 0, "mismatched_accounts": []}
                )
                return
            self._answer(200, {"balance_cents": 1})

        def log_message(self, format: str, *args: Any) -> None:
            return None

    with serving(Handler) as url:
        yield url


def _urls(base: str) -> dict[str, str]:
    return dict.fromkeys(("account", "transaction", "payment", "notification"), base)


async def test_error_samples_always_say_what_happened() -> None:
    with bank(accounts_fail=False) as base:
        report = await run_load(urls=_urls(base), rate=100, duration=0.5, seed=3)
    assert report.ops["payment"].errors == report.ops["payment"].count > 0
    assert report.error_samples
    for sample in report.error_samples:
        assert sample.startswith("payment: ")
        assert not sample.rstrip().endswith(":"), sample
        assert "connection" in sample.lower() or "disconnected" in sample.lower(), sample


async def test_a_platform_refusing_new_accounts_is_a_clear_error() -> None:
    with bank(accounts_fail=True) as base, pytest.raises(OpsbookError) as caught:
        await run_load(urls=_urls(base), rate=10, duration=0.2)
    assert "could not open the load's customer accounts" in caught.value.message
    assert "HTTP 500" in caught.value.message
    assert "chaos list" in (caught.value.hint or "")


def test_describe_error_never_leaves_the_reason_empty() -> None:
    import httpx

    assert describe_error(httpx.ReadError("")) == (
        "ReadError: the connection closed before the answer arrived"
    )
    assert describe_error(httpx.ConnectError("[Errno 111] Connection refused")) == (
        "ConnectError: [Errno 111] Connection refused"
    )
    assert describe_error(RuntimeError()) == "RuntimeError"


async def test_load_runs_while_the_error_rate_fault_is_active(sb: Sandbox) -> None:
    """The real sandbox, half of the account service's requests failing: the load still runs
    (it is how an operator sees the fault) and every error sample says what happened."""
    chaos.inject(control=sb.control(), fault="error-rate", service="account", actor="pytest")
    urls = {s.name: sb.url(s.name) for s in sb.config.services}
    # about 7 of 40 requests a second reach the account service: 2 s leave a chance of about
    # 1 in 10^4 that none of them draws the fault (1 s left about 1 in 100: a flaky test)
    report = await run_load(urls=urls, rate=40, duration=2.0, ledger_url=sb.config.database_url)
    assert report.invariant["ok"]
    assert sum(op.errors for op in report.ops.values()) > 0
    assert report.error_samples
    for sample in report.error_samples:
        assert "HTTP 500" in sample and not sample.rstrip().endswith(":"), sample
