"""`opsbook deploy SERVICE VERSION --strategy rolling|blue-green|canary --ticket CHG-123`
(issue 11). It starts runbook 03's procedure ``deployment-procedures#release``, so the
deployment is journaled, approved and audited like any other run: the change record opens (or is
refused: a freeze window, no testing evidence, another deployment of the service), a second
engineer approves, the rollout runs with its analysis and promotes or returns all traffic to
the running version by itself. Bad input is refused before anything starts (exit 2)."""

from __future__ import annotations

from typing import Annotated

import typer

from opsbook.cli._common import AppState, open_db

PROCEDURE = "deployment-procedures#release"


def register(app: typer.Typer) -> None:
    @app.command("deploy")
    def deploy(
        ctx: typer.Context,
        service: Annotated[str, typer.Argument(help="The service: account, payment, …")],
        version: Annotated[str, typer.Argument(help="The release, e.g. 1.5.0")],
        ticket: Annotated[str, typer.Option("--ticket", help="The change ticket, CHG-123")],
        strategy: Annotated[
            str, typer.Option("--strategy", help="rolling, blue-green or canary")
        ] = "canary",
        reason: Annotated[
            str | None, typer.Option("--reason", help="Why (default: deploy VERSION)")
        ] = None,
        security_impact: Annotated[
            str | None, typer.Option("--security-impact", help="The change's security impact")
        ] = None,
        backout: Annotated[
            str | None, typer.Option("--backout", help="The back-out plan (default: rollback)")
        ] = None,
        emergency: Annotated[
            bool,
            typer.Option(
                "--emergency",
                help="An emergency change: allowed in a freeze window, needs a second approval",
            ),
        ] = False,
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
        ] = None,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Show what would run (Kubernetes: the commands)")
        ] = False,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Confirm the high-risk run")] = False,
        as_user: Annotated[str | None, typer.Option("--as", help="Act as this user")] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    ) -> int:
        """Deploy a release with a strategy; analysis promotes it or rolls it back. Exit 3 while
        it waits for the approval."""
        from opsbook.cli.run_cmd import start_procedure  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        env_name = env or ws.default_environment
        check(
            ctx,
            service=service,
            version=version,
            strategy=strategy,
            ticket=ticket,
            env=env_name,
            emergency=emergency,
            dry_run=dry_run,
        )
        params = [
            f"service={service}",
            f"version={version}",
            f"strategy={strategy}",
            f"ticket={ticket}",
            f"reason={reason or f'deploy {service} {version}'}",
            f"emergency={'true' if emergency else 'false'}",
        ]
        if security_impact:
            params.append(f"security_impact={security_impact}")
        if backout:
            params.append(f"backout={backout}")
        return start_procedure(
            ctx,
            ref=PROCEDURE,
            env=env_name,
            param=params,
            dry_run=dry_run,
            yes=yes,
            json_out=json_out,
            as_user=as_user,
            no_feedback=True,
        )


def check(
    ctx: typer.Context,
    *,
    service: str,
    version: str,
    strategy: str,
    ticket: str,
    env: str,
    emergency: bool,
    dry_run: bool,
) -> None:
    """Refuse before anything starts: an unknown service or version, a bad strategy or ticket,
    an overlapping deployment, a freeze window (unless --emergency). The same checks run again
    in the procedure's first step (a run started from the runbook gets them too)."""
    import re  # noqa: PLC0415

    from opsbook.actions.deploy import active_freezes  # noqa: PLC0415
    from opsbook.deploy import records  # noqa: PLC0415
    from opsbook.deploy.rollout import STRATEGIES  # noqa: PLC0415
    from opsbook.errors import ConflictError, UsageError  # noqa: PLC0415
    from opsbook.platforms.base import service_names  # noqa: PLC0415
    from opsbook.workspace import load_environment  # noqa: PLC0415

    st: AppState = ctx.obj
    ws = st.workspace()
    environment = load_environment(ws, env)
    if strategy not in STRATEGIES:
        raise UsageError(
            f"--strategy must be one of {', '.join(STRATEGIES)}, not {strategy!r}",
            field="--strategy",
        )
    if not re.fullmatch(r"CHG-[0-9]+", ticket):
        raise UsageError(
            f"--ticket must be a change ticket such as CHG-123, not {ticket!r}", field="--ticket"
        )
    known = service_names(environment.data)
    if service not in known:
        raise UsageError(
            f"{env} has no service {service!r}",
            field="SERVICE",
            hint=f"services: {', '.join(known)}",
        )
    if environment.platform == "local":
        from opsbook.sandbox.releases import release_of  # noqa: PLC0415

        release_of(service, version)
    elif not re.fullmatch(r"[0-9]+\.[0-9]+\.[0-9]+", version):
        raise UsageError(f"VERSION must look like 1.5.0, not {version!r}", field="VERSION")
    from opsbook.deploy import config  # noqa: PLC0415

    config.load(ws.root / "deployments.yaml")  # a broken file: exit 2 with file:line, first
    if dry_run:
        return
    db = open_db(ws, st.settings)
    try:
        records.refuse_overlap(db, environment=env, service=service, version=version)
    finally:
        db.close()
    freezes = active_freezes(ws.root)
    if freezes and not emergency:
        names = ", ".join(str(f.get("name")) for f in freezes)
        raise ConflictError(
            f"{service} {version} is inside the change freeze {names}: refused; nothing was "
            "changed",
            hint="wait until it ends (opsbook releases calendar), or make it an emergency "
            "change: --emergency (it needs a second approval)",
        )
