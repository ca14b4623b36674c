"""The checkpoint signer of a long-running writer (``opsbook serve``): every ``every_records``
records or ``every_seconds`` seconds, whichever comes first, and once more at shutdown, it
vouches for the records this process wrote. Signing happens after commit, off the write path;
a failure is logged and retried, never loses a record (docs/audit.md)."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from opsbook.audit._log import records_written
from opsbook.audit._verify import VerifyReport, verify
from opsbook.audit._witness import WitnessConfig, config_for, sign_own
from opsbook.db import Database
from opsbook.errors import OpsbookError

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.engine.secrets import SecretResolver
    from opsbook.workspace import Workspace

EVERY_RECORDS = 100
EVERY_SECONDS = 10.0


def sign_now(*, db: Database, cfg: WitnessConfig, signer: str) -> int | None:
    """Sign what this process wrote; log (not raise) a failure: the records stay pending."""
    from opsbook.logs import get_logger  # noqa: PLC0415

    try:
        return sign_own(db=db, cfg=cfg, signer=signer)
    except (OpsbookError, OSError) as exc:
        get_logger().warning(
            "audit.checkpoint.failed", fields={"error": str(exc), "witness": str(cfg.witness)}
        )
        return None


async def run_signer(
    *,
    db: Database,
    cfg: WitnessConfig,
    signer: str = "serve",
    every_records: int = EVERY_RECORDS,
    every_seconds: float = EVERY_SECONDS,
) -> None:
    """Run until cancelled; the caller signs once more at shutdown with :func:`sign_now`."""
    since = time.monotonic()
    while True:
        await asyncio.sleep(min(1.0, every_seconds))
        pending = records_written()
        if not pending:
            since = time.monotonic()
            continue
        if pending >= every_records or time.monotonic() - since >= every_seconds:
            sign_now(db=db, cfg=cfg, signer=signer)
            since = time.monotonic()


#: How old a record no checkpoint vouches for yet may be when a *server* verifies the chain
#: for its console or API (another process, e.g. a long ``opsbook run``, signs when it ends).
LIVE_TAIL_SECONDS = 300.0


class _ServerContext(Protocol):
    @property
    def settings(self) -> Settings: ...
    @property
    def workspace(self) -> Workspace: ...
    @property
    def resolver(self) -> SecretResolver: ...


def server_witness(ctx: _ServerContext) -> WitnessConfig:
    """The witness of a server's workspace (the API and console use it)."""
    return config_for(
        workspace_root=ctx.workspace.root, settings=ctx.settings, providers=ctx.resolver.providers
    )


def verify_live(*, db: Database, cfg: WitnessConfig) -> VerifyReport:
    """For a running server's API and console: vouch for this process's records first, then
    verify, accepting other writers' records younger than :data:`LIVE_TAIL_SECONDS` (listed in
    the report's ``unwitnessed`` and ``warnings``). ``opsbook audit verify`` is the strict
    check."""
    sign_now(db=db, cfg=cfg, signer="serve")
    return verify(db=db, witness=cfg, allow_unwitnessed_tail=LIVE_TAIL_SECONDS)
