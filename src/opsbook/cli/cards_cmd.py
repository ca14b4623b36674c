"""`opsbook card contacts|system|commands|escalation`: quick reference cards in the terminal,
as JSON, or as a printable HTML page or PDF (opsbook.lifecycle.cards)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from opsbook.cli._common import AppState, print_json


def register(app: typer.Typer) -> None:
    @app.command("card")
    def card(
        ctx: typer.Context,
        kind: Annotated[str, typer.Argument(help="contacts, system, commands or escalation")],
        env: Annotated[
            str | None,
            typer.Option("--env", "-e", help="system/commands: one environment (default: all)"),
        ] = None,
        html_out: Annotated[
            Path | None, typer.Option("--html", help="Write a printable HTML page here")
        ] = None,
        pdf_out: Annotated[
            Path | None, typer.Option("--pdf", help="Write a PDF here (headless Chromium)")
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    ) -> None:
        """Quick reference cards: contacts, system, commands, escalation."""
        from opsbook.lifecycle import cards  # noqa: PLC0415

        st: AppState = ctx.obj
        cards.check_kind(kind)
        built = cards.build(kind, workspace=st.workspace(), environment=env)
        if html_out:
            html_out.write_text(cards.render_html(built), encoding="utf-8")
        if pdf_out:
            from opsbook.monitoring.pdf import html_to_pdf  # noqa: PLC0415

            html_to_pdf(cards.render_html(built), pdf_out)
        if json_out:
            print_json(built.to_dict())
        elif html_out or pdf_out:
            typer.echo(f"wrote {', '.join(str(p) for p in (html_out, pdf_out) if p)}")
        else:
            typer.echo(cards.render_text(built), nl=False)
