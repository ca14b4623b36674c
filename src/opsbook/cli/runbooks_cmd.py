"""`opsbook init`, `opsbook runbooks list|show|stats|feedback`, `opsbook lint`."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState, catalogue, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def register(app: typer.Typer) -> None:
    runbooks = typer.Typer(help="The runbook catalogue.", no_args_is_help=True)
    app.add_typer(runbooks, name="runbooks")
    _lifecycle(runbooks)  # stats and feedback (issue 15)

    @app.command("init")
    def init(
        ctx: typer.Context,
        directory: Annotated[Path, typer.Argument(help="Where to create the workspace")],
        force: Annotated[bool, typer.Option(help="Overwrite an existing workspace")] = False,
        role: Annotated[
            list[str] | None,
            typer.Option(
                "--role",
                help="Give the local user this role too (repeatable): approver, engineer, ...",
            ),
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Create a workspace: the six banking runbooks, environments, contacts."""
        from opsbook.workspace.init import (  # noqa: PLC0415
            check_roles,
            init_workspace,
            set_local_roles,
        )

        state: AppState = ctx.obj
        user = state.user(None)
        check_roles(role or [])  # before anything is written
        written = init_workspace(target=directory, force=force)
        if role:
            held = set_local_roles(target=directory, user=user, roles=role)
        else:
            from opsbook.workspace import Workspace  # noqa: PLC0415

            held = Workspace.load(directory).roles_of(user)
        if json_out:
            print_json(
                {
                    "workspace": str(directory.resolve()),
                    "files": [str(p) for p in written],
                    "user": user,
                    "roles": list(held),
                }
            )
            return
        typer.echo(f"Created workspace {directory.resolve()} ({len(written)} files)")
        if role:
            typer.echo(f"Roles of {user}: {', '.join(held)} (opsbook.toml [users])")
        else:
            typer.echo(
                f"Roles of {user}: {', '.join(held)} (default_roles). To approve, or to start the"
                " security and DR procedures, give yourself roles under [users] in opsbook.toml,"
                f' e.g. "{user}" = ["operator", "approver", "security"] (or create the workspace'
                " with --role approver --role security)"
            )
        typer.echo(f"Next: cd {directory} && opsbook runbooks list")

    @runbooks.command("list")
    def list_(ctx: typer.Context, json_out: JsonOpt = False) -> int:
        """List runbooks and their procedures. A runbook that does not parse is named on
        stderr (exit 1) and the others are still listed."""
        from opsbook.errors import OpsbookError  # noqa: PLC0415
        from opsbook.runbooks.catalogue import Catalogue, runbook_files  # noqa: PLC0415
        from opsbook.runbooks.parser import parse_file  # noqa: PLC0415

        state: AppState = ctx.obj
        ws = state.workspace()
        good, broken = [], []
        if not ws.runbooks_dir.is_dir():
            catalogue(ws)  # raises the helpful "no runbooks directory" error
        for path in runbook_files(ws.runbooks_dir):
            try:
                good.append(parse_file(path))
            except OpsbookError as exc:
                broken.append(exc)
        cat = Catalogue(tuple(good))
        rows: list[dict[str, Any]] = [
            {
                "runbook": rb.id,
                "file": rb.path.name,
                "title": rb.meta.title,
                "owner": rb.meta.owner,
                "procedures": [
                    {
                        "id": p.id,
                        "title": p.title,
                        "risk": p.risk,
                        "when_to_use": p.when_to_use,
                        "steps": len(p.steps),
                    }
                    for p in rb.procedures
                ],
            }
            for rb in cat.runbooks
        ]
        if json_out:
            print_json(rows)
            return _report_broken(broken)
        from rich.table import Table  # noqa: PLC0415

        from opsbook.cli._common import table_console  # noqa: PLC0415

        table = Table(title=None, show_lines=False)
        for col in ("RUNBOOK#PROCEDURE", "TITLE", "RISK", "STEPS", "USE"):
            table.add_column(col)
        for r in rows:
            for p in r["procedures"]:
                table.add_row(
                    f"{r['runbook']}#{p['id']}",
                    p["title"],
                    p["risk"],
                    str(p["steps"]),
                    p["when_to_use"] or "",
                )
        table_console().print(table)
        return _report_broken(broken)

    @runbooks.command("show")
    def show(
        ctx: typer.Context,
        ref: Annotated[str, typer.Argument(help="RUNBOOK or RUNBOOK#PROCEDURE")],
        json_out: JsonOpt = False,
    ) -> None:
        """Show a runbook (or one procedure): purpose, params, steps."""
        state: AppState = ctx.obj
        cat = catalogue(state.workspace())
        rb_id, _, proc_id = ref.partition("#")
        rb = cat.get(rb_id)
        procs = [p for p in rb.procedures if not proc_id or p.id == proc_id]
        if proc_id and not procs:
            cat.resolve(ref)  # raises the helpful NotFoundError
        data: dict[str, Any] = {
            "runbook": rb.id,
            "title": rb.meta.title,
            "purpose": rb.meta.purpose,
            "owner": rb.meta.owner,
            "file": str(rb.path),
            "content_hash": rb.content_hash,
            "last_reviewed": rb.meta.last_reviewed,
            "review_interval": rb.meta.review_interval,
            "procedures": [
                {
                    "id": p.id,
                    "title": p.title,
                    "risk": p.risk,
                    "permissions": list(p.permissions),
                    "prerequisites": list(p.prerequisites),
                    "environments": list(p.environments),
                    "params": [
                        {
                            "name": x.name,
                            "type": x.type,
                            "required": x.required,
                            "default": x.default,
                            "choices": list(x.choices),
                        }
                        for x in p.params
                    ],
                    "steps": [
                        {"id": s.id, "title": s.title, "kind": str(s.kind), "line": s.line}
                        for s in p.steps
                    ],
                }
                for p in procs
            ],
        }
        _count_open(state, rb.id, proc_id or None)
        if json_out:
            print_json(data)
            return
        typer.echo(f"{rb.meta.title} ({rb.id})  {rb.path}")
        if rb.meta.purpose:
            typer.echo(f"  purpose: {rb.meta.purpose}")
        for p in data["procedures"]:
            typer.echo(f"\n{rb.id}#{p['id']}: {p['title']}  [risk: {p['risk']}]")
            if p["permissions"]:
                typer.echo(f"  permissions: {', '.join(p['permissions'])}")
            for pre in p["prerequisites"]:
                typer.echo(f"  prerequisite: {pre}")
            for prm in p["params"]:
                if prm["type"] == "secret":
                    req = "from a secret provider, never --param"
                elif prm["required"]:
                    req = "required"
                elif prm["default"] is None:
                    req = "optional"
                else:
                    req = f"default {json.dumps(prm['default'])}"
                typer.echo(f"  --param {prm['name']}=…  ({prm['type']}, {req})")
            for i, s in enumerate(p["steps"], 1):
                typer.echo(f"  {i:>2}. {s['title']}  [{s['kind']}]")

    @app.command("lint")
    def lint(
        ctx: typer.Context,
        paths: Annotated[
            list[Path] | None,
            typer.Argument(help="Files or directories (default: the workspace's runbooks)"),
        ] = None,
        json_out: JsonOpt = False,
        today: Annotated[
            str | None, typer.Option(help="Date for staleness checks (YYYY-MM-DD)")
        ] = None,
    ) -> int:
        """Check runbooks against format v1 and the documentation standards."""
        from opsbook.errors import UsageError  # noqa: PLC0415
        from opsbook.runbooks.lint import format_finding, lint_paths  # noqa: PLC0415

        state: AppState = ctx.obj
        targets = list(paths or [])
        if not targets:
            targets = [state.workspace().runbooks_dir]
        for t in targets:
            if not t.exists():
                raise UsageError(f"no such file or directory: {t}", hint="check the path")
        try:
            day = date.fromisoformat(today) if today else date.today()
        except ValueError as exc:
            raise UsageError(f"--today {today!r} is not a date", hint="use YYYY-MM-DD") from exc
        findings = lint_paths(targets, today=day)
        if not paths:  # the workspace: its configuration files too
            from opsbook.workspace.lint_config import lint_workspace_config  # noqa: PLC0415

            findings += lint_workspace_config(state.workspace())
        if json_out:
            print_json(
                [
                    {
                        "path": str(f.path),
                        "line": f.line,
                        "col": f.col,
                        "code": f.code,
                        "message": f.message,
                        "severity": f.severity,
                    }
                    for f in findings
                ]
            )
        else:
            for f in findings:
                typer.echo(format_finding(f))
            if not findings:
                typer.echo("no findings")
        return 1 if findings else 0


def _report_broken(broken: list[Any]) -> int:
    """Name each runbook that did not parse on stderr; 1 when there was any."""
    for exc in broken:
        typer.echo(f"error: {exc.render()} (not listed)", err=True)
    return 1 if broken else 0


# --- runbook metrics and feedback (issue 15) -------------------------------------------------


def _lifecycle(runbooks: typer.Typer) -> None:
    @runbooks.command("stats")
    def stats(
        ctx: typer.Context,
        ref: Annotated[
            str | None, typer.Argument(help="RUNBOOK or RUNBOOK#PROCEDURE (default: all)")
        ] = None,
        since: Annotated[
            str, typer.Option(help="Window: runs started this long ago or later (90d, 4w)")
        ] = "90d",
        json_out: JsonOpt = False,
    ) -> int:
        """Usage and quality metrics: runs, success rate, duration, failing steps, manual
        deviations, incidents, feedback; review cadence and accuracy signals."""
        from datetime import UTC, datetime  # noqa: PLC0415

        from opsbook.cli._common import open_db  # noqa: PLC0415
        from opsbook.lifecycle import metrics, quality  # noqa: PLC0415

        state: AppState = ctx.obj
        ws = state.workspace()
        start, end = metrics.window_since(since, now=datetime.now(UTC))
        cat = catalogue(ws)
        db = open_db(ws, state.settings)
        report = metrics.runbook_stats(db, catalogue=cat, since=start, until=end, ref=ref)
        rb_only = ref.partition("#")[0] if ref else None
        q = quality.quality(
            db,
            catalogue=cat,
            since=metrics.iso(start),
            until=metrics.iso(end),
            today=end.date(),
            runbook=rb_only,
        )
        if json_out:
            print_json({**report.to_dict(), "since_arg": since, "quality": q.to_dict()})
            return 0
        _print_stats(report, q, detail=bool(ref))
        return 0

    @runbooks.command("feedback")
    def feedback(
        ctx: typer.Context,
        execution: Annotated[str, typer.Argument(help="Execution id")],
        rating: Annotated[str, typer.Option("--rating", help="1 (poor) to 5 (excellent)")],
        comment: Annotated[str | None, typer.Option("--comment", help="What to improve")] = None,
        as_user: Annotated[str | None, typer.Option("--as", help="Act as this user")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Rate a finished run of a runbook (replaces your earlier rating of that run)."""
        from opsbook.cli._common import open_db  # noqa: PLC0415
        from opsbook.lifecycle.feedback import check_rating, give_feedback  # noqa: PLC0415

        state: AppState = ctx.obj
        score = check_rating(rating, field="--rating")  # before anything is opened
        ws = state.workspace()
        row = give_feedback(
            open_db(ws, state.settings),
            execution_id=execution,
            person=state.user(as_user),
            rating=score,
            comment=comment,
        )
        if json_out:
            print_json(row.to_dict())
            return
        typer.echo(
            f"Recorded: {row.person} rated {row.runbook}#{row.procedure} {row.rating}/5"
            f" (execution {row.execution_id})"
        )


def _dur(v: float | None) -> str:
    if v is None:
        return "—"
    s = round(v)
    if s < 60:
        return f"{v:.1f}s" if v < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _count_open(state: AppState, runbook_id: str, procedure_id: str | None) -> None:
    """`runbooks show` counts as opening the runbook (runbook metrics: "opened")."""
    from opsbook.cli._common import open_db  # noqa: PLC0415
    from opsbook.errors import OpsbookError  # noqa: PLC0415
    from opsbook.lifecycle.opens import record_open  # noqa: PLC0415

    ws = state.workspace()
    try:
        db = open_db(ws, state.settings)
    except OpsbookError:  # no state database to count in (read-only copy): show it anyway
        return
    record_open(
        db=db,
        runbook_id=runbook_id,
        procedure_id=procedure_id,
        person=state.user(None),
        via="cli",
    )


def _pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.0f}%"


def _print_stats(report: Any, q: Any, *, detail: bool) -> None:
    from opsbook.cli.monitor_cmd import _table  # noqa: PLC0415

    typer.echo(
        f"Runs started {report.since:%Y-%m-%d %H:%M} to {report.until:%Y-%m-%d %H:%M} UTC"
        f" (dry runs excluded; opened: {report.opened});"
        f" {report.resolved_incidents} incident(s) resolved"
    )
    rows = []
    for rb in report.runbooks:
        for p in (rb.total, *rb.procedures):
            top = p.steps[0] if p.steps else None
            rows.append(
                [
                    p.ref if p.procedure else f"{p.ref} (all)",
                    str(p.opened),
                    str(p.runs),
                    _pct(p.success_rate),
                    _dur(p.duration_median),
                    _dur(p.duration_p90),
                    str(p.deviations),
                    f"{p.incidents} ({_pct(p.incident_share)})" if p.incidents else "0",
                    f"{p.feedback.mean:.1f} ({p.feedback.count})" if p.feedback.count else "—",
                    f"{top.step} ({top.failed}F/{top.skipped}S)" if top else "—",
                ]
            )
    _table(
        [
            "RUNBOOK#PROCEDURE",
            "OPENED",
            "RUNS",
            "OK",
            "MEDIAN",
            "P90",
            "DEVIATIONS",
            "INCIDENTS",
            "RATING",
            "WORST STEP",
        ],
        rows,
    )
    if detail:
        for p in report.procedures():
            if p.steps:
                typer.echo(f"\n{p.ref}: steps that fail or are skipped most")
                for s in p.steps:
                    typer.echo(f"  {s.step}: {s.failed} failed, {s.skipped} skipped")
            if p.deviations:
                typer.echo(
                    f"{p.ref}: deviations: {p.attested_with_note} manual step(s) attested with a"
                    f" note, {p.aborted} aborted, {p.failures_passed} failure(s) passed over"
                )
    overdue = q.overdue
    typer.echo(
        "\nReviews: "
        + (
            "; ".join(f"{r.runbook} overdue {r.overdue_days}d (due {r.due})" for r in overdue)
            if overdue
            else "none overdue"
        )
    )
    if q.accuracy:
        typer.echo("Accuracy signals (failed on a healthy sandbox):")
        for a in q.accuracy[:10]:
            typer.echo(f"  {a.ref} step {a.step}: {a.failures} failure(s), last {a.last}")
    typer.echo(
        "Training: "
        + (
            ", ".join(f"{k} {n}" for k, n in q.training.by_area) or "no certifications"
            if q.training.measured
            else q.training.note
        )
    )
