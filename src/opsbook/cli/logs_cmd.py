"""`opsbook logs search|trace`: search the sandbox's service logs and follow one request across
gateway, services, payment network and ledger (opsbook.troubleshoot.logsearch)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated

import typer

from opsbook.cli._common import AppState, print_json

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="The sandbox environment")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _when(text: str | None, field: str) -> datetime | None:
    from opsbook.durations import DURATION_HINT, duration_seconds  # noqa: PLC0415
    from opsbook.errors import UsageError  # noqa: PLC0415

    if not text:
        return None
    try:
        return datetime.now(UTC) - timedelta(seconds=duration_seconds(text))
    except ValueError:
        pass
    try:
        at = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{field} {text!r} is neither a duration nor a time",
            field=field,
            hint=f"{DURATION_HINT}, or an RFC 3339 time such as 2026-12-04T01:00:00Z",
        ) from None
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _logs(st: AppState, env: str) -> tuple[Path, str]:
    from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415

    cfg = load_config(workspace=st.workspace(), env_name=env)
    return cfg.data_path / "logs", cfg.database_url


def register(app: typer.Typer) -> None:
    logs = typer.Typer(
        help="Logs: search and trace requests across the sandbox's services.", no_args_is_help=True
    )
    app.add_typer(logs, name="logs")

    @logs.command("search")
    def search_cmd(
        ctx: typer.Context,
        query: Annotated[str, typer.Argument(help="e.g. 'service=payment level>=warning'")],
        since: Annotated[str, typer.Option("--since", help="15m, 2h, or a time")] = "15m",
        until: Annotated[
            str | None, typer.Option("--until", help="a duration ago or a time")
        ] = None,
        limit: Annotated[int, typer.Option("--limit", min=1, max=10000)] = 50,
        env: EnvOpt = "sandbox",
        json_out: JsonOpt = False,
    ) -> None:
        """Log lines matching every term, newest first."""
        from opsbook.troubleshoot.logsearch import search  # noqa: PLC0415

        st: AppState = ctx.obj
        log_dir, _ = _logs(st, env)
        found = search(
            log_dir=log_dir,
            query=query,
            since=_when(since, "--since"),
            until=_when(until, "--until"),
            limit=limit,
        )
        if json_out:
            print_json(found.to_dict())
            return
        for x in found.hits:
            what = x.get("error") or x.get("message") or ""
            status = f" {x.get('status')}" if x.get("status") else ""
            typer.echo(
                f"{str(x.get('ts'))[:23]} {x.get('service')!s:<13} {x.get('level')!s:<8}"
                f" {x.get('event')}{status} {x.get('path') or ''} {str(what)[:80]}"
                f"  [{x.get('request_id') or '-'}]"
            )
        typer.echo(
            f"{found.matched} line(s) matched in {found.files} file(s)"
            + (f", newest {len(found.hits)} shown" if found.matched > len(found.hits) else "")
        )

    @logs.command("trace")
    def trace_cmd(
        ctx: typer.Context,
        request_id: Annotated[str, typer.Argument(help="The request id (x-request-id)")],
        env: EnvOpt = "sandbox",
        json_out: JsonOpt = False,
    ) -> None:
        """A request's path through gateway, services, payment network and ledger."""
        from opsbook.troubleshoot.logsearch import trace  # noqa: PLC0415

        st: AppState = ctx.obj
        log_dir, ledger = _logs(st, env)
        t = trace(log_dir=log_dir, request_id=request_id, ledger_url=ledger)
        if json_out:
            print_json(t)
            return
        typer.echo(f"request {request_id}")
        for e in t["events"]:
            took = f" {e['duration_ms']} ms" if e.get("duration_ms") is not None else ""
            status = f" {e['status']}" if e.get("status") else ""
            typer.echo(
                f"  +{e['offset_ms']:>8.1f} ms  {e['service']!s:<16} {e['event']}"
                f" {e.get('path') or ''}{status}{took} {e.get('error') or ''}".rstrip()
            )
        for r in t["ledger"]:
            typer.echo(
                f"  ledger {r['table']} {r.get('id')}: {r.get('status')} {r.get('amount_cents')}"
                " cents"
            )
