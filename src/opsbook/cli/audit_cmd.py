"""`opsbook audit verify|export`."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path
from typing import Annotated

import typer

from opsbook.cli._common import AppState, open_db, print_json

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


def register(app: typer.Typer) -> None:
    au = typer.Typer(help="The hash-chained audit trail.", no_args_is_help=True)
    app.add_typer(au, name="audit")

    @au.command("verify")
    def verify(ctx: typer.Context, json_out: JsonOpt = False) -> int:
        """Check the whole chain; exit 1 naming the first bad record."""
        from opsbook.audit import verify as do_verify  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        report = do_verify(db=db)
        if json_out:
            print_json(report.to_dict())
        elif report.ok:
            typer.echo(f"audit chain OK: {report.checked} records verify")
        else:
            typer.echo(
                f"audit chain BROKEN at record {report.first_bad_id}: {report.problem}", err=True
            )
        return 0 if report.ok else 1

    @au.command("export")
    def export(
        ctx: typer.Context,
        out: Annotated[Path, typer.Option("--out", help="Directory to write the pack to")],
        since: Annotated[str | None, typer.Option(help="From (UTC date or time)")] = None,
        until: Annotated[str | None, typer.Option(help="Until, exclusive")] = None,
        json_out: JsonOpt = False,
    ) -> int:
        """Write an evidence pack: events.jsonl, SUMMARY.md, verify_chain.py, manifest."""
        from opsbook.audit._export import export as do_export  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        res = do_export(
            db=db, out_dir=out, since=_iso(since, "--since"), until=_iso(until, "--until")
        )
        if json_out:
            print_json(
                {
                    "out": str(res.out_dir),
                    "records": res.records,
                    "chain_ok": res.chain_ok,
                    "files": list(res.files),
                }
            )
        else:
            typer.echo(
                f"wrote {res.records} records to {res.out_dir} "
                f"(chain {'OK' if res.chain_ok else 'BROKEN'})"
            )
        return 0 if res.chain_ok else 1
