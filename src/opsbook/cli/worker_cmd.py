"""`opsbook worker` (drive runs from broker queues) and `opsbook workers list` (ADR 0017 §8)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json, table_console

if TYPE_CHECKING:
    from collections.abc import Mapping

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]

_QUEUE = re.compile(r"[a-z0-9][a-z0-9._-]*")


def _check_queues(queues: list[str]) -> list[str]:
    from opsbook.errors import UsageError  # noqa: PLC0415

    for q in queues:
        if not _QUEUE.fullmatch(q) or q.startswith("host."):
            raise UsageError(
                f"--queue {q!r} is not a queue name",
                field="--queue",
                hint="lower-case letters, digits, '.', '_' and '-', starting with a letter or"
                " digit (host.* queues are consumed automatically)",
            )
    return list(dict.fromkeys(queues)) or ["default"]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.0f}h"


def _running(entry: Mapping[str, Any]) -> str:
    return (
        f"{entry.get('execution_id')} {entry.get('ref') or ''}"
        + (f" {entry['step']}" if entry.get("step") else "")
    ).strip()


def register(app: typer.Typer) -> None:
    @app.command("worker")
    def worker(
        ctx: typer.Context,
        queue: Annotated[
            list[str] | None,
            typer.Option("--queue", "-q", help="A queue to consume (repeat; default: default)"),
        ] = None,
        concurrency: Annotated[
            int, typer.Option("--concurrency", "-c", min=1, max=256, help="Runs at once")
        ] = 4,
        name: Annotated[
            str | None, typer.Option("--name", help="Name shown by `workers list` (default: host)")
        ] = None,
        database_url: Annotated[
            str | None,
            typer.Option(help="State database URL (default: SQLite in the workspace)"),
        ] = None,
        broker_url: Annotated[
            str | None,
            typer.Option(help="Broker URL, redis://… or amqp://… (or OPSBOOK_BROKER_URL)"),
        ] = None,
        drain_seconds: Annotated[
            float,
            typer.Option(
                "--drain-seconds",
                min=0,
                help="On SIGTERM, how long runs may take to reach a step boundary",
            ),
        ] = 300,
        metrics_port: Annotated[
            int | None,
            typer.Option(
                "--metrics-port", min=1, max=65535, help="Serve /metrics on this TCP port"
            ),
        ] = None,
    ) -> int:
        """Drive runs from broker queues until SIGTERM (then drain and exit 0). Also consumes
        this host's queue host.<hostname>. Exit 2 without a broker URL, 70 when fenced (its
        heartbeat could not be written for too long). See docs/scale-out.md."""
        from opsbook.cluster.settings import (  # noqa: PLC0415
            BROKER_HINT,
            BROKER_SCHEMES,
            ClusterSettings,
        )
        from opsbook.cluster.worker import run_worker  # noqa: PLC0415
        from opsbook.errors import UsageError  # noqa: PLC0415

        queues = _check_queues(queue or [])
        st: AppState = ctx.obj
        settings = st.settings
        broker = broker_url or ClusterSettings.from_env().broker_url
        if not broker:
            raise UsageError(
                "opsbook worker needs a broker: --broker-url or OPSBOOK_BROKER_URL",
                field="--broker-url",
                hint=BROKER_HINT,
            )
        scheme = broker.split("://", 1)[0] if "://" in broker else ""
        if scheme not in BROKER_SCHEMES:
            shown = f"{scheme}://…" if scheme else "a value without a scheme"
            raise UsageError(
                f"--broker-url must be a redis:// or amqp:// URL, not {shown}",
                field="--broker-url",
                hint=BROKER_HINT,
            )
        ws = st.workspace()
        ws.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        return run_worker(
            workspace=ws,
            settings=settings,
            queues=queues,
            concurrency=concurrency,
            name=name,
            database_url=database_url or settings.database_url_for(ws.state_dir),
            broker_url=broker,
            drain_seconds=drain_seconds,
            metrics_port=metrics_port,
        )

    group = typer.Typer(help="Workers and server replicas.", no_args_is_help=True)
    app.add_typer(group, name="workers")

    @group.command("list")
    def list_cmd(
        ctx: typer.Context,
        all_rows: Annotated[
            bool, typer.Option("--all", help="Also stopped and dead workers")
        ] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Every live worker and replica: queues, busy slots, heartbeat age, state and the
        runs it executes (--all adds stopped and dead ones)."""
        from opsbook.cluster.registry import list_workers  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        try:
            rows = [_as_dict(w) for w in list_workers(db=db, include_ended=all_rows)]
        finally:
            db.close()
        if json_out:
            print_json({"workers": rows})
            return
        if not rows:
            typer.echo(
                "no workers"
                + ("" if all_rows else " alive (--all shows stopped and dead ones)")
                + ": start one with `opsbook worker -q QUEUE`"
            )
            return
        from rich.table import Table  # noqa: PLC0415

        table = Table(box=None, pad_edge=False)
        for col in ("WORKER", "KIND", "HOST", "QUEUES", "SLOTS", "HEARTBEAT", "STATE", "RUNNING"):
            table.add_column(col, no_wrap=col != "RUNNING")
        for w in rows:
            running = w.get("running") or []
            table.add_row(
                str(w.get("name")),
                str(w.get("kind")),
                str(w.get("host")),
                ",".join(w.get("queues") or []) or "-",
                f"{len(running)}/{w.get('concurrency')}",
                _age(w.get("heartbeat_age_s")),
                str(w.get("state")),
                "\n".join(_running(r) for r in running) or "-",
            )
        table_console().print(table)


def _as_dict(worker: Any) -> dict[str, Any]:
    if hasattr(worker, "to_dict"):
        return dict(worker.to_dict())
    return dict(worker)
