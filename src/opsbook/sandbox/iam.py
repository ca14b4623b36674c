"""The sandbox platform's own identities (``iam.json`` in the data directory): the database
roles and operator accounts of the banking platform, standing for Azure AD and the ledger's
database roles in production. Security checks read them (dormant accounts, token use from new
addresses), access reviews list and revoke their grants, and the ``dormant-admin`` and
``leaked-token`` faults change them.

Each account: ``name``, ``kind`` (service | operator | admin), ``roles`` (database roles such
as ``ledger_rw``, ``db_owner``), ``created``, ``last_login`` (ISO UTC), ``addresses`` (where
its token is used from) and ``token_id`` (the public part of its bearer token
``sbx.<name>.<secret>``; the secret is never written here)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

IAM_FILE = "iam.json"


def iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def default_accounts(now: datetime) -> list[dict[str, Any]]:
    today = iso(now)
    made = iso(now - timedelta(days=400))
    base = [
        ("svc-account", "service", ["ledger_rw"]),
        ("svc-transaction", "service", ["ledger_rw"]),
        ("svc-payment", "service", ["ledger_rw"]),
        ("svc-notification", "service", ["ledger_ro"]),
        ("ops-batch", "operator", ["ledger_ro"]),
        ("dba-oncall", "admin", ["db_owner"]),
    ]
    return [
        {
            "name": name,
            "kind": kind,
            "roles": roles,
            "created": made,
            "last_login": today,
            "addresses": ["127.0.0.1"],
            "token_id": name,
        }
        for name, kind, roles in base
    ]


def iam_path(data_dir: Path) -> Path:
    return data_dir / IAM_FILE


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[None]:
    data_dir.mkdir(parents=True, exist_ok=True)
    with (data_dir / (IAM_FILE + ".lock")).open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def load(data_dir: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(iam_path(data_dir).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [a for a in data.get("accounts", []) if isinstance(a, dict)]


def _save(data_dir: Path, accounts: list[dict[str, Any]]) -> None:
    path = iam_path(data_dir)
    tmp = path.with_suffix(".json.new")
    tmp.write_text(json.dumps({"accounts": accounts}, indent=1), encoding="utf-8")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def update(data_dir: Path, change: Callable[[list[dict[str, Any]]], None]) -> list[dict[str, Any]]:
    """Apply ``change`` to the accounts under a file lock; the accounts after it."""
    with _locked(data_dir):
        accounts = load(data_dir)
        change(accounts)
        _save(data_dir, accounts)
        return accounts


def ensure(data_dir: Path, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Write the defaults when there is no file; the service accounts log in at every boot."""
    when = now or datetime.now(UTC)

    def boot(accounts: list[dict[str, Any]]) -> None:
        if not accounts:
            accounts.extend(default_accounts(when))
        for a in accounts:
            if a.get("kind") == "service":
                a["last_login"] = iso(when)

    return update(data_dir, boot)


def revoke_role(data_dir: Path, *, name: str, role: str) -> bool:
    """Remove ``role`` from account ``name``; whether it held it."""
    held = False

    def change(accounts: list[dict[str, Any]]) -> None:
        nonlocal held
        for a in accounts:
            if a.get("name") == name and role in a.get("roles", []):
                a["roles"] = [r for r in a["roles"] if r != role]
                held = True

    update(data_dir, change)
    return held


def set_disabled(data_dir: Path, *, name: str, disabled: bool = True) -> bool:
    found = False

    def change(accounts: list[dict[str, Any]]) -> None:
        nonlocal found
        for a in accounts:
            if a.get("name") == name:
                a["disabled"] = disabled
                found = True

    update(data_dir, change)
    return found


class TokenBook:
    """The known addresses of each token, re-read when ``iam.json`` changes (services use it
    to mark a token used from a new address)."""

    def __init__(self, data_dir: Path) -> None:
        self.path = iam_path(data_dir)
        self._mtime = -1.0
        self._known: dict[str, tuple[str, set[str], bool]] = {}

    def lookup(self, token_id: str) -> tuple[str, set[str], bool] | None:
        """(account, known addresses, disabled) of a token, or None when unknown."""
        try:
            mtime = self.path.stat().st_mtime
        except OSError:
            return None
        if mtime != self._mtime:
            self._mtime = mtime
            self._known = {
                str(a.get("token_id")): (
                    str(a["name"]),
                    set(a.get("addresses", [])),
                    bool(a.get("disabled")),
                )
                for a in load(self.path.parent)
                if a.get("token_id")
            }
        return self._known.get(token_id)
