"""`opsbook backups list|show|take|verify|restore`: the backup catalogue of the sandbox ledger,
verified by restore (opsbook.backup; issue 13, first slice: SQLite)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Who does it (audited)")]
EnvOpt = Annotated[
    str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
]
IdArg = Annotated[str, typer.Argument(help="Backup id, e.g. bk-20261204T061500Z-1a2b3c")]


def _line(b: dict[str, Any]) -> str:
    verified = (
        "never verified"
        if b["verified_at"] is None
        else f"verified {b['verified_at'][:19]}Z {'OK' if b['verify_ok'] else 'FAILED'}"
    )
    n = int(b["stored_bytes"] or 0)
    size = "-" if not n else f"{n / 2**20:.1f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"
    return (
        f"{b['id']}  {b['state']:<4} {b['method']:<20} {b['retention']:<7} {size:>10}"
        f"  {b['duration_s']:.2f} s"
        f"  {len(b['copies'] or [])} copies  {verified}"
    )


def register(app: typer.Typer) -> None:
    bk = typer.Typer(
        help="Backups of the sandbox ledger: take, verify by restore, restore.",
        no_args_is_help=True,
    )
    app.add_typer(bk, name="backups")
    register_check(bk)

    @bk.command("take")
    def take_cmd(
        ctx: typer.Context,
        env: EnvOpt = None,
        retention: Annotated[
            str, typer.Option("--retention", help="daily, weekly or monthly")
        ] = "daily",
        verify: Annotated[bool, typer.Option("--verify", help="Verify it by restore too")] = False,
        kind: Annotated[
            str,
            typer.Option(
                "--type",
                help="full, diff or incr (on PostgreSQL, pgBackRest; SQLite backups are full)",
            ),
        ] = "full",
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Back up the ledger (online), compressed, encrypted and copied to the DR location.
        Exit 1 when it fails (the catalogue says why)."""
        from opsbook.backup import catalogue  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            b = catalogue.take(
                db,
                workspace=ws,
                environment=env or ws.default_environment,
                settings=st.settings,
                actor=st.user(as_user),
                retention=retention,
                kind=kind,
            )
            if verify:
                b = catalogue.verify(
                    db,
                    workspace=ws,
                    settings=st.settings,
                    backup_id=b["id"],
                    actor=st.user(as_user),
                )
        finally:
            db.close()
        if json_out:
            print_json(b)
        else:
            typer.echo(_line(b))
        if verify and not b["verify_ok"]:
            raise typer.Exit(1)

    @bk.command("verify")
    def verify_cmd(
        ctx: typer.Context,
        backup: Annotated[
            str | None, typer.Argument(help="Backup id (default: the newest)")
        ] = None,
        env: EnvOpt = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Restore a backup into a scratch database and check it: checksums, row counts
        against its manifest, the ledger invariants. Exit 1 when it does not verify."""
        from opsbook.backup import catalogue  # noqa: PLC0415
        from opsbook.errors import NotFoundError  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            if backup is None:
                found = catalogue.list_backups(
                    db, environment=env or ws.default_environment, limit=1
                )
                if not found:
                    raise NotFoundError("no backup yet", hint="opsbook backups take")
                backup = str(found[0]["id"])
            b = catalogue.verify(
                db, workspace=ws, settings=st.settings, backup_id=backup, actor=st.user(as_user)
            )
        finally:
            db.close()
        if json_out:
            print_json(b)
        else:
            typer.echo(_line(b))
            for p in (b["verify_result"] or {}).get("problems", []):
                typer.echo(f"  {p}")
        if not b["verify_ok"]:
            raise typer.Exit(1)

    @bk.command("restore")
    def restore_cmd(
        ctx: typer.Context,
        backup: IdArg,
        to: Annotated[Path, typer.Option("--to", help="A new database file to restore into")],
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Restore a backup into a new file, checked as verify does (the cut-over to it is
        the backup runbook's, with its approval)."""
        from opsbook.backup import catalogue  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            out = catalogue.restore(
                db,
                workspace=ws,
                settings=st.settings,
                backup_id=backup,
                target=to,
                actor=st.user(as_user),
            )
        finally:
            db.close()
        if json_out:
            print_json(out)
        else:
            counts = out["restored"]["counts"]
            typer.echo(
                f"restored {backup} into {to}: {counts['transfers']} transfers,"
                f" {counts['entries']} entries"
            )

    @bk.command("list")
    def list_cmd(ctx: typer.Context, env: EnvOpt = None, json_out: JsonOpt = False) -> None:
        """The catalogue, newest first."""
        from opsbook.backup import catalogue  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            rows = catalogue.list_backups(db, environment=env)
        finally:
            db.close()
        if json_out:
            print_json({"backups": rows})
            return
        for b in rows:
            typer.echo(_line(b))
        if not rows:
            typer.echo("no backups yet: opsbook backups take")

    @bk.command("show")
    def show_cmd(ctx: typer.Context, backup: IdArg, json_out: JsonOpt = False) -> None:
        """One backup: its copies, checksum, manifest and verification."""
        from opsbook.backup import catalogue  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            b = catalogue.get(db, backup)
        finally:
            db.close()
        if json_out:
            print_json(b)
            return
        typer.echo(_line(b))
        typer.echo(f"  sha256 {b['sha256']}  key {b['key_id']}  {b['method']}")
        for c in b["copies"] or []:
            typer.echo(f"  copy ({c['location']}): {c['path']}")
        if b["manifest"]:
            typer.echo(f"  manifest: {b['manifest'].get('counts')}")
        if b["error"]:
            typer.echo(f"  error: {b['error']}")
        for p in (b["verify_result"] or {}).get("problems", []):
            typer.echo(f"  problem: {p}")


def register_check(bk: typer.Typer) -> None:
    @bk.command("check")
    def check_cmd(ctx: typer.Context, env: EnvOpt = None, json_out: JsonOpt = False) -> None:
        """Backup freshness and health (Barman-style): the last backup ok, its age and size,
        the last verified restore's age, the DR copy, failed backups. Exit 1 when a critical
        check fails."""
        from opsbook.backup.health import check  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        environment = env or ws.default_environment
        db = open_db(ws, st.settings)
        try:
            checks = check(db, workspace=ws, environment=environment)
        finally:
            db.close()
        failed = [c for c in checks if c.critical and not c.ok]
        if json_out:
            print_json(
                {
                    "environment": environment,
                    "ok": not failed,
                    "checks": [c.to_dict() for c in checks],
                }
            )
        else:
            for c in checks:
                mark = "ok  " if c.ok else ("FAIL" if c.critical else "warn")
                typer.echo(f"{mark} {c.name:<28} {c.detail}")
                if not c.ok and c.hint:
                    typer.echo(f"     fix: {c.hint}")
        if failed:
            raise typer.Exit(1)
