"""Run the server: open the database, create the first admin on an empty database (printing
its one-time password), build the app, serve it with uvicorn."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO

from opsbook.config import Settings
from opsbook.errors import UsageError
from opsbook.executions.context import AppContext, build_context
from opsbook.executions.settings import ServerSettings
from opsbook.users.bootstrap import FirstAdmin, ensure_first_admin
from opsbook.workspace import Workspace


def prepare(*, settings: Settings, server: ServerSettings, workspace: Workspace) -> AppContext:
    from opsbook import logs  # noqa: PLC0415
    from opsbook.db import open_database  # noqa: PLC0415

    if bool(server.tls_certfile) != bool(server.tls_keyfile):
        raise UsageError(
            "HTTPS needs both a certificate and a key",
            hint="pass --tls-cert and --tls-key together (or neither, behind a reverse proxy)",
        )
    workspace.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = open_database(settings.database_url_for(workspace.state_dir))
    ctx = build_context(settings=settings, server=server, workspace=workspace, db=db)
    logs.configure(path=workspace.state_dir / "logs" / "opsbook.log", redact=ctx.redactor.redact)
    return ctx


def announce(first: FirstAdmin | None, url: str, out: TextIO) -> None:
    out.write(f"opsbook console: {url}\n")
    if first is not None:
        out.write(
            "\nCreated the first account. Sign in with it and add people under Users:\n"
            f"  username: {first.username}\n"
            f"  password: {first.password}\n"
            "This password is shown once and stored only as a hash.\n\n"
        )
    out.flush()


def _warn_loose_files(*, settings: Settings, workspace: Workspace, out: TextIO) -> None:
    """Say so at start when the state database, WAL or a key is readable by others (the same
    check as `opsbook doctor`; files from an older version keep their mode)."""
    from opsbook.workspace.doctor_files import file_mode_checks  # noqa: PLC0415

    for _, status, detail, hint in file_mode_checks(workspace=workspace, settings=settings):
        if status == "failed":
            out.write(f"warning: {detail}\n  fix: {hint}\n")


def serve(
    *,
    settings: Settings,
    server: ServerSettings,
    workspace: Workspace,
    out: TextIO = sys.stdout,
    on_ready: Callable[[AppContext], None] | None = None,
) -> None:
    import uvicorn  # noqa: PLC0415

    from opsbook.server.app import create_app  # noqa: PLC0415

    ctx = prepare(settings=settings, server=server, workspace=workspace)
    _warn_loose_files(settings=settings, workspace=workspace, out=out)
    first = ensure_first_admin(db=ctx.db, known=ctx.known_roles())
    scheme = "https" if server.tls_certfile else "http"
    announce(first, server.public_url or f"{scheme}://{server.host}:{server.port}/", out)
    if on_ready is not None:
        on_ready(ctx)
    config = uvicorn.Config(
        create_app(ctx),
        host=server.host,
        port=server.port,
        ssl_certfile=server.tls_certfile,
        ssl_keyfile=server.tls_keyfile,
        proxy_headers=True,
        forwarded_allow_ips=server.forwarded_allow_ips,
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=10,
    )
    # Everything built so far (the app, its routes and schemas: ~10^5 objects) lives as long
    # as the server: keep it out of the cyclic garbage collector, whose full passes over it
    # were the long tail of request latency.
    import gc  # noqa: PLC0415

    gc.collect()
    gc.freeze()
    # uvicorn shuts down gracefully on SIGTERM, then raises the signal again with the handler
    # it found: with the default one the process would die before closing the database.
    import signal  # noqa: PLC0415

    previous = signal.signal(signal.SIGTERM, _stopped)
    try:
        uvicorn.Server(config).run()
    finally:
        signal.signal(signal.SIGTERM, previous)
        # The last connection to close checkpoints what is left and removes the -wal and
        # -shm files (the lifespan's shutdown has already stopped the checkpoint thread).
        ctx.db.close()


def _stopped(signum: int, frame: object) -> None:
    raise SystemExit(0)  # asked to stop, and stopped cleanly
