"""`opsbook serve`: the REST API, the web console and /metrics, with the engine and schedules."""

from __future__ import annotations

from typing import Annotated

import typer

from opsbook.cli._common import AppState


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        ctx: typer.Context,
        host: Annotated[
            str | None, typer.Option(help="Address to listen on (default 127.0.0.1)")
        ] = None,
        port: Annotated[int | None, typer.Option(help="TCP port (default 8080)")] = None,
        tls_cert: Annotated[
            str | None, typer.Option("--tls-cert", help="PEM certificate: serve HTTPS")
        ] = None,
        tls_key: Annotated[str | None, typer.Option("--tls-key", help="PEM private key")] = None,
        public_url: Annotated[
            str | None,
            typer.Option(help="URL people use, e.g. https://opsbook.example.com behind a proxy"),
        ] = None,
        database_url: Annotated[
            str | None,
            typer.Option(help="State database URL (default: SQLite in the workspace)"),
        ] = None,
        schedules: Annotated[
            bool | None,
            typer.Option(
                "--schedules/--no-schedules", help="Start procedures at their schedule: times"
            ),
        ] = None,
    ) -> None:
        """Serve the REST API (/api/v1), the web console (/) and /metrics. The first start on
        an empty database creates the account `admin` and prints its one-time password.
        Every setting can also come from the environment (see docs/server.md)."""
        from dataclasses import replace  # noqa: PLC0415

        from opsbook.executions.settings import ServerSettings  # noqa: PLC0415
        from opsbook.server.runner import serve as run_server  # noqa: PLC0415

        st: AppState = ctx.obj
        settings = st.settings
        if database_url:
            settings = replace(settings, database_url=database_url)
        server = ServerSettings.from_env().with_overrides(
            host=host,
            port=port,
            tls_certfile=tls_cert,
            tls_keyfile=tls_key,
            public_url=public_url,
            schedules=schedules,
        )
        run_server(settings=settings, server=server, workspace=st.workspace())
