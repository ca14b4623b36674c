"""`opsbook changes …`: runbook changes from proposal to publication (opsbook.lifecycle.changes),
the diff between published versions, reviews and drills due, emergency overrides."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from opsbook.cli._common import AppState, open_db, print_json

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.lifecycle.changes import Change
    from opsbook.workspace import Workspace

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Act as this user")]
IdArg = Annotated[str, typer.Argument(help="Change id (a number, as `changes list` shows)")]


def _ctx(ctx: typer.Context) -> tuple[AppState, Workspace, Database]:
    st: AppState = ctx.obj
    ws = st.workspace()
    return st, ws, open_db(ws, st.settings)


def _roles(ws: Workspace, db: Database, user: str) -> tuple[str, ...]:
    from opsbook.users.access import roles_resolver  # noqa: PLC0415

    return roles_resolver(db=db, fallback=ws.roles_of)(user)


def _print_change(change: Change, *, verbose: bool = True) -> None:
    typer.echo(
        f"change {change.id}  {change.runbook_id}  {change.state}"
        f"  (proposed by {change.proposed_by} at {change.created_at[:19]}Z)"
    )
    if not verbose:
        return
    typer.echo(f"  file: {change.path}  sha256 {change.content_hash}")
    if change.base_version:
        typer.echo(f"  changes published v{change.base_version}")
    for step in change.steps():
        mark = "x" if step["done"] else " "
        typer.echo(f"  [{mark}] {step['step']:<9} {step['detail']}")
    for r in change.reviews:
        if r.comment:
            typer.echo(f"      {r.kind} review by {r.reviewer}: {r.comment}")
    if change.closed_reason:
        typer.echo(f"  closed: {change.closed_reason}")
    for w in change.lint_warnings:
        typer.echo(f"  lint warning: {w}")


def _next_hint(change: Change) -> str | None:
    from opsbook.lifecycle.changes import ChangeState as S  # noqa: PLC0415

    hints = {
        S.DRAFT: f"next: `opsbook changes review {change.id} --technical` and `--operational`"
        " (two other people)",
        S.REVIEWED: f"next: run it on the sandbox, then `opsbook changes test {change.id}`",
        S.TESTED: f"next: `opsbook changes approve {change.id}` (someone holding approver)",
        S.APPROVED: f"next: `opsbook changes publish {change.id}`",
        S.PUBLISHED: f"next: each person informed runs `opsbook changes ack {change.id}`",
    }
    return hints.get(change.state)


def _done(change: Change, json_out: bool, message: str) -> None:
    if json_out:
        print_json(change.to_dict())
        return
    typer.echo(message)
    hint = _next_hint(change)
    if hint:
        typer.echo(f"  {hint}")


def register(app: typer.Typer) -> None:
    ch = typer.Typer(
        help="Runbook changes: propose, review, test, approve, publish.", no_args_is_help=True
    )
    app.add_typer(ch, name="changes")

    @ch.command("propose")
    def propose(
        ctx: typer.Context,
        runbook_file: Annotated[Path, typer.Argument(help="The runbook file, as edited")],
        reason: Annotated[str, typer.Option("--reason", help="The need: gap, incident, idea")],
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Steps 1-2: propose the runbook file as it is now (it must lint)."""
        from opsbook.lifecycle.changes import propose as propose_change  # noqa: PLC0415

        st, ws, db = _ctx(ctx)
        out = propose_change(
            db=db, workspace=ws, path=runbook_file, reason=reason, actor=st.user(as_user)
        )
        if json_out:
            print_json({**out.change.to_dict(), "git_initialised": out.git_initialised})
            return
        if out.git_initialised:
            typer.echo(
                f"initialised a git repository in {ws.root}: published runbook versions are"
                " commits tagged runbook/<id>/v<N>"
            )
        for w in out.warnings:
            typer.echo(f"lint warning: {w}")
        _done(out.change, False, f"proposed change {out.change.id} for {out.change.runbook_id}")

    @ch.command("list")
    def list_(
        ctx: typer.Context,
        state: Annotated[
            str | None, typer.Option("--state", help="open, draft, reviewed, … trained")
        ] = None,
        runbook: Annotated[str | None, typer.Option("--runbook", help="One runbook id")] = None,
        published_: Annotated[
            bool, typer.Option("--published", help="Published versions instead")
        ] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Changes, newest first (or, with --published, every published version)."""
        from opsbook.lifecycle.changes import list_changes, publications  # noqa: PLC0415

        _, _, db = _ctx(ctx)
        if published_:
            pubs = publications(db=db, runbook_id=runbook)
            if json_out:
                print_json([p.to_dict() for p in pubs])
                return
            for p in pubs:
                typer.echo(
                    f"{p.git_tag:<40} {p.content_hash[:12]}  {p.git_commit[:10]}"
                    f"  by {p.published_by} at {p.published_at[:19]}Z"
                    + (f"  (change {p.change_id})" if p.change_id else "")
                )
            if not pubs:
                typer.echo("nothing published yet")
            return
        rows = list_changes(db=db, state=state, runbook_id=runbook)
        if json_out:
            print_json([c.to_dict() for c in rows])
            return
        for c in rows:
            typer.echo(
                f"{c.id:>5}  {c.runbook_id:<28} {c.state:<10} {c.proposed_by:<16}"
                f" {c.created_at[:10]}  {c.reason.splitlines()[0][:50] if c.reason else ''}"
            )
        if not rows:
            typer.echo("no changes")

    @ch.command("show")
    def show(
        ctx: typer.Context,
        change_id: IdArg,
        content: Annotated[
            bool, typer.Option("--content", help="Print only the proposed file's text")
        ] = False,
        diff: Annotated[bool, typer.Option("--diff", help="Include the diff")] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """One change: its seven steps, reviews, test evidence, publication."""
        from opsbook.lifecycle.changes import get_change  # noqa: PLC0415
        from opsbook.lifecycle.diffs import change_diff  # noqa: PLC0415

        _, ws, db = _ctx(ctx)
        change = get_change(db=db, change_id=change_id)
        if content:
            typer.echo(change.content, nl=False)
            return
        d = change_diff(db=db, workspace=ws, change=change) if (diff or json_out) else None
        if json_out:
            print_json({**change.to_dict(), "diff": d.to_dict() if d else None})
            return
        _print_change(change)
        hint = _next_hint(change)
        if hint:
            typer.echo(f"  {hint}")
        if d is not None:
            typer.echo("")
            for line in d.summary:
                typer.echo(f"  * {line}")
            typer.echo(d.unified, nl=False)

    @ch.command("review")
    def review(
        ctx: typer.Context,
        change_id: IdArg,
        technical: Annotated[
            bool, typer.Option("--technical", help="The technical review")
        ] = False,
        operational: Annotated[
            bool, typer.Option("--operational", help="The operational review")
        ] = False,
        reject: Annotated[bool, typer.Option("--reject", help="Reject the change")] = False,
        comment: Annotated[str, typer.Option("--comment", help="What you checked / fix")] = "",
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Step 3: the technical or the operational review (not your own change)."""
        from opsbook.errors import UsageError  # noqa: PLC0415
        from opsbook.lifecycle.changes import review as review_change  # noqa: PLC0415

        if technical == operational:
            raise UsageError(
                "say which review this is", hint="--technical or --operational (one of them)"
            )
        st, ws, db = _ctx(ctx)
        user = st.user(as_user)
        change = review_change(
            db=db,
            workspace=ws,
            change_id=change_id,
            kind="technical" if technical else "operational",
            actor=user,
            actor_roles=_roles(ws, db, user),
            approve=not reject,
            comment=comment,
        )
        _done(
            change,
            json_out,
            f"change {change.id}: {'rejected' if reject else 'approved'}"
            f" ({'technical' if technical else 'operational'} review by {user});"
            f" now {change.state}",
        )

    @ch.command("test")
    def test(
        ctx: typer.Context,
        change_id: IdArg,
        execution: Annotated[
            str | None,
            typer.Option("--execution", help="The run (default: the newest matching one)"),
        ] = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Step 4: record a succeeded sandbox/staging run of exactly the proposed text."""
        from opsbook.lifecycle.changes import record_test  # noqa: PLC0415

        st, ws, db = _ctx(ctx)
        change = record_test(
            db=db, workspace=ws, change_id=change_id, actor=st.user(as_user), execution_id=execution
        )
        _done(
            change,
            json_out,
            f"change {change.id}: tested by execution {change.test_execution_id}"
            f" on {change.test_environment}",
        )

    @ch.command("approve")
    def approve(
        ctx: typer.Context,
        change_id: IdArg,
        reject: Annotated[bool, typer.Option("--reject", help="Refuse the change")] = False,
        comment: Annotated[str, typer.Option("--comment", help="Why")] = "",
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Step 5: approve a reviewed, tested change (not your own)."""
        from opsbook.lifecycle.changes import approve as approve_change  # noqa: PLC0415

        st, ws, db = _ctx(ctx)
        user = st.user(as_user)
        change = approve_change(
            db=db,
            workspace=ws,
            change_id=change_id,
            actor=user,
            actor_roles=_roles(ws, db, user),
            reject=reject,
            comment=comment,
        )
        _done(change, json_out, f"change {change.id}: {change.state} by {user}")

    @ch.command("publish")
    def publish(
        ctx: typer.Context,
        change_id: IdArg,
        inform: Annotated[
            list[str] | None,
            typer.Option("--inform", help="Someone who must acknowledge it (repeatable)"),
        ] = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Step 6: commit the runbook to git and tag it runbook/<id>/v<N>."""
        from opsbook.lifecycle.changes import publish as publish_change  # noqa: PLC0415

        st, ws, db = _ctx(ctx)
        user = st.user(as_user)
        change = publish_change(
            db=db,
            workspace=ws,
            change_id=change_id,
            actor=user,
            actor_roles=_roles(ws, db, user),
            inform=inform or (),
        )
        _done(
            change,
            json_out,
            f"published {change.runbook_id} v{change.version}: tag {change.git_tag},"
            f" commit {(change.git_commit or '')[:12]}",
        )

    @ch.command("ack")
    def ack(
        ctx: typer.Context,
        change_id: IdArg,
        note: Annotated[
            str, typer.Option("--note", help="e.g. walked through on the sandbox")
        ] = "",
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Step 7: acknowledge that you were informed of / trained on a published change."""
        from opsbook.lifecycle.changes import acknowledge  # noqa: PLC0415

        st, _, db = _ctx(ctx)
        user = st.user(as_user)
        change = acknowledge(db=db, change_id=change_id, person=user, note=note)
        _done(change, json_out, f"change {change.id}: acknowledged by {user}; now {change.state}")

    @ch.command("withdraw")
    def withdraw(
        ctx: typer.Context,
        change_id: IdArg,
        reason: Annotated[str, typer.Option("--reason", help="Why")] = "",
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Take back your own open change."""
        from opsbook.lifecycle.changes import withdraw as withdraw_change  # noqa: PLC0415

        st, _, db = _ctx(ctx)
        change = withdraw_change(db=db, change_id=change_id, actor=st.user(as_user), reason=reason)
        _done(change, json_out, f"change {change.id}: withdrawn")

    @ch.command("diff")
    def diff(
        ctx: typer.Context,
        runbook: Annotated[str, typer.Argument(help="Runbook id")],
        from_: Annotated[str | None, typer.Option("--from", help="vN (default: previous)")] = None,
        to: Annotated[
            str | None, typer.Option("--to", help="vM (default: newest) or `working`")
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """The diff between published versions: what changed in procedures and steps, then the
        unified diff of the Markdown."""
        from opsbook.lifecycle.diffs import published_diff  # noqa: PLC0415

        _, ws, db = _ctx(ctx)
        d = published_diff(db=db, workspace=ws, runbook=runbook, from_version=from_, to_version=to)
        if json_out:
            print_json(d.to_dict())
            return
        typer.echo(f"{d.old_label} → {d.new_label}")
        for line in d.summary:
            typer.echo(f"  * {line}")
        if not d.summary and not d.unified:
            typer.echo("  no differences")
        typer.echo(d.unified, nl=False)

    @ch.command("due")
    def due(
        ctx: typer.Context,
        all_: Annotated[bool, typer.Option("--all", help="Include runbooks not due")] = False,
        json_out: JsonOpt = False,
    ) -> int:
        """Runbook reviews overdue or due soon, with their owners (exit 1 if any is overdue)."""
        from opsbook.lifecycle.reviews_due import reviews_due  # noqa: PLC0415

        _, ws, db = _ctx(ctx)
        rows = reviews_due(db=db, workspace=ws, include_ok=all_)
        if json_out:
            print_json([r.to_dict() for r in rows])
        else:
            for r in rows:
                when = (
                    f"due {r.due} ({-r.days_left} days overdue)"
                    if r.days_left is not None and r.days_left < 0
                    else f"due {r.due} (in {r.days_left} days)"
                    if r.due
                    else "no review cadence in its front matter"
                )
                extra = f"  change {r.open_change} open" if r.open_change else ""
                typer.echo(f"{r.status:<10} {r.runbook_id:<28} owner {r.owner:<24} {when}{extra}")
            if not rows:
                typer.echo("no runbook review is due")
        return 1 if any(r.status == "overdue" for r in rows) else 0

    @ch.command("drills-due")
    def drills(
        ctx: typer.Context,
        all_: Annotated[bool, typer.Option("--all", help="Include drills not due")] = False,
        json_out: JsonOpt = False,
    ) -> int:
        """Emergency procedures due for their quarterly drill (exit 1 if any is overdue)."""
        from opsbook.lifecycle.reviews_due import drills_due  # noqa: PLC0415

        _, ws, db = _ctx(ctx)
        rows = drills_due(db=db, workspace=ws, include_ok=all_)
        if json_out:
            print_json([r.to_dict() for r in rows])
        else:
            for r in rows:
                last = f"last drilled {r.last_drill[:10]}" if r.last_drill else "never drilled"
                typer.echo(
                    f"{r.status:<9} {r.ref:<50} owner {r.owner:<24} {last}"
                    + (f", due {r.due}" if r.due else "")
                )
            if not rows:
                typer.echo("no drill is due")
        return 1 if any(r.status in ("never", "overdue") for r in rows) else 0

    @ch.command("remind")
    def remind(
        ctx: typer.Context,
        dry_run: Annotated[
            bool, typer.Option("--dry-run", help="Say who would be reminded; send nothing")
        ] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Remind owners of reviews and drills due, once a day each (`opsbook serve` does this
        by itself; this is for cron or to send now)."""
        from opsbook.lifecycle.reminders import deliver_now, send_reminders  # noqa: PLC0415

        _, ws, db = _ctx(ctx)
        rows = send_reminders(db=db, workspace=ws, dry_run=dry_run)
        ids = tuple(n for r in rows for n in r.notifications)
        delivered = {d.notification_id: d for d in deliver_now(db=db, workspace=ws, ids=ids)}
        if json_out:
            print_json(
                [
                    {
                        **r.to_dict(),
                        "deliveries": [
                            {"id": n, "outcome": delivered[n].outcome if n in delivered else None}
                            for n in r.notifications
                        ],
                    }
                    for r in rows
                ]
            )
            return
        says = {
            "queued": "reminded",
            "already-sent": "already reminded today",
            "no-recipient": "NOT reminded: no contact (set [changes] owner_contacts)",
            "would-send": "would be reminded",
        }
        for r in rows:
            outcomes = ", ".join(
                f"{delivered[n].recipient} {delivered[n].outcome}"
                for n in r.notifications
                if n in delivered
            )
            to = f" ({', '.join(r.recipients)})" if r.recipients else ""
            typer.echo(f"{r.owner}: {says[r.state]}{to}: {len(r.items)} due")
            for line in r.items:
                typer.echo(f"  - {line}")
            if outcomes:
                typer.echo(f"  delivery: {outcomes}")
        if not rows:
            typer.echo("nothing is due: no reminder to send")

    @ch.command("override")
    def override(
        ctx: typer.Context,
        runbook: Annotated[str, typer.Argument(help="Runbook id or file (its current text)")],
        reason: Annotated[str, typer.Option("--reason", help="The incident, e.g. INC-12")],
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Ask for an emergency override: production may run this unpublished text once a
        second person approves (`changes override-approve ID`), for a short time."""
        from opsbook.lifecycle.change_guard import request_override  # noqa: PLC0415

        st, ws, db = _ctx(ctx)
        ov = request_override(
            db=db, workspace=ws, runbook=runbook, reason=reason, actor=st.user(as_user)
        )
        if json_out:
            print_json(ov.to_dict())
            return
        typer.echo(
            f"override {ov.id} requested for {ov.runbook_id} sha256 {ov.content_hash[:12]}:"
            f" someone else approves it with `opsbook changes override-approve {ov.id}`"
        )

    @ch.command("override-approve")
    def override_approve(
        ctx: typer.Context,
        override_id: Annotated[str, typer.Argument(help="Override id")],
        reject: Annotated[bool, typer.Option("--reject", help="Refuse it")] = False,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Approve (or --reject) an emergency override someone else asked for."""
        from opsbook.lifecycle.change_guard import decide_override  # noqa: PLC0415

        st, ws, db = _ctx(ctx)
        user = st.user(as_user)
        ov = decide_override(
            db=db,
            workspace=ws,
            override_id=override_id,
            actor=user,
            actor_roles=_roles(ws, db, user),
            reject=reject,
        )
        if json_out:
            print_json(ov.to_dict())
            return
        if ov.state == "approved":
            typer.echo(
                f"override {ov.id} approved by {user}: production may run {ov.runbook_id}"
                f" sha256 {ov.content_hash[:12]} until {ov.expires_at}"
            )
        else:
            typer.echo(f"override {ov.id} rejected by {user}")

    @ch.command("overrides")
    def overrides(ctx: typer.Context, json_out: JsonOpt = False) -> None:
        """Emergency overrides, newest first."""
        from opsbook.audit._log import utcnow  # noqa: PLC0415
        from opsbook.lifecycle.change_guard import list_overrides  # noqa: PLC0415

        _, _, db = _ctx(ctx)
        rows = list_overrides(db=db)
        if json_out:
            print_json([o.to_dict() for o in rows])
            return
        now = utcnow()
        for o in rows:
            active = "ACTIVE" if o.active(now) else o.state
            typer.echo(
                f"{o.id:>4}  {o.runbook_id:<28} {o.content_hash[:12]}  {active:<9}"
                f" by {o.requested_by}"
                + (f", decided by {o.decided_by}" if o.decided_by else "")
                + f"  uses {o.uses}  {o.reason[:40]}"
            )
        if not rows:
            typer.echo("no overrides")
