"""`opsbook access`: just-in-time privileged access (request, approve, revoke, grants, show,
expire) and access review campaigns (`opsbook access review start|list|show|decide|close`),
over opsbook.secops.jit and opsbook.secops.access."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json

AsOpt = Annotated[str | None, typer.Option("--as", help="Who does it (audited)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
GrantArg = Annotated[str, typer.Argument(help="Grant id, e.g. JIT-3")]
CampaignArg = Annotated[str, typer.Argument(help="Campaign id, e.g. AR-1")]


def _grant_line(g: dict[str, Any]) -> str:
    until = f" until {g['expires_at'][:19]}Z" if g["expires_at"] else ""
    by = f" approved by {g['approved_by']}" if g["approved_by"] else ""
    return f"{g['ref']:<7} {g['state']:<8} {g['username']} as {g['role']}{until}{by}: {g['reason']}"


def _roles_of(ws: Any, db: Any, user: str) -> tuple[str, ...]:
    from opsbook.users.access import roles_resolver  # noqa: PLC0415

    return roles_resolver(db=db, fallback=ws.roles_of)(user)


def register(app: typer.Typer) -> None:
    acc = typer.Typer(
        help="Privileged access just in time, and access review campaigns.", no_args_is_help=True
    )
    app.add_typer(acc, name="access")
    review = typer.Typer(help="Access review campaigns (PCI DSS 7.2.4).", no_args_is_help=True)
    acc.add_typer(review, name="review")

    @acc.command("request")
    def request_cmd(
        ctx: typer.Context,
        role: Annotated[str, typer.Option("--role", help="The role wanted, e.g. admin")],
        duration: Annotated[str, typer.Option("--for", help="For how long, e.g. 1h")],
        reason: Annotated[
            str | None, typer.Option("--reason", help="Why (an incident or change, required)")
        ] = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Ask for a role for a while; a second person approves it."""
        from opsbook.durations import DURATION_HINT, parse_duration  # noqa: PLC0415
        from opsbook.errors import ValidationError  # noqa: PLC0415
        from opsbook.secops import jit  # noqa: PLC0415
        from opsbook.secops.settings import load_security_settings  # noqa: PLC0415
        from opsbook.users.accounts import known_roles  # noqa: PLC0415

        try:
            seconds = parse_duration(duration)
        except ValueError:
            raise ValidationError(
                f"--for {duration!r} is not a duration", field="--for", hint=DURATION_HINT
            ) from None
        st: AppState = ctx.obj
        ws = st.workspace()
        cfg = load_security_settings(ws)
        db = open_db(ws, st.settings)
        try:
            g = jit.request(
                db,
                username=st.user(as_user),
                role=role,
                duration_s=seconds,
                reason=reason,
                known_roles=known_roles(workspace_config=ws.config),
                settings=cfg,
            )
        finally:
            db.close()
        if json_out:
            print_json(g)
        else:
            typer.echo(
                f"{g['ref']}: {g['username']} asks for {g['role']} for {duration};"
                f" a second person approves: opsbook access approve {g['ref']}"
            )

    @acc.command("approve")
    def approve_cmd(
        ctx: typer.Context, grant: GrantArg, as_user: AsOpt = None, json_out: JsonOpt = False
    ) -> None:
        """Approve a request (not your own); the role counts from now until it expires."""
        from opsbook.secops import jit  # noqa: PLC0415
        from opsbook.secops.settings import load_security_settings  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        cfg = load_security_settings(ws)
        db = open_db(ws, st.settings)
        user = st.user(as_user)
        try:
            g = jit.approve(
                db, grant=grant, actor=user, roles=_roles_of(ws, db, user), settings=cfg
            )
        finally:
            db.close()
        if json_out:
            print_json(g)
        else:
            typer.echo(_grant_line(g))

    @acc.command("revoke")
    def revoke_cmd(
        ctx: typer.Context, grant: GrantArg, as_user: AsOpt = None, json_out: JsonOpt = False
    ) -> None:
        """End an active grant now, or turn down a pending request."""
        from opsbook.secops import jit  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            g = jit.revoke(db, grant=grant, actor=st.user(as_user))
        finally:
            db.close()
        if json_out:
            print_json(g)
        else:
            typer.echo(_grant_line(g))

    @acc.command("grants")
    def grants_cmd(
        ctx: typer.Context,
        user: Annotated[str | None, typer.Option("--user", help="Only this person")] = None,
        state: Annotated[
            str | None, typer.Option("--state", help="pending, active, expired, revoked")
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Just-in-time grants, newest first (expired ones are closed first)."""
        from opsbook.secops import jit  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            jit.expire(db)
            rows = jit.list_grants(db, username=user, state=state)
        finally:
            db.close()
        if json_out:
            print_json({"grants": rows})
            return
        for g in rows:
            typer.echo(_grant_line(g))
        if not rows:
            typer.echo("no grants")

    @acc.command("show")
    def show_cmd(ctx: typer.Context, grant: GrantArg, json_out: JsonOpt = False) -> None:
        """One grant and the audit records its holder wrote under it."""
        from opsbook.secops import jit  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            jit.expire(db)
            g = jit.get(db, grant)
            g["records_under_grant"] = jit.records_under(db, grant)
        finally:
            db.close()
        if json_out:
            print_json(g)
            return
        typer.echo(_grant_line(g))
        for r in g["records_under_grant"]:
            typer.echo(f"  #{r['id']} {r['ts'][:19]}Z {r['action']} {r['subject']}")

    @acc.command("expire")
    def expire_cmd(ctx: typer.Context, json_out: JsonOpt = False) -> None:
        """Close grants whose time is up (they stopped counting at their expiry already)."""
        from opsbook.secops import jit  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            closed = jit.expire(db)
        finally:
            db.close()
        if json_out:
            print_json({"expired": closed})
        else:
            typer.echo(f"expired: {', '.join(closed) or 'none'}")

    @review.command("start")
    def review_start(
        ctx: typer.Context,
        reviewer: Annotated[
            list[str], typer.Option("--reviewer", help="Who reviews (repeat; never their own)")
        ],
        name: Annotated[str | None, typer.Option("--name", help="e.g. 2026-Q4")] = None,
        env: Annotated[str | None, typer.Option("--env", "-e", help="Environment")] = None,
        imports: Annotated[
            list[str] | None,
            typer.Option("--import", help="k8s=FILE or azure=FILE (recorded exports; repeat)"),
        ] = None,
        due_days: Annotated[int, typer.Option("--due-days", help="Days to finish")] = 14,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """List every grant for a reviewer: opsbook roles and tokens, the sandbox's database
        roles, and imported Kubernetes/Azure exports."""
        from datetime import UTC, datetime  # noqa: PLC0415

        from opsbook.errors import ValidationError  # noqa: PLC0415
        from opsbook.secops import access  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        environment = env or ws.default_environment
        grants: list[access.Grant] = []
        for spec in imports or []:
            kind, _, path = spec.partition("=")
            if kind not in ("k8s", "azure") or not path:
                raise ValidationError(
                    f"--import {spec!r}: write k8s=FILE or azure=FILE", field="--import"
                )
            p = Path(path)
            grants += access.kubernetes_grants(p) if kind == "k8s" else access.azure_grants(p)
        db = open_db(ws, st.settings)
        try:
            now = datetime.now(UTC)
            grants = access.opsbook_grants(db, now=now) + _sandbox(ws, environment) + grants
            c = access.start(
                db,
                name=name or f"{now.year}-Q{(now.month - 1) // 3 + 1} {environment}",
                environment=environment,
                reviewers=reviewer,
                actor=st.user(as_user),
                grants=grants,
                due_days=due_days,
            )
        finally:
            db.close()
        if json_out:
            print_json(c)
        else:
            typer.echo(
                f"{c['ref']} {c['name']}: {len(c['items'])} grants to review by"
                f" {c['due_at'][:10]} (opsbook access review show {c['ref']})"
            )

    @review.command("list")
    def review_list(ctx: typer.Context, json_out: JsonOpt = False) -> None:
        """Campaigns, newest first."""
        from opsbook.secops import access  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            rows = access.list_campaigns(db)
        finally:
            db.close()
        if json_out:
            print_json({"campaigns": rows})
            return
        for c in rows:
            typer.echo(
                f"{c['ref']:<6} {c['state']:<7} {c['name']:<24} {c['items']} grants,"
                f" {c['pending']} undecided, due {c['due_at'][:10]}"
            )
        if not rows:
            typer.echo("no access reviews yet: opsbook access review start --reviewer NAME")

    @review.command("show")
    def review_show(ctx: typer.Context, campaign: CampaignArg, json_out: JsonOpt = False) -> None:
        """A campaign's grants, reviewers and decisions."""
        from opsbook.secops import access  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            c = access.get(db, campaign)
        finally:
            db.close()
        if json_out:
            print_json(c)
            return
        typer.echo(f"{c['ref']} {c['name']} ({c['state']}), {c['pending']} undecided")
        for it in c["items"]:
            decided = it["decision"] or "?"
            applied = f" -> {it['apply_result']}" if it["apply_result"] else ""
            typer.echo(
                f"  {it['id']:>4} {decided:<6} {it['kind']:<16} {it['principal']:<22}"
                f" {it['grant_name']}  [{it['reviewer']}]{applied}"
            )

    @review.command("decide")
    def review_decide(
        ctx: typer.Context,
        campaign: CampaignArg,
        item: Annotated[int, typer.Argument(help="The item number (review show)")],
        keep: Annotated[bool, typer.Option("--keep", help="The grant is still needed")] = False,
        revoke: Annotated[bool, typer.Option("--revoke", help="Remove the grant")] = False,
        note: Annotated[str | None, typer.Option("--note", help="Why")] = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Keep or revoke one grant (its reviewer only, never your own)."""
        from opsbook.errors import UsageError  # noqa: PLC0415
        from opsbook.secops import access  # noqa: PLC0415

        if keep == revoke:
            raise UsageError("say --keep or --revoke", field="decision")
        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            c = access.decide(
                db,
                campaign=campaign,
                item=item,
                decision="keep" if keep else "revoke",
                actor=st.user(as_user),
                note=note,
            )
        finally:
            db.close()
        if json_out:
            print_json(c)
        else:
            typer.echo(
                f"{c['ref']}: item {item} {'kept' if keep else 'to revoke'};"
                f" {c['pending']} undecided"
            )

    @review.command("close")
    def review_close(
        ctx: typer.Context, campaign: CampaignArg, as_user: AsOpt = None, json_out: JsonOpt = False
    ) -> None:
        """Apply the revocations and close the campaign (its result is evidence)."""
        from opsbook.secops import access  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            c = access.get(db, campaign)
            c = access.close(
                db,
                campaign=campaign,
                actor=st.user(as_user),
                data_dir=_data_dir(ws, c["environment"]),
            )
        finally:
            db.close()
        if json_out:
            print_json(c)
            return
        r = c["result"]
        typer.echo(f"{c['ref']} closed: {r['kept']} kept, {r['revoked']} revoked")
        for a in r["applied"]:
            typer.echo(f"  {a['principal']}: {a['result']}")


def _data_dir(ws: Any, environment: str) -> Path | None:
    from opsbook.workspace import load_environment  # noqa: PLC0415

    env = load_environment(ws, environment)
    if env.platform != "local":
        return None
    from opsbook.sandbox.lifecycle import load_config  # noqa: PLC0415

    return load_config(workspace=ws, env_name=environment).data_path


def _sandbox(ws: Any, environment: str) -> list[Any]:
    from opsbook.secops import access  # noqa: PLC0415

    data_dir = _data_dir(ws, environment)
    return access.sandbox_grants(data_dir) if data_dir is not None else []
