"""`opsbook audit verify|export`."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from opsbook.cli._common import AppState, open_db, print_json

if TYPE_CHECKING:
    from opsbook.audit import VerifyReport, WitnessConfig

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _iso(value: str | None, flag: str) -> str | None:
    from opsbook.errors import UsageError  # noqa: PLC0415

    if value is None:
        return None
    try:
        if len(value) == 10:
            return date.fromisoformat(value).isoformat() + "T00:00:00Z"
        return (
            datetime.fromisoformat(value.replace("Z", "+00:00")).isoformat().replace("+00:00", "Z")
        )
    except ValueError as exc:
        raise UsageError(
            f"{flag} {value!r} is not a date or time",
            hint="use YYYY-MM-DD or YYYY-MM-DDTHH:MM:SSZ (UTC)",
        ) from exc


def witness_config(st: AppState) -> WitnessConfig:
    """The audit witness and key of the workspace, with the secret providers that may hold
    the key (``audit-signing-key``)."""
    from opsbook.audit import config_for  # noqa: PLC0415
    from opsbook.engine.secrets import (  # noqa: PLC0415
        EnvSecretProvider,
        FileSecretProvider,
        SecretProvider,
    )

    ws = st.workspace()
    # The providers secrets_for() uses, without a resolver: no redactor to build for one key.
    providers: list[SecretProvider] = [
        EnvSecretProvider(),
        FileSecretProvider(st.settings.secrets_dir_for(ws.state_dir)),
    ]
    return config_for(workspace_root=ws.root, settings=st.settings, providers=providers)


def sign_after_command(st: AppState) -> None:
    """Vouch for the records this command wrote (called by the CLI as the command ends)."""
    from opsbook.audit import sign_own  # noqa: PLC0415

    db = open_db(st.workspace(), st.settings)
    try:
        sign_own(db=db, cfg=witness_config(st), signer="cli")
    finally:
        db.close()


TailOpt = Annotated[
    float | None,
    typer.Option(
        "--allow-unwitnessed-tail",
        metavar="SECONDS",
        min=0,
        help="Accept records past the newest signed checkpoint if all are younger than this"
        " (a live opsbook serve signs every 100 records or 10 s)",
    ),
]


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _echo_report(report: VerifyReport) -> None:
    if report.ok:
        extra = {
            "ok": f", the newest matches signed checkpoint {report.checkpoint_id}"
            f" ({_count(report.checkpoints_checked, 'checkpoint')} checked)",
            "no-checkpoint": "",
        }.get(report.status, "")
        key = f"; audit key {report.key_id}" if report.key_id else ""
        typer.echo(f"audit chain OK: {report.checked} records verify{extra}{key}")
    elif report.first_bad_id is not None:
        typer.echo(
            f"audit chain BROKEN at record {report.first_bad_id}: {report.problem}", err=True
        )
    else:
        typer.echo(f"audit chain BROKEN: {report.problem}", err=True)
    for warning in report.warnings:
        typer.echo(f"warning: {warning}", err=True)


def register(app: typer.Typer) -> None:
    au = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
    app.add_typer(au, name="audit")

    @au.command("verify")
    def verify(ctx: typer.Context, allow_tail: TailOpt = None, json_out: JsonOpt = False) -> int:
        """Check the whole chain against the signed checkpoints; exit 1 naming the first bad
        record, or the records no signed checkpoint covers."""
        from opsbook.audit import verify as do_verify  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        report = do_verify(db=db, witness=witness_config(st), allow_unwitnessed_tail=allow_tail)
        if json_out:
            print_json(report.to_dict())
        else:
            _echo_report(report)
        return 0 if report.ok else 1

    @au.command("checkpoint")
    def checkpoint(
        ctx: typer.Context,
        accept: Annotated[
            bool,
            typer.Option(
                "--accept-unwitnessed",
                help="Vouch for the records no checkpoint covers (after reviewing them: a"
                " writer stopped before signing); recorded as audit.records.accepted",
            ),
        ] = False,
        as_user: Annotated[str | None, typer.Option("--as", help="Who accepts")] = None,
        json_out: JsonOpt = False,
    ) -> int:
        """Verify the chain, then sign a checkpoint into the witness: the first one of a
        workspace (it adopts the chain as it is), or, with --accept-unwitnessed, one vouching
        for reviewed records. Never signs a chain that does not verify."""
        from opsbook import audit  # noqa: PLC0415
        from opsbook.audit._log import take_own  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        cfg = witness_config(st)
        report = audit.verify(db=db, witness=cfg)
        accepting = accept and report.status == "unwitnessed"
        if not report.ok and not accepting:
            if json_out:
                print_json({**report.to_dict(), "signed": None})
            else:
                _echo_report(report)
                typer.echo("not signed: the chain does not verify", err=True)
            return 1
        spans = [list(r) for r in report.unwitnessed] if accepting else None
        if accepting:
            audit.record(
                db=db,
                actor=st.user(as_user),
                action="audit.records.accepted",
                subject="audit:witness",
                payload={"ranges": spans},
            )
        signed = audit.sign_checkpoint(
            db=db, cfg=cfg, signer=f"cli:{st.user(as_user)}", own=take_own(), accept=spans
        )
        if json_out:
            print_json({**report.to_dict(), "signed": signed, "witness": str(cfg.witness)})
        elif signed is None:
            typer.echo(f"nothing to sign: every record is covered ({cfg.witness})")
        else:
            note = {
                "no-checkpoint": " (the first: it adopts the chain before it as it is now)",
                "unwitnessed": " (vouching for the reviewed records)",
            }.get(report.status, "")
            typer.echo(f"signed checkpoint of record {signed} into {cfg.witness}{note}")
        return 0

    @au.command("export")
    def export(
        ctx: typer.Context,
        out: Annotated[Path, typer.Option("--out", help="Directory to write the pack to")],
        since: Annotated[str | None, typer.Option(help="From (UTC date or time)")] = None,
        until: Annotated[str | None, typer.Option(help="Until, exclusive")] = None,
        force: Annotated[
            bool, typer.Option("--force", help="Overwrite the files of a pack already in --out")
        ] = False,
        allow_tail: TailOpt = None,
        json_out: JsonOpt = False,
    ) -> int:
        """Write an evidence pack: events.jsonl, checkpoints.jsonl, audit-key.pub, SUMMARY.md,
        verify_chain.py, manifest.sha256."""
        from opsbook.audit._export import check_out_dir  # noqa: PLC0415
        from opsbook.audit._export import export as do_export  # noqa: PLC0415

        st: AppState = ctx.obj
        since_iso, until_iso = _iso(since, "--since"), _iso(until, "--until")
        check_out_dir(out, force=force)  # before anything else: a bad --out costs nothing
        db = open_db(st.workspace(), st.settings)
        res = do_export(
            db=db,
            out_dir=out,
            since=since_iso,
            until=until_iso,
            witness=witness_config(st),
            force=force,
            allow_unwitnessed_tail=allow_tail,
        )
        if json_out:
            print_json(
                {
                    "out": str(res.out_dir),
                    "records": res.records,
                    "chain_ok": res.chain_ok,
                    "files": list(res.files),
                    "problem": res.report.problem if res.report else None,
                }
            )
        else:
            typer.echo(
                f"wrote {res.records} records to {res.out_dir} "
                f"(chain {'OK' if res.chain_ok else 'BROKEN'})"
            )
            if res.report and not res.report.ok:
                typer.echo(f"chain problem: {res.report.problem}", err=True)
        return 0 if res.chain_ok else 1
