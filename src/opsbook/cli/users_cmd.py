"""`opsbook users add|list|disable|enable|grant|revoke|passwd` and
`opsbook tokens create|list|revoke`.

Whoever can run these has the state database in hand (and could change it directly), so the
commands act with administrative rights; every change is audited under the acting user
(``--as``, ``OPSBOOK_USER`` or the OS user).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated

import typer

from opsbook.cli._common import AppState, open_db, print_json
from opsbook.users.roles import SCOPES  # small: no imports beyond the standard library

#: What each token scope is for (a test checks every scope in SCOPES is listed).
_SCOPE_USE = {
    "read": "read runbooks, executions, monitoring, incidents",
    "alerts": "send alerts (Alertmanager's webhook)",
    "run": "start and abort runs, manage alerts and incidents",
    "approve": "approve runs",
    "audit": "read and export the audit trail",
    "admin": "manage accounts and tokens",
}
SCOPE_HELP = (
    "; ".join(f"{s}: {_SCOPE_USE.get(s, ', '.join(sorted(SCOPES[s])))}" for s in SCOPES)
    + ". Repeatable; default read"
)

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.workspace import Workspace

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Act as this user (for the audit trail)")]
NameArg = Annotated[str, typer.Argument(help="Username")]


def _known(ws: Workspace) -> tuple[str, ...]:
    from opsbook.errors import OpsbookError  # noqa: PLC0415
    from opsbook.users.accounts import known_roles  # noqa: PLC0415

    extra: list[str] = []
    try:
        from opsbook.cli._common import catalogue  # noqa: PLC0415

        for rb in catalogue(ws).runbooks:
            for p in rb.procedures:
                extra.extend(p.permissions)
                extra.extend(r for s in p.steps if s.approval for r in s.approval.roles)
    except OpsbookError:
        pass  # a broken runbook does not stop account management
    return known_roles(workspace_config=ws.config, extra=extra)


def _password(from_stdin: bool) -> tuple[str, bool]:
    """A password from stdin, or a generated one (to print once)."""
    from opsbook.users.passwords import generate_password  # noqa: PLC0415

    if from_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    return generate_password(), True


def _open(ctx: typer.Context) -> tuple[AppState, Workspace, Database]:
    st: AppState = ctx.obj
    ws = st.workspace()
    return st, ws, open_db(ws, st.settings)


def register(app: typer.Typer) -> None:
    users = typer.Typer(help="Accounts for the console and the API.", no_args_is_help=True)
    tokens = typer.Typer(help="API tokens for automation.", no_args_is_help=True)
    app.add_typer(users, name="users")
    app.add_typer(tokens, name="tokens")

    @users.command("add")
    def add(
        ctx: typer.Context,
        username: NameArg,
        role: Annotated[list[str] | None, typer.Option("--role", "-r", help="Repeatable")] = None,
        display_name: Annotated[str, typer.Option(help="Full name")] = "",
        email: Annotated[str | None, typer.Option(help="E-mail address")] = None,
        password_stdin: Annotated[
            bool, typer.Option("--password-stdin", help="Read the password from stdin")
        ] = False,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Add an account; without --password-stdin a one-time password is printed once."""
        from opsbook.users import accounts  # noqa: PLC0415

        st, ws, db = _open(ctx)
        password, generated = _password(password_stdin)
        account = accounts.create_account(
            db=db,
            actor=st.user(as_user),
            username=username,
            roles=list(role or ["viewer"]),
            known=_known(ws),
            password=password,
            display_name=display_name,
            email=email,
        )
        if json_out:
            print_json({**account.to_dict(), "password": password if generated else None})
            return
        typer.echo(f"added {account.username} ({', '.join(account.roles) or 'no roles'})")
        if generated:
            typer.echo(f"one-time password: {password}")

    @users.command("list")
    def list_(ctx: typer.Context, json_out: JsonOpt = False) -> None:
        """List accounts with their roles."""
        from opsbook.users import accounts  # noqa: PLC0415

        _, _, db = _open(ctx)
        found = accounts.list_accounts(db=db)
        if json_out:
            print_json([a.to_dict() for a in found])
            return
        for a in found:
            status = "disabled" if a.disabled else ("locked" if a.locked_until else "active")
            typer.echo(f"{a.username:<24} {status:<9} {a.source:<6} {', '.join(a.roles)}")

    @users.command("disable")
    def disable(ctx: typer.Context, username: NameArg, as_user: AsOpt = None) -> None:
        """Disable an account (signs it out everywhere; its tokens stop working)."""
        from opsbook.users import accounts  # noqa: PLC0415

        st, _, db = _open(ctx)
        accounts.set_disabled(db=db, actor=st.user(as_user), username=username, disabled=True)
        typer.echo(f"disabled {username}")

    @users.command("enable")
    def enable(ctx: typer.Context, username: NameArg, as_user: AsOpt = None) -> None:
        """Enable a disabled account again."""
        from opsbook.users import accounts  # noqa: PLC0415

        st, _, db = _open(ctx)
        accounts.set_disabled(db=db, actor=st.user(as_user), username=username, disabled=False)
        typer.echo(f"enabled {username}")

    @users.command("grant")
    def grant(
        ctx: typer.Context,
        username: NameArg,
        role: Annotated[str, typer.Argument(help="Role to grant")],
        as_user: AsOpt = None,
    ) -> None:
        """Grant a role."""
        from opsbook.users import accounts  # noqa: PLC0415

        st, ws, db = _open(ctx)
        a = accounts.grant_role(
            db=db, actor=st.user(as_user), username=username, role=role, known=_known(ws)
        )
        typer.echo(f"{a.username}: {', '.join(a.roles)}")

    @users.command("revoke")
    def revoke(
        ctx: typer.Context,
        username: NameArg,
        role: Annotated[str, typer.Argument(help="Role to revoke")],
        as_user: AsOpt = None,
    ) -> None:
        """Revoke a role."""
        from opsbook.users import accounts  # noqa: PLC0415

        st, _, db = _open(ctx)
        a = accounts.revoke_role(db=db, actor=st.user(as_user), username=username, role=role)
        typer.echo(f"{a.username}: {', '.join(a.roles) or 'no roles'}")

    @users.command("passwd")
    def passwd(
        ctx: typer.Context,
        username: NameArg,
        password_stdin: Annotated[
            bool, typer.Option("--password-stdin", help="Read the password from stdin")
        ] = False,
        as_user: AsOpt = None,
    ) -> None:
        """Set a new password (generated and printed once unless read from stdin); ends the
        account's sessions and clears a lockout."""
        from opsbook.users import accounts  # noqa: PLC0415

        st, _, db = _open(ctx)
        password, generated = _password(password_stdin)
        accounts.set_password(db=db, actor=st.user(as_user), username=username, password=password)
        typer.echo(f"password of {username} changed")
        if generated:
            typer.echo(f"one-time password: {password}")

    @tokens.command("create")
    def create(
        ctx: typer.Context,
        user: Annotated[str, typer.Option("--user", "-u", help="Whose token")],
        name: Annotated[str, typer.Option("--name", "-n", help="What it is for")],
        scope: Annotated[
            list[str] | None,
            typer.Option("--scope", "-s", help=SCOPE_HELP),
        ] = None,
        expires_days: Annotated[int, typer.Option(help="Days until it expires (max 366)")] = 90,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Create an API token; the secret is printed once and stored only as a hash."""
        from opsbook.users import tokens as svc  # noqa: PLC0415

        st, _, db = _open(ctx)
        token, secret = svc.create_token(
            db=db,
            actor=st.user(as_user),
            username=user,
            name=name,
            scopes=list(scope or ["read"]),
            expires_in_days=expires_days,
        )
        if json_out:
            print_json({**token.to_dict(), "token": secret})
            return
        typer.echo(f"token {token.id} for {token.username} ({', '.join(token.scopes)}), ", nl=False)
        typer.echo(f"expires {token.expires_at[:10]}")
        typer.echo(secret)

    @tokens.command("list")
    def list_tokens(
        ctx: typer.Context,
        user: Annotated[str | None, typer.Option("--user", "-u", help="Only this user's")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """List tokens (never their secrets)."""
        from opsbook.users import tokens as svc  # noqa: PLC0415

        _, _, db = _open(ctx)
        found = svc.list_tokens(db=db, username=user)
        if json_out:
            print_json([t.to_dict() for t in found])
            return
        for t in found:
            status = "revoked" if t.revoked_at else f"expires {t.expires_at[:10]}"
            typer.echo(f"{t.id}  {t.username:<20} {t.name:<24} {','.join(t.scopes):<16} {status}")

    @tokens.command("revoke")
    def revoke_token(
        ctx: typer.Context,
        token_id: Annotated[str, typer.Argument(help="Token id (the part after obk_)")],
        as_user: AsOpt = None,
    ) -> None:
        """Revoke a token at once."""
        from opsbook.users import tokens as svc  # noqa: PLC0415

        st, _, db = _open(ctx)
        t = svc.revoke_token(db=db, actor=st.user(as_user), token_id=token_id)
        typer.echo(f"revoked {t.id} ({t.name}) of {t.username}")
