"""`opsbook diagnose [SERVICE | --alert ID | --incident REF]`: what is wrong and what to run,
with the evidence (opsbook.troubleshoot)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json


def _print(d: dict[str, Any]) -> None:
    top = d.get("top")
    env = d["environment"]
    if top is None:
        typer.echo(
            f"nothing found wrong on {env} ({d['took_ms'] / 1000:.1f} s):"
            " no cause above low confidence"
        )
    else:
        where = f" on {top['service']}" if top.get("service") else ""
        typer.echo(f"{top['confidence'].upper()}: {top['cause']}{where}: {top['title']}")
        for e in top["evidence"]:
            typer.echo(f"  - [{e['source']}] {e['text']}")
        params = "".join(f" -p {k}={v}" for k, v in top["params"].items())
        typer.echo(f"fix: opsbook run {top['procedure']}{params} --env {env}")
    others = [h for h in d["hypotheses"] if top is None or h is not d["hypotheses"][0]]
    if top is not None:
        others = d["hypotheses"][1:]
    if others:
        typer.echo("other causes:")
        for h in others[:5]:
            where = f" on {h['service']}" if h.get("service") else ""
            typer.echo(f"  {h['confidence']:<6} {h['cause']}{where}: {h['title']}")
    failed = {k: v for k, v in d["sources"].items() if not v["ok"]}
    for name, src in failed.items():
        typer.echo(f"not read: {name}: {src['error']}")
    changes = list(d["facts"].get("changes") or [])[:5]
    if changes:
        typer.echo("what changed (newest first):")
        for c in changes:
            typer.echo(f"  {c.get('ts') or 'now':<20} {c['kind']:<14} {c['text']}")
    if d.get("bundle"):
        typer.echo(f"bundle: {d['bundle']}  (diagnosis {d['id']})")


def register(app: typer.Typer) -> None:
    @app.command("diagnose")
    def diagnose_cmd(
        ctx: typer.Context,
        service: Annotated[str | None, typer.Argument(help="The service to focus on")] = None,
        alert: Annotated[
            str | None, typer.Option("--alert", help="An alert's id or fingerprint")
        ] = None,
        incident: Annotated[
            str | None, typer.Option("--incident", help="An incident, e.g. INC-3")
        ] = None,
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
        ] = None,
        bundle_dir: Annotated[
            Path | None,
            typer.Option("--bundle-dir", help="Where the bundle goes (default .opsbook/diagnoses)"),
        ] = None,
        no_bundle: Annotated[bool, typer.Option("--no-bundle", help="Write no bundle")] = False,
        verify: Annotated[
            Path | None,
            typer.Option(
                "--verify", help="Check a bundle against its manifest (exit 1 if it does not match)"
            ),
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
        as_user: Annotated[str | None, typer.Option("--as", help="Who asks (audited)")] = None,
    ) -> None:
        """Diagnose a service, alert or incident: ranked causes with their evidence and the
        procedure that fixes each. Exit 0 when it ran, whatever it found; 2 on bad input."""
        st: AppState = ctx.obj
        if verify is not None:
            from opsbook.troubleshoot.bundle import verify_bundle  # noqa: PLC0415

            result = verify_bundle(verify)
            if json_out:
                print_json(result)
            else:
                typer.echo(
                    f"{verify}: {'OK' if result['ok'] else 'DOES NOT MATCH'}: {result['files']}"
                    f" file(s), diagnosis {result['diagnosis']}"
                )
                for p in result["problems"]:
                    typer.echo(f"  {p}")
            if not result["ok"]:
                raise typer.Exit(1)
            return
        from opsbook.troubleshoot.diagnose import diagnose  # noqa: PLC0415

        ws = st.workspace()
        db = open_db(ws, st.settings)
        d = diagnose(
            workspace=ws,
            environment=env or ws.default_environment,
            service=service,
            alert=alert,
            incident=incident,
            db=db,
            bundle_dir=bundle_dir,
            write_bundle=not no_bundle,
            actor=st.user(as_user),
        ).to_dict()
        if json_out:
            print_json(d)
        else:
            _print(d)
