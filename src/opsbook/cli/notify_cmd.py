"""`opsbook notify test|list` (registered by opsbook.cli.incidents_cmd)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from opsbook.cli._common import AppState, open_db, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Act as this user")]

notify_app = typer.Typer(help="Notifications: test pages, delivery records.", no_args_is_help=True)


@notify_app.command("test")
def notify_test(
    ctx: typer.Context,
    contact: Annotated[str, typer.Argument(help="Contact id or role from contacts.yaml")],
    json_out: JsonOpt = False,
    as_user: AsOpt = None,
) -> int:
    """Send a test page to CONTACT through its channels and record it."""
    from opsbook.incidents.config import load_config  # noqa: PLC0415
    from opsbook.incidents.notifications import send_test  # noqa: PLC0415

    state: AppState = ctx.obj
    ws = state.workspace()
    db = open_db(ws, state.settings)
    d = send_test(db=db, config=load_config(ws), contact=contact, actor=state.user(as_user))
    if json_out:
        print_json(d)
    else:
        sys.stdout.write(
            f"test page to {d['recipient']}: {d['outcome']}"
            + (f" by {d['channel']}" if d["channel"] else "")
            + "\n"
        )
        for a in d["attempts"]:
            sys.stdout.write(
                f"  {a['channel']} {a['target']} attempt {a['attempt']}: "
                f"{a['outcome']}{' - ' + a['error'] if a['error'] else ''}\n"
            )
    return 0 if d["outcome"] == "sent" else 1


@notify_app.command("list")
def notify_list(
    ctx: typer.Context,
    incident: Annotated[str | None, typer.Option(help="Only this incident's pages")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Notifications and every delivery attempt, newest first."""
    from opsbook.incidents.notifications import list_notifications  # noqa: PLC0415

    state: AppState = ctx.obj
    db = open_db(state.workspace(), state.settings)
    rows = list_notifications(db=db, incident=incident, limit=limit)
    if json_out:
        print_json(rows)
        return
    for n in rows:
        sys.stdout.write(
            f"{n['id']} {n['incident'] or '-'} {n['kind']} {n['recipient']}: "
            f"{n['state']} {n['channel'] or ''}\n"
        )
