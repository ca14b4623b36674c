"""What every check shares: its context (workspace, environment, database, the sandbox's files
and ports) and the shape of its answer."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.db import Database
    from opsbook.secops.tlsscan import TlsScan
    from opsbook.workspace import Environment, Workspace


@dataclass(frozen=True)
class Failure:
    """One subject a check failed on. ``text`` and ``detail`` are shown and stored: never a
    secret, never a full card number."""

    subject: str
    text: str
    location: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    severity: str | None = None  # overrides the check's own (an admin account, say)


@dataclass
class Outcome:
    status: Literal["pass", "fail", "error", "skipped"]
    failures: list[Failure] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    @classmethod
    def of(cls, failures: list[Failure], **evidence: Any) -> Outcome:
        return cls("fail" if failures else "pass", failures, evidence)

    @classmethod
    def skipped(cls, why: str) -> Outcome:
        return cls("skipped", evidence={"why": why})


class CheckContext:
    """Built once per run; the TLS scan is shared by the four TLS checks."""

    def __init__(
        self,
        *,
        workspace: Workspace,
        environment: Environment,
        db: Database | None,
        settings: Settings,
        now: datetime | None = None,
    ) -> None:
        self.workspace = workspace
        self.environment = environment
        self.db = db
        self.settings = settings
        self.now = now or datetime.now(UTC)
        self.local = environment.platform == "local"
        self.data_dir: Path | None = None
        self.network_port: int | None = None
        self.ledger_url: str | None = None
        if self.local:
            from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415

            cfg = load_config(workspace=workspace, env_name=environment.name)
            self.data_dir = cfg.data_path
            self.network_port = cfg.network_port
            self.ledger_url = cfg.database_url
        self._tls: asyncio.Task[TlsScan] | None = None

    @property
    def logs_dir(self) -> Path | None:
        return self.data_dir / "logs" if self.data_dir else None

    async def tls_scan(self) -> TlsScan:
        from opsbook.secops.tlsscan import scan  # noqa: PLC0415

        if self._tls is None:
            assert self.network_port is not None
            self._tls = asyncio.ensure_future(
                asyncio.to_thread(scan, "127.0.0.1", self.network_port)
            )
        return await self._tls
