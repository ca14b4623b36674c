"""The security faults for drills (issue 14): a card number written to a log, a weak TLS
setting, an expired certificate, a dormant admin account, and a leaked token used from a new
address. Each is undone by ``clear``; the daily security check must catch every one."""

from __future__ import annotations

import asyncio
import contextlib
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from opsbook.sandbox import iam
from opsbook.sandbox.faults import SECURITY_FAULTS
from opsbook.sandbox.jsonlog import JsonLog
from opsbook.sandbox.proxy import http_request
from opsbook.sandbox.tls import NORMAL_DAYS, issue_certificate

if TYPE_CHECKING:
    from opsbook.sandbox.faults import ActiveFault
    from opsbook.sandbox.host import Host

__all__ = ["SECURITY_FAULTS", "apply", "reset", "undo"]

#: a test card number (Visa, passes Luhn): what a debug log line of a buggy release carries
TEST_PAN = "4111111111111111"
DORMANT = "admin-legacy"
LEAKED_FROM = "198.51.100.77"
LEAKED_ACCOUNT = "ops-batch"
_PAN_LINE = re.compile(rb"4111111111111111")


def _log_path(sup: Host, service: str) -> Path:
    return sup.logs / f"{service}.log"


def _write_pan(sup: Host, service: str) -> None:
    log = JsonLog(_log_path(sup, service), service=service, replica=f"{service}-debug")
    log(
        "debug",
        "payment.authorize.request",
        message=f"authorize card={TEST_PAN} exp=12/28 amount_cents=1299",
        card_number=TEST_PAN,
    )
    log.close()


def mask_pans(path: Path) -> int:
    """Overwrite the test card number in ``path`` in place (same length, so lines other
    processes append meanwhile are kept): how many were masked."""
    try:
        with path.open("r+b") as f:
            data = f.read()
            hits = [m.start() for m in _PAN_LINE.finditer(data)]
            for at in hits:
                f.seek(at + 6)
                f.write(b"******")
    except OSError:
        return 0
    return len(hits)


async def _leak(sup: Host) -> None:
    """Someone outside uses ops-batch's token against the account service every second."""
    port = sup.units["account"].port
    headers = {
        "Authorization": f"Bearer sbx.{LEAKED_ACCOUNT}.stolen",
        "X-Forwarded-For": LEAKED_FROM,
        "User-Agent": "curl/8.5.0",
    }
    while True:
        with contextlib.suppress(OSError, TimeoutError):
            await http_request(port, "/accounts?limit=5", headers=headers, timeout=2.0)
        await asyncio.sleep(1.0)


async def apply(sup: Host, fault: ActiveFault) -> None:
    name = fault.fault
    if name == "pan-in-log":
        await asyncio.to_thread(_write_pan, sup, fault.service or "payment")
    elif name == "weak-tls":
        await sup.restart_network()  # start_network reads the active faults
    elif name == "expired-cert":
        past = datetime.now(UTC) - timedelta(days=int(fault.params.get("days_ago", 2)) + 30)
        await asyncio.to_thread(issue_certificate, sup.data_dir, days=30, now=past)
        await sup.restart_network()
    elif name == "dormant-admin":
        now = datetime.now(UTC)
        days = int(fault.params.get("days", 200))

        def add(accounts: list[dict[str, object]]) -> None:
            accounts[:] = [a for a in accounts if a.get("name") != DORMANT]
            accounts.append(
                {
                    "name": DORMANT,
                    "kind": "admin",
                    "roles": ["db_owner", "admin"],
                    "created": iam.iso(now - timedelta(days=700)),
                    "last_login": iam.iso(now - timedelta(days=days)),
                    "addresses": ["10.20.0.15"],
                    "token_id": DORMANT,
                }
            )

        await asyncio.to_thread(iam.update, sup.data_dir, add)
    elif name == "leaked-token":
        sup.leaker = asyncio.create_task(_leak(sup))


async def undo(sup: Host, fault: ActiveFault) -> None:
    name = fault.fault
    if name == "pan-in-log":
        await asyncio.to_thread(mask_pans, _log_path(sup, fault.service or "payment"))
    elif name == "weak-tls":
        await sup.restart_network()
    elif name == "expired-cert":
        await asyncio.to_thread(issue_certificate, sup.data_dir, days=NORMAL_DAYS)
        await sup.restart_network()
    elif name == "dormant-admin":
        await asyncio.to_thread(
            iam.update,
            sup.data_dir,
            lambda accounts: accounts.__setitem__(
                slice(None), [a for a in accounts if a.get("name") != DORMANT]
            ),
        )
    elif name == "leaked-token" and sup.leaker is not None:
        sup.leaker.cancel()
        sup.leaker = None


async def reset(sup: Host, leftovers: list[ActiveFault]) -> None:
    """At boot: undo what a previous run's security faults left behind."""
    for f in leftovers:
        if f.fault == "expired-cert":
            await asyncio.to_thread(issue_certificate, sup.data_dir, days=NORMAL_DAYS)
        elif f.fault in ("pan-in-log", "dormant-admin"):
            await undo(sup, f)
