"""The sandbox's release catalogue: the versions of each service that can be deployed, and how
each behaves once it runs. A good release, one with a latency regression, one that fails a few
percent of writes (payments, on the payment service), one that needs a schema change; a fresh
sandbox starts with a history (revision 1 superseded, revision 2 running), so a rollback has
somewhere to go. Pure data: the replica reads its behaviour from here by version."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from opsbook.errors import NotFoundError

#: The version every service runs after ``sandbox up`` (revision 2), and the one before it
#: (revision 1, superseded), which an emergency rollback on a fresh sandbox returns to.
INITIAL_VERSION = "1.4.2"
PREVIOUS_VERSION = "1.4.1"

#: Columns every version reads, per ledger table (the migration lint's "still read" rule).
_BASE_READS: dict[str, tuple[str, ...]] = {
    "accounts": ("id", "owner", "currency", "kind", "balance_cents", "created_at"),
    "transfers": (
        "id",
        "from_account",
        "to_account",
        "amount_cents",
        "status",
        "kind",
        "reference",
        "request_id",
        "created_at",
    ),
    "entries": ("id", "transfer_id", "account_id", "amount_cents", "created_at"),
    "payments": (
        "id",
        "account_id",
        "amount_cents",
        "payee",
        "status",
        "network_ref",
        "error",
        "transfer_id",
        "request_id",
        "created_at",
    ),
    "outbox": ("id", "account_id", "channel", "message", "status", "created_at", "sent_at"),
}


@dataclass(frozen=True)
class Release:
    version: str
    behaviour: str  # good | slow | failing | schema
    summary: str
    latency_ms: int = 0  # added to every API request
    fail_rate: float = 0.0  # share of write requests answered 500 (payments on payment)
    requires: tuple[tuple[str, str], ...] = ()  # (table, column) the version cannot start without
    reads: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(_BASE_READS))

    def view(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "behaviour": self.behaviour,
            "summary": self.summary,
            "latency_ms": self.latency_ms,
            "fail_rate": self.fail_rate,
            "requires": [f"{t}.{c}" for t, c in self.requires],
        }


def _with(table: str, column: str) -> dict[str, tuple[str, ...]]:
    reads = dict(_BASE_READS)
    reads[table] = (*reads[table], column)
    return reads


RELEASES: tuple[Release, ...] = (
    Release(PREVIOUS_VERSION, "good", "the release before the initial one"),
    Release(INITIAL_VERSION, "good", "the release a fresh sandbox runs"),
    Release("1.5.0", "good", "a good release: same behaviour, new build"),
    Release(
        "1.5.1",
        "slow",
        "a latency regression: every API request takes about 400 ms longer",
        latency_ms=400,
    ),
    Release(
        "1.5.2",
        "failing",
        "fails about 8 % of writes with a 500 (on payment: card payments)",
        fail_rate=0.08,
    ),
    Release(
        "1.6.0",
        "schema",
        "needs the column accounts.display_name (migrations/0001_account_display_name.sql);"
        " without it the release reports DOWN and never takes traffic",
        requires=(("accounts", "display_name"),),
        reads=_with("accounts", "display_name"),
    ),
)


def versions() -> list[str]:
    return [r.version for r in RELEASES]


def release_of(service: str, version: str) -> Release:
    """The release ``version`` of ``service`` (every service has the same catalogue)."""
    for release in RELEASES:
        if release.version == version:
            return release
    raise NotFoundError(
        f"{service} has no release {version!r} in the sandbox catalogue",
        hint=f"releases: {', '.join(versions())} (opsbook sandbox releases)",
    )


def catalogue(services: tuple[str, ...]) -> dict[str, list[dict[str, Any]]]:
    return {s: [r.view() for r in RELEASES] for s in services}


def reads_of(versions_running: list[str]) -> dict[str, set[str]]:
    """The columns read by any of ``versions_running``, per table."""
    out: dict[str, set[str]] = {}
    for version in versions_running:
        for release in RELEASES:
            if release.version == version:
                for table, cols in release.reads.items():
                    out.setdefault(table, set()).update(cols)
    return out
