"""`opsbook known-errors list|show|add|confirm|retire|from-review`: symptom → cause → fix
records that diagnosis ranks first (opsbook.troubleshoot.known_errors)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Who does it (audited)")]


def _line(k: dict[str, Any]) -> str:
    where = f" on {k['service']}" if k.get("service") else ""
    retired = "  (retired)" if k.get("retired_at") else ""
    return (
        f"{k['id']}  {k['cause']}{where}  confirmed {k['confirmed']}x  {k['title']}"
        f"  → {k['procedure']}{retired}"
    )


def _show(k: dict[str, Any]) -> None:
    typer.echo(_line(k))
    typer.echo(f"  source: {k['source']} {k.get('source_ref') or ''}".rstrip())
    typer.echo(f"  created by {k['created_by']} at {k['created_at']}")
    if k.get("last_confirmed_at"):
        typer.echo(f"  last confirmed at {k['last_confirmed_at']}")
    typer.echo("  symptoms:")
    for s in k["symptoms"]:
        typer.echo(f"    {json.dumps(s, ensure_ascii=False)}")
    params = "".join(f" -p {a}={b}" for a, b in k["params"].items())
    typer.echo(f"  fix: opsbook run {k['procedure']}{params}")


def _symptoms(text: str | None, file: Path | None) -> object:
    from opsbook.errors import ValidationError  # noqa: PLC0415

    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ValidationError(f"cannot read {file}: {exc}", field="symptoms") from exc
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(
            f"symptoms are not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            field="symptoms",
            hint='--symptoms \'[{"log": "worker exited"}]\'',
        ) from exc


def register(app: typer.Typer) -> None:
    ke_app = typer.Typer(
        help="Known errors: symptom, cause and fix records that diagnosis ranks first.",
        no_args_is_help=True,
    )
    app.add_typer(ke_app, name="known-errors")

    @ke_app.command("list")
    def list_cmd(
        ctx: typer.Context,
        retired: Annotated[bool, typer.Option("--retired", help="Include retired ones")] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """The known errors, retired ones only with --retired."""
        from opsbook.troubleshoot import known_errors as ke  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        items = ke.list_known_errors(db=db, include_retired=retired)
        if json_out:
            print_json({"items": items})
            return
        if not items:
            typer.echo("no known errors yet (opsbook known-errors add, confirm or from-review)")
        for k in items:
            typer.echo(_line(k))

    @ke_app.command("show")
    def show_cmd(
        ctx: typer.Context,
        known_error: Annotated[str, typer.Argument(help="A known error's id, ke-…")],
        json_out: JsonOpt = False,
    ) -> None:
        """One known error: its symptoms, cause, fix and where it came from."""
        from opsbook.troubleshoot import known_errors as ke  # noqa: PLC0415

        st: AppState = ctx.obj
        k = ke.get(db=open_db(st.workspace(), st.settings), known_error_id=known_error)
        if json_out:
            print_json(k)
        else:
            _show(k)

    @ke_app.command("add")
    def add_cmd(
        ctx: typer.Context,
        title: Annotated[str, typer.Option("--title", help="What it is, in a line")],
        cause: Annotated[str, typer.Option("--cause", help="crash, latency, disk-full…")],
        symptoms: Annotated[
            str | None,
            typer.Option("--symptoms", help='JSON list of matchers, e.g. [{"log": "exited"}]'),
        ] = None,
        symptoms_file: Annotated[
            Path | None, typer.Option("--symptoms-file", help="The matchers from a JSON file")
        ] = None,
        service: Annotated[str | None, typer.Option("--service", help="The service")] = None,
        procedure: Annotated[
            str | None, typer.Option("--procedure", help="RUNBOOK#PROCEDURE (default: the cause's)")
        ] = None,
        json_out: JsonOpt = False,
        as_user: AsOpt = None,
    ) -> None:
        """Record a known error by hand."""
        from opsbook.errors import ValidationError  # noqa: PLC0415
        from opsbook.troubleshoot import known_errors as ke  # noqa: PLC0415

        st: AppState = ctx.obj
        parsed = _symptoms(symptoms, symptoms_file)
        if parsed is None:
            raise ValidationError(
                "give the symptoms", field="symptoms", hint='--symptoms \'[{"log": "exited"}]\''
            )
        db = open_db(st.workspace(), st.settings)
        with db.transaction():
            k = ke.create(
                db=db,
                actor=st.user(as_user),
                title=title,
                cause=cause,
                symptoms=parsed,
                service=service,
                procedure=procedure,
            )
        if json_out:
            print_json(k)
        else:
            typer.echo(f"recorded {_line(k)}")

    @ke_app.command("confirm")
    def confirm_cmd(
        ctx: typer.Context,
        diagnosis: Annotated[str, typer.Argument(help="The diagnosis, dg-…")],
        execution: Annotated[str, typer.Argument(help="The execution that ran its fix")],
        json_out: JsonOpt = False,
        as_user: AsOpt = None,
    ) -> None:
        """A diagnosis confirmed by a successful run of its fix: makes or strengthens the
        known error. Exit 2 when the execution failed or ran something else."""
        from opsbook.troubleshoot import known_errors as ke  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        with db.transaction():
            k = ke.confirm_from_fix(
                db=db, actor=st.user(as_user), diagnosis_id=diagnosis, execution_id=execution
            )
        if json_out:
            print_json(k)
        else:
            typer.echo(f"confirmed {_line(k)}")

    @ke_app.command("retire")
    def retire_cmd(
        ctx: typer.Context,
        known_error: Annotated[str, typer.Argument(help="A known error's id, ke-…")],
        reason: Annotated[str, typer.Option("--reason", help="Why (audited)")] = "",
        json_out: JsonOpt = False,
        as_user: AsOpt = None,
    ) -> None:
        """Stop ranking by a known error (it stays on record)."""
        from opsbook.troubleshoot import known_errors as ke  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        with db.transaction():
            k = ke.retire(db=db, actor=st.user(as_user), known_error_id=known_error, reason=reason)
        if json_out:
            print_json(k)
        else:
            typer.echo(f"retired {_line(k)}")

    @ke_app.command("from-review")
    def from_review_cmd(
        ctx: typer.Context,
        incident: Annotated[str, typer.Argument(help="The incident, e.g. INC-3")],
        action_item: Annotated[int, typer.Argument(help="The review's action item number")],
        cause: Annotated[
            str | None, typer.Option("--cause", help="Default: the incident's latest diagnosis")
        ] = None,
        symptoms: Annotated[
            str | None, typer.Option("--symptoms", help="JSON list of matchers")
        ] = None,
        json_out: JsonOpt = False,
        as_user: AsOpt = None,
    ) -> None:
        """A known error from a post-incident review action item."""
        from opsbook.troubleshoot import known_errors as ke  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        with db.transaction():
            k = ke.from_review(
                db=db,
                actor=st.user(as_user),
                incident_ref=incident,
                action_item=action_item,
                cause=cause,
                symptoms=_symptoms(symptoms, None),
            )
        if json_out:
            print_json(k)
        else:
            typer.echo(f"recorded {_line(k)}")
