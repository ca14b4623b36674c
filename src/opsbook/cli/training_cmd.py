"""`opsbook training …`: onboarding, assessments generated from the runbooks, graded drills on
the sandbox, certifications (opsbook.lifecycle: training_config, onboarding, assessments,
simulations, certifications)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from opsbook.cli._common import AppState, open_db, print_json

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.lifecycle.simulations import Drill
    from opsbook.lifecycle.training_config import TrainingConfig
    from opsbook.workspace import Workspace

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
AsOpt = Annotated[str | None, typer.Option("--as", help="Act as this user (audited)")]


def _ctx(ctx: typer.Context) -> tuple[AppState, Workspace, Database, TrainingConfig]:
    from opsbook.lifecycle.training_config import load_training  # noqa: PLC0415

    st: AppState = ctx.obj
    ws = st.workspace()
    config = load_training(ws)
    return st, ws, open_db(ws, st.settings), config


def _drill_line(d: Drill) -> str:
    score = (
        f"score {d.score:g}, {'passed' if d.passed else 'not passed'}"
        if d.score is not None
        else ""
    )
    return (
        f"drill {d.id}  {d.scenario:<20} {d.trainee:<16} {d.state:<8} started {d.started_at[:19]}"
        + (f"  {score}" if score else "")
        + (f"  incident {d.incident}" if d.incident else "")
    )


def register(app: typer.Typer) -> None:
    tr = typer.Typer(
        help="Training: onboarding, assessments, graded drills, certifications.",
        no_args_is_help=True,
    )
    app.add_typer(tr, name="training")
    drill = typer.Typer(help="Graded drills on the sandbox.", no_args_is_help=True)
    tr.add_typer(drill, name="drill")

    @tr.command("onboarding")
    def onboarding_cmd(
        ctx: typer.Context,
        user: Annotated[str | None, typer.Option("--user", help="Whose checklist")] = None,
        check: Annotated[str | None, typer.Option("--check", help="Tick this item")] = None,
        note: Annotated[str, typer.Option("--note", help="A note with the tick")] = "",
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """The onboarding checklist of a person (yours by default); --check ticks an item."""
        from opsbook.lifecycle import onboarding  # noqa: PLC0415

        st, _, db, config = _ctx(ctx)
        actor = st.user(as_user)
        person = user or actor
        if check:
            onboarding.tick(db=db, config=config, person=person, item=check, actor=actor, note=note)
        items = onboarding.status(db=db, config=config, person=person)
        if json_out:
            print_json({"person": person, "items": [i.to_dict() for i in items]})
            return
        done = sum(1 for i in items if i.done_at)
        typer.echo(f"onboarding of {person}: {done}/{len(items)} done")
        for i in items:
            mark = "x" if i.done_at else " "
            when = f"  ({i.done_at[:10]}, {i.recorded_by})" if i.done_at else ""
            auto = f"  [ticked by the {i.done_by}]" if i.done_by and not i.done_at else ""
            typer.echo(f"  [{mark}] {i.id:<20} {i.title}{when}{auto}")

    @tr.command("assess")
    def assess(
        ctx: typer.Context,
        area: Annotated[str, typer.Option("--area", help="platform-operations, …")],
        out: Annotated[Path, typer.Option("--out", help="Write the quiz here (YAML)")],
        seed: Annotated[
            int | None, typer.Option("--seed", help="The same seed gives the same quiz")
        ] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Write a knowledge assessment generated from the area's runbooks (no answers in it)."""
        import secrets  # noqa: PLC0415

        from opsbook.lifecycle.assessments import generate, write_quiz  # noqa: PLC0415

        _, ws, _, config = _ctx(ctx)
        chosen = seed if seed is not None else secrets.randbelow(1_000_000)
        quiz = generate(workspace=ws, config=config, area=area, seed=chosen)
        write_quiz(quiz, out)
        if json_out:
            print_json(
                {
                    "file": str(out),
                    "area": quiz.area,
                    "seed": quiz.seed,
                    "digest": quiz.digest,
                    "questions": [q.to_quiz() for q in quiz.questions],
                    "pass_mark": config.pass_mark,
                }
            )
            return
        kinds = sorted({q.kind for q in quiz.questions})
        typer.echo(
            f"wrote {len(quiz.questions)} questions ({', '.join(kinds)}) on {quiz.area} to {out}"
            f" (seed {quiz.seed}); pass mark {config.pass_mark:g} %"
        )
        typer.echo(f"answer each with a letter, then: opsbook training submit {out}")

    @tr.command("submit")
    def submit(
        ctx: typer.Context,
        answers: Annotated[Path, typer.Argument(help="The quiz file with your answers")],
        person: Annotated[
            str | None, typer.Option("--person", help="Whose answers (default: person: in it)")
        ] = None,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Score an answered quiz (exit 1 below the pass mark); stored and audited."""
        from opsbook.lifecycle.assessments import score  # noqa: PLC0415

        st, ws, db, config = _ctx(ctx)
        result = score(
            db=db,
            workspace=ws,
            config=config,
            path=answers,
            person=person,
            actor=st.user(as_user),
        )
        if json_out:
            print_json(result.to_dict())
        else:
            verdict = "PASSED" if result.passed else "not passed"
            typer.echo(
                f"{result.person}: {result.correct}/{result.questions} right, {result.score:g} %"
                f" (pass mark {result.pass_mark:g} %): {verdict}"
            )
            for d in result.detail:
                if not d["correct"]:
                    typer.echo(
                        f"  {d['id']}: answered {d['given'] or '-'}, right is {d['right']}"
                        f"  (see {d['source']})"
                    )
            if result.certification:
                c = result.certification
                typer.echo(f"certified in {c['area']} until {c['expires_at'][:10]}")
        if not result.passed:
            raise typer.Exit(1)

    @tr.command("scenarios")
    def scenarios(ctx: typer.Context, json_out: JsonOpt = False) -> None:
        """The graded drill scenarios of training.yaml."""
        _, _, _, config = _ctx(ctx)
        if json_out:
            print_json([s.to_dict() for s in config.scenarios])
            return
        for s in config.scenarios:
            faults = ", ".join(
                f.fault + (f" on {f.service}" if f.service else "") for f in s.faults
            )
            typer.echo(f"{s.id:<18} {s.area:<20} {s.title}  [{faults}; {s.time_limit / 60:g} min]")
        if not config.scenarios:
            typer.echo("no scenario in training.yaml")

    @drill.command("start")
    def drill_start(
        ctx: typer.Context,
        scenario: Annotated[str, typer.Argument(help="A scenario of training.yaml")],
        trainee: Annotated[str, typer.Option("--trainee", help="Who works the drill")],
        env: Annotated[str, typer.Option("--env", help="The sandbox environment")] = "sandbox",
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Inject the scenario's faults and declare the drill incident."""
        from opsbook.lifecycle.simulations import start  # noqa: PLC0415

        st, ws, db, config = _ctx(ctx)
        d = start(
            db=db,
            workspace=ws,
            config=config,
            scenario=scenario,
            trainee=trainee,
            actor=st.user(as_user),
            environment=env,
        )
        if json_out:
            print_json(d.to_dict())
            return
        spec = config.scenario(d.scenario)
        typer.echo(_drill_line(d))
        typer.echo(
            f"{trainee}: {spec.title}. Work it as an incident ({d.incident}); you have"
            f" {spec.time_limit / 60:g} minutes. When done: opsbook training drill end {d.id}"
        )

    @drill.command("end")
    def drill_end(
        ctx: typer.Context,
        drill_id: Annotated[int, typer.Argument(help="The drill's number")],
        wait: Annotated[
            bool,
            typer.Option(
                "--wait",
                help="Wait until the faults are gone and the services ready (or the time limit)",
            ),
        ] = False,
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Score the drill and write its debrief (exit 1 when it is not passed)."""
        from opsbook.lifecycle.simulations import end, wait_mitigated  # noqa: PLC0415

        st, ws, db, config = _ctx(ctx)
        if wait:
            wait_mitigated(db=db, workspace=ws, config=config, drill_id=drill_id)
        d = end(db=db, workspace=ws, config=config, drill_id=drill_id, actor=st.user(as_user))
        if json_out:
            print_json(d.to_dict())
        else:
            typer.echo(d.debrief or _drill_line(d))
        if not d.passed:
            raise typer.Exit(1)

    @drill.command("show")
    def drill_show(
        ctx: typer.Context,
        drill_id: Annotated[int, typer.Argument(help="The drill's number")],
        json_out: JsonOpt = False,
    ) -> None:
        """A drill and, once ended, its debrief."""
        from opsbook.lifecycle.simulations import get  # noqa: PLC0415

        _, _, db, _ = _ctx(ctx)
        d = get(db=db, drill_id=drill_id)
        if json_out:
            print_json(d.to_dict())
            return
        typer.echo(d.debrief or _drill_line(d))

    @drill.command("list")
    def drill_list(
        ctx: typer.Context,
        trainee: Annotated[str | None, typer.Option("--trainee")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Drills, newest first."""
        from opsbook.lifecycle.simulations import list_drills  # noqa: PLC0415

        _, _, db, _ = _ctx(ctx)
        rows = list_drills(db=db, trainee=trainee)
        if json_out:
            print_json([{k: v for k, v in d.to_dict().items() if k != "debrief"} for d in rows])
            return
        for d in rows:
            typer.echo(_drill_line(d))
        if not rows:
            typer.echo("no drill yet: opsbook training drill start SCENARIO --trainee NAME")

    @tr.command("certs")
    def certs(
        ctx: typer.Context,
        person: Annotated[str | None, typer.Option("--person")] = None,
        due: Annotated[
            bool, typer.Option("--due", help="Only those expired or expiring soon (exit 1 if any)")
        ] = False,
        json_out: JsonOpt = False,
    ) -> None:
        """Certifications per person and area, with expiry."""
        from opsbook.lifecycle import certifications  # noqa: PLC0415

        _, _, db, config = _ctx(ctx)
        rows = (
            certifications.due(db=db, config=config)
            if due
            else certifications.list_certifications(db=db, config=config, person=person)
        )
        if person:
            rows = [c for c in rows if c.person == person]
        if json_out:
            print_json([c.to_dict() for c in rows])
        else:
            for c in rows:
                typer.echo(
                    f"{c.person:<16} {c.area:<20} {c.status:<9} earned {c.earned_at[:10]}"
                    f"  expires {c.expires_at[:10]}"
                )
            if not rows:
                typer.echo("no certification is due" if due else "no certification yet")
        if due and rows:
            raise typer.Exit(1)

    @tr.command("status")
    def status(
        ctx: typer.Context,
        person: Annotated[str | None, typer.Option("--person")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Training progress: onboarding, assessments, drills and certifications per person."""
        from opsbook.lifecycle.training_report import progress  # noqa: PLC0415

        _, _, db, config = _ctx(ctx)
        rows = progress(db=db, config=config, person=person)
        if json_out:
            print_json(rows)
            return
        for r in rows:
            certs_text = ", ".join(f"{c['area']} ({c['status']})" for c in r["certifications"])
            typer.echo(
                f"{r['person']:<16} onboarding {r['onboarding_done']}/{r['onboarding_total']}"
                f"  assessments passed {r['assessments_passed']}/{r['assessments']}"
                f"  drills passed {r['drills_passed']}/{r['drills']}"
                f"  certified: {certs_text or 'none'}"
            )
        if not rows:
            typer.echo("no training recorded yet")
