"""Containment on the sandbox (issue 14): a service isolated at its front door (its port's
balancer and the API gateway answer 403 ``isolated``; its processes keep running for forensics)
and ledger accounts frozen (transfers and payments from or to them are refused with 423).

The state is ``containment.json`` in the data directory, so services (frozen accounts) and the
supervisor (isolated services) see the same thing and it survives a restart of either."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from opsbook.sandbox.ledger_model import LedgerError

FILE = "containment.json"


class AccountFrozen(LedgerError):
    status = 423
    kind = "account_frozen"


def path_of(data_dir: Path) -> Path:
    return data_dir / FILE


def load(data_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads(path_of(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    return {
        "isolated": dict(data.get("isolated", {})),  # service -> {by, at, ticket}
        "frozen": {str(k): v for k, v in dict(data.get("frozen", {})).items()},  # account id ->
    }


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    with (data_dir / (FILE + ".lock")).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def update(data_dir: Path, change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    with _locked(data_dir):
        state = load(data_dir)
        change(state)
        tmp = path_of(data_dir).with_suffix(".json.new")
        tmp.write_text(json.dumps(state, indent=1), encoding="utf-8")
        os.chmod(tmp, 0o600)
        tmp.replace(path_of(data_dir))
        return state


class ContainmentView:
    """What a service process reads, re-read when the file changes."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._mtime = -1.0
        self._state: dict[str, Any] = {"isolated": {}, "frozen": {}}

    def state(self) -> dict[str, Any]:
        try:
            mtime = path_of(self.data_dir).stat().st_mtime
        except OSError:
            return {"isolated": {}, "frozen": {}}
        if mtime != self._mtime:
            self._mtime, self._state = mtime, load(self.data_dir)
        return self._state

    def frozen(self, account_id: int) -> dict[str, Any] | None:
        found: dict[str, Any] | None = self.state()["frozen"].get(str(account_id))
        return found

    def refuse_frozen(self, *account_ids: int) -> None:
        for a in account_ids:
            hold = self.frozen(a)
            if hold is not None:
                raise AccountFrozen(
                    f"account {a} is frozen ({hold.get('ticket') or 'security hold'})"
                    " and may not send or receive money"
                )


async def contain(sup: Any, args: dict[str, Any]) -> dict[str, Any]:
    """The supervisor's ``contain`` operation: ``action`` isolate | release (a ``service``) or
    freeze | unfreeze (an ``account`` id), with ``ticket`` and ``actor``."""
    from datetime import UTC, datetime  # noqa: PLC0415

    from opsbook.errors import UsageError  # noqa: PLC0415
    from opsbook.sandbox.config import check_service  # noqa: PLC0415

    action = str(args.get("action") or "")
    actor, ticket = str(args.get("actor") or "operator"), args.get("ticket")
    stamp = datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    if action in ("isolate", "release"):
        service = check_service(str(args.get("service") or ""))
        unit = sup.units[service]

        def change(state: dict[str, Any]) -> None:
            if action == "isolate":
                state["isolated"][service] = {"by": actor, "at": stamp, "ticket": ticket}
            else:
                state["isolated"].pop(service, None)

        update(sup.data_dir, change)
        was = unit.balancer.isolated
        unit.balancer.isolated = (
            f"{ticket or 'security'} by {actor}" if action == "isolate" else None
        )
        sup.service_log[service](
            "warning",
            f"service {action}d at its front door",
            category="security",
            actor=actor,
            ticket=ticket,
        )
        return {
            "action": action,
            "service": service,
            "changed": (was is None) == (action == "isolate"),
            "ticket": ticket,
        }
    if action in ("freeze", "unfreeze"):
        try:
            account = int(args.get("account"))  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise UsageError("account must be a ledger account id", field="account") from None
        before: dict[str, Any] = {}

        def change_f(state: dict[str, Any]) -> None:
            before.update(state["frozen"])
            if action == "freeze":
                state["frozen"][str(account)] = {"by": actor, "at": stamp, "ticket": ticket}
            else:
                state["frozen"].pop(str(account), None)

        update(sup.data_dir, change_f)
        return {
            "action": action,
            "account": account,
            "changed": (str(account) in before) != (action == "freeze"),
            "ticket": ticket,
        }
    raise UsageError(
        f"unknown containment action {action!r}",
        field="action",
        hint="isolate, release, freeze or unfreeze",
    )


def restore(sup: Any) -> None:
    """At boot: isolations recorded survive a supervisor restart."""
    for service, why in load(sup.data_dir)["isolated"].items():
        if service in sup.units:
            sup.units[
                service
            ].balancer.isolated = f"{why.get('ticket') or 'security'} by {why.get('by')}"
