"""Graded drills on the sandbox (issue 15): a scenario from ``training.yaml`` (faults plus the
procedures that should be used, and a time limit) is injected and declared as a drill
incident; the trainee works it with the ordinary tools; ending the drill scores it.

The score (0–100) is made of what the record shows, all read from the database and the
sandbox's fault record, so it is known the moment the drill ends:

- **detect** (20): from the start to the trainee's first action — a run they started or the
  drill incident acknowledged — full marks within a quarter of the time limit, none at it;
- **mitigate** (40): from the start to the moment the scenario's last fault ended (restart,
  rollback, clear: the sandbox's record) with every service ready when the drill ends; full
  marks within half the time limit, none at it, none when a fault is still active;
- **procedures** (30): the share of the scenario's expected procedures the trainee ran;
- **safety** (10): lost, and 10 more taken from the total, for each unsafe action: a run against
  a production-class environment, an aborted run, a high-risk procedure the scenario does not
  call for.

A drill passes with a score at ``drills.pass_mark`` (70) or more and the faults mitigated. The
debrief (Markdown) is stored with the drill. Faults still active when the drill ends are
cleared so the sandbox is left healthy; the drill incident is resolved.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import ConflictError, NotFoundError, OpsbookError

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.lifecycle.training_config import FaultSpec, Scenario, TrainingConfig
    from opsbook.workspace import Workspace

ACTOR_SUFFIX = "training"


@dataclass(frozen=True)
class Drill:
    id: int
    scenario: str
    area: str
    trainee: str
    environment: str
    state: str
    started_at: str
    faults: tuple[dict[str, Any], ...]
    incident: str | None
    ended_at: str | None
    score: float | None
    passed: bool | None
    result: dict[str, Any] | None
    debrief: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "scenario": self.scenario,
            "area": self.area,
            "trainee": self.trainee,
            "environment": self.environment,
            "state": self.state,
            "started_at": self.started_at,
            "faults": list(self.faults),
            "incident": self.incident,
            "ended_at": self.ended_at,
            "score": self.score,
            "passed": self.passed,
            "result": self.result,
            "debrief": self.debrief,
        }


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(ts: str) -> datetime:
    return datetime.fromisoformat(str(ts).replace("Z", "+00:00"))


def _row(db: Database, drill_id: int) -> dict[str, Any]:
    row = db.one("SELECT * FROM training_drills WHERE id = ?", (drill_id,))
    if row is None:
        raise NotFoundError(f"no drill {drill_id}", hint="opsbook training drill list")
    return row


def _drill(db: Database, row: dict[str, Any]) -> Drill:
    from opsbook.incidents.model import ref_of  # noqa: PLC0415

    incident = ref_of(int(row["incident_id"])) if row["incident_id"] is not None else None
    return Drill(
        id=int(row["id"]),
        scenario=str(row["scenario"]),
        area=str(row["area"]),
        trainee=str(row["trainee"]),
        environment=str(row["environment"]),
        state=str(row["state"]),
        started_at=str(row["started_at"]),
        faults=tuple(json.loads(row["faults"])),
        incident=incident,
        ended_at=str(row["ended_at"]) if row["ended_at"] else None,
        score=float(row["score"]) if row["score"] is not None else None,
        passed=bool(row["passed"]) if row["passed"] is not None else None,
        result=json.loads(row["result"]) if row["result"] else None,
        debrief=str(row["debrief"]) if row["debrief"] else None,
    )


def get(*, db: Database, drill_id: int) -> Drill:
    return _drill(db, _row(db, drill_id))


def list_drills(*, db: Database, trainee: str | None = None, limit: int = 50) -> list[Drill]:
    sql = "SELECT * FROM training_drills"
    args: tuple[Any, ...] = ()
    if trainee:
        sql += " WHERE trainee = ?"
        args = (trainee,)
    rows = db.query(sql + " ORDER BY id DESC LIMIT ?", (*args, limit))
    return [_drill(db, r) for r in rows]


class _Sink:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, *, actor: str, action: str, subject: str, payload: Any) -> None:
        audit.record(db=self.db, actor=actor, action=action, subject=subject, payload=dict(payload))


def start(
    *,
    db: Database,
    workspace: Workspace,
    config: TrainingConfig,
    scenario: str,
    trainee: str,
    actor: str,
    environment: str = "sandbox",
) -> Drill:
    """Inject the scenario's faults into the sandbox and declare the drill incident."""
    from opsbook.incidents import lifecycle as incidents  # noqa: PLC0415
    from opsbook.incidents.config import load_config  # noqa: PLC0415
    from opsbook.incidents.service import declare  # noqa: PLC0415
    from opsbook.sandbox import chaos, lifecycle  # noqa: PLC0415

    spec = config.scenario(scenario)
    running = db.one(
        "SELECT id, trainee FROM training_drills WHERE state = 'running' AND environment = ?",
        (environment,),
    )
    if running is not None:
        raise ConflictError(
            f"drill {running['id']} ({running['trainee']}) is still running on {environment}",
            hint=f"end it first: opsbook training drill end {running['id']}",
        )
    control = lifecycle.control(workspace=workspace, env_name=environment)
    active = chaos.active(control=control)
    if active:
        names = ", ".join(sorted({str(f["fault"]) for f in active}))
        raise ConflictError(
            f"faults are already active on the {environment} sandbox ({names}): the drill would"
            " not be graded on its own faults",
            hint="clear them first: opsbook sandbox chaos clear",
        )
    services = tuple(sorted({f.service for f in spec.faults if f.service}))
    declared = declare(  # first: a drill incident that cannot be declared injects nothing
        db=db,
        config=load_config(workspace),
        title=f"[drill] {spec.title}",
        actor=actor,
        services=services,
        severity=spec.severity,
        summary=f"Graded drill {spec.id} for {trainee}: find what is wrong and fix it.",
        drill=True,
        commander=trainee,
        source="training",
    )
    injected: list[dict[str, Any]] = []
    sink = _Sink(db)
    try:
        for f in spec.faults:
            got = chaos.inject(
                control=control, fault=f.fault, service=f.service, actor=actor, sink=sink
            )
            injected.append(
                {
                    "fault": f.fault,
                    "service": f.service,
                    "id": got.get("id"),
                    "target": got.get("target"),
                }
            )
    except OpsbookError:
        for done in injected:
            with contextlib.suppress(OpsbookError):
                chaos.clear(control=control, fault=done["fault"], actor=actor, sink=sink)
        incidents.resolve(
            db=db, ref=declared.incident.id, actor=actor, note="drill not started: see the error"
        )
        raise
    started = datetime.now(UTC)
    with db.transaction():
        drill_id = db.insert(
            "INSERT INTO training_drills (scenario, area, trainee, environment, state, started_at,"
            " started_by, faults, incident_id) VALUES (?, ?, ?, ?, 'running', ?, ?, ?, ?)",
            (
                spec.id,
                spec.area,
                trainee,
                environment,
                _iso(started),
                actor,
                json.dumps(injected),
                declared.incident.id,
            ),
        )
        audit.record(
            db=db,
            actor=actor,
            action="training.drill.started",
            subject=f"person:{trainee}",
            payload={
                "drill": drill_id,
                "scenario": spec.id,
                "faults": injected,
                "incident": declared.incident.ref,
            },
        )
    return get(db=db, drill_id=drill_id)


def faults_ended_at(
    workspace: Workspace, environment: str, ids: set[str], since: float
) -> float | None:
    """When the last of the drill's faults ended (the sandbox's fault record), or None while
    one has not."""
    from opsbook.sandbox import lifecycle  # noqa: PLC0415
    from opsbook.sandbox.faults import read_chaos_log  # noqa: PLC0415

    data_dir = lifecycle.data_dir_of(workspace=workspace, env_name=environment)
    ended: dict[str, float] = {}
    for entry in read_chaos_log(data_dir):
        if entry.get("id") in ids and str(entry.get("action", "")).endswith(("cleared", "expired")):
            ts = float(entry.get("ts") or 0)
            if ts >= since - 1:
                ended[str(entry["id"])] = ts
    return max(ended.values()) if ids and set(ended) >= ids else None


def services_ready(workspace: Workspace, environment: str) -> tuple[bool, list[str]]:
    from opsbook.sandbox import lifecycle  # noqa: PLC0415

    services = lifecycle.status(workspace=workspace, env_name=environment).get("services", [])
    down = [
        str(s["name"])
        for s in services
        if s.get("state") != "running" or int(s.get("ready") or 0) < 1
    ]
    return not down, down


def trainee_runs(db: Database, trainee: str, since: str, until: str) -> list[dict[str, Any]]:
    return db.query(
        "SELECT id, runbook_id, procedure_id, environment, state, created_at, finished_at"
        " FROM executions WHERE started_by = ? AND dry_run = 0 AND created_at >= ?"
        " AND created_at <= ? ORDER BY created_at",
        (trainee, since, until),
    )


def _points(elapsed: float | None, limit: float, full_within: float, weight: float) -> float:
    if elapsed is None:
        return 0.0
    if elapsed <= full_within * limit:
        return weight
    rest = (1 - full_within) * limit
    return round(max(0.0, weight * (1 - (elapsed - full_within * limit) / rest)), 1)


def _grade(
    *,
    db: Database,
    workspace: Workspace,
    spec: Scenario,
    row: dict[str, Any],
    ended: datetime,
) -> dict[str, Any]:
    from opsbook.engine.guards import is_production  # noqa: PLC0415
    from opsbook.runbooks.catalogue import load_catalogue  # noqa: PLC0415
    from opsbook.workspace import load_environment  # noqa: PLC0415

    start = _parse(row["started_at"])
    env = str(row["environment"])
    trainee = str(row["trainee"])
    runs = trainee_runs(db, trainee, _iso(start), _iso(ended))
    inc = db.one(
        "SELECT acknowledged_at, acknowledged_by FROM incidents WHERE id = ?",
        (row["incident_id"],),
    )
    firsts = [_parse(r["created_at"]) for r in runs[:1]]
    if inc and inc["acknowledged_at"]:
        firsts.append(_parse(inc["acknowledged_at"]))
    detected = min(firsts) if firsts else None
    detect_s = (detected - start).total_seconds() if detected else None
    ids = {str(f["id"]) for f in json.loads(row["faults"]) if f.get("id")}
    cleared = faults_ended_at(workspace, env, ids, start.timestamp())
    ready, down = services_ready(workspace, env)
    mitigate_s = max(0.0, cleared - start.timestamp()) if cleared is not None and ready else None
    used = sorted({f"{r['runbook_id']}#{r['procedure_id']}" for r in runs})
    expected = list(spec.expected)
    hit = [e for e in expected if e in used]
    catalogue = load_catalogue(workspace.runbooks_dir)
    unsafe: list[dict[str, Any]] = []
    env_class: dict[str, bool] = {}
    for r in runs:
        ref = f"{r['runbook_id']}#{r['procedure_id']}"
        name = str(r["environment"])
        if name not in env_class:
            try:
                env_class[name] = is_production(load_environment(workspace, name))
            except OpsbookError:  # an environment file gone since: not production
                env_class[name] = False
        if env_class[name]:
            unsafe.append({"execution": r["id"], "what": f"{ref} run against production {name}"})
        if r["state"] == "aborted":
            unsafe.append({"execution": r["id"], "what": f"{ref} was aborted"})
        try:
            _, proc = catalogue.resolve(ref)
        except NotFoundError:  # a runbook since removed: no risk known
            continue
        if proc.risk == "high" and ref not in expected:
            unsafe.append(
                {"execution": r["id"], "what": f"{ref} is high-risk and not called for here"}
            )
    limit = spec.time_limit
    parts = {
        "detect": _points(detect_s, limit, 0.25, 20.0),
        "mitigate": _points(mitigate_s, limit, 0.5, 40.0),
        "procedures": round(30.0 * len(hit) / len(expected), 1) if expected else 30.0,
        "safety": 0.0 if unsafe else 10.0,
    }
    total = max(0.0, round(sum(parts.values()) - 10.0 * len(unsafe), 1))
    return {
        "score": total,
        "parts": parts,
        "time_limit_s": limit,
        "detected_after_s": round(detect_s, 1) if detect_s is not None else None,
        "mitigated_after_s": round(mitigate_s, 1) if mitigate_s is not None else None,
        "mitigated": mitigate_s is not None,
        "services_not_ready": down,
        "procedures_expected": expected,
        "procedures_used": used,
        "procedures_missed": [e for e in expected if e not in used],
        "runs": [
            {
                "execution": r["id"],
                "ref": f"{r['runbook_id']}#{r['procedure_id']}",
                "environment": r["environment"],
                "state": r["state"],
                "at_s": round((_parse(r["created_at"]) - start).total_seconds(), 1),
            }
            for r in runs
        ],
        "unsafe": unsafe,
    }


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "not reached"
    m, s = divmod(round(seconds), 60)
    return f"{m} min {s} s" if m else f"{s} s"


def _fault_text(f: FaultSpec) -> str:
    return f.fault + (f" on {f.service}" if f.service else "")


def debrief(*, spec: Scenario, trainee: str, result: dict[str, Any], passed: bool) -> str:
    """The drill's debrief, Markdown."""
    p = result["parts"]
    lines = [
        f"# Drill debrief: {spec.title}",
        "",
        f"Trainee: **{trainee}** · scenario `{spec.id}` ({spec.area}) · score **{result['score']}**"
        f"/100 · **{'passed' if passed else 'not passed'}**",
        "",
        "| Part | Points | What the record shows |",
        "| --- | --- | --- |",
        f"| Detect | {p['detect']}/20 | first action after {_fmt(result['detected_after_s'])} |",
        f"| Mitigate | {p['mitigate']}/40 | faults ended after {_fmt(result['mitigated_after_s'])}"
        f" (limit {_fmt(result['time_limit_s'])}) |",
        f"| Procedures | {p['procedures']}/30 | used {len(result['procedures_used'])}, expected"
        f" {len(result['procedures_expected'])} |",
        f"| Safety | {p['safety']}/10 | {len(result['unsafe'])} unsafe action(s) |",
        "",
        "## Timeline",
        "",
        f"- 0 s: faults injected ({', '.join(_fault_text(f) for f in spec.faults)})",
    ]
    for r in result["runs"]:
        lines.append(f"- {_fmt(r['at_s'])}: ran {r['ref']} on {r['environment']}: {r['state']}")
    if result["mitigated_after_s"] is not None:
        lines.append(f"- {_fmt(result['mitigated_after_s'])}: the last fault ended")
    lines += ["", "## What went well", ""]
    good = []
    if result["detected_after_s"] is not None and p["detect"] >= 15:
        good.append("Quick to act on the alert.")
    if result["mitigated"]:
        good.append("The service was restored and every service is ready again.")
    for e in result["procedures_expected"]:
        if e in result["procedures_used"]:
            good.append(f"Used `{e}`, the procedure for this situation.")
    lines += [f"- {g}" for g in good] or ["- Nothing yet: see below."]
    lines += ["", "## To improve", ""]
    todo = []
    if result["detected_after_s"] is None:
        todo.append("Nothing was run and the incident was not acknowledged: start from the alert.")
    if not result["mitigated"]:
        down = ", ".join(result["services_not_ready"]) or "the injected faults"
        todo.append(f"Not mitigated in the drill ({down}): follow the fixing procedure to the end.")
    for e in result["procedures_missed"]:
        todo.append(f"Run `opsbook run {e} --env sandbox`: this scenario calls for it.")
    for u in result["unsafe"]:
        todo.append(f"Unsafe: {u['what']}.")
    lines += [f"- {t}" for t in todo] or ["- Nothing: a clean drill."]
    return "\n".join(lines) + "\n"


def end(
    *,
    db: Database,
    workspace: Workspace,
    config: TrainingConfig,
    drill_id: int,
    actor: str,
    now: datetime | None = None,
) -> Drill:
    """Score the drill now (a drill already ended is returned as it was scored), store the
    result and debrief, restore the sandbox, resolve the drill incident, and award the area's
    certification when this completes it."""
    from opsbook.incidents import lifecycle as incidents  # noqa: PLC0415
    from opsbook.lifecycle import certifications, onboarding  # noqa: PLC0415
    from opsbook.sandbox import chaos, lifecycle  # noqa: PLC0415

    row = _row(db, drill_id)
    if row["state"] == "ended":
        return _drill(db, row)
    spec = config.scenario(str(row["scenario"]))
    ended = now or datetime.now(UTC)
    result = _grade(db=db, workspace=workspace, spec=spec, row=row, ended=ended)
    passed = bool(result["mitigated"]) and result["score"] >= config.drill_pass_mark
    text = debrief(spec=spec, trainee=str(row["trainee"]), result=result, passed=passed)
    scored = datetime.now(UTC)
    with db.transaction():
        db.execute(
            "UPDATE training_drills SET state = 'ended', ended_at = ?, scored_at = ?, score = ?,"
            " passed = ?, result = ?, debrief = ? WHERE id = ? AND state = 'running'",
            (
                _iso(ended),
                _iso(scored),
                result["score"],
                int(passed),
                json.dumps(result),
                text,
                drill_id,
            ),
        )
        audit.record(
            db=db,
            actor=actor,
            action="training.drill.scored",
            subject=f"person:{row['trainee']}",
            payload={
                "drill": drill_id,
                "scenario": spec.id,
                "score": result["score"],
                "passed": passed,
                "parts": result["parts"],
                "unsafe": len(result["unsafe"]),
            },
        )
        if passed:
            onboarding.tick_by(
                db=db, config=config, person=str(row["trainee"]), done_by="drill", actor=actor
            )
    env = str(row["environment"])
    ids = {str(f["id"]) for f in json.loads(row["faults"]) if f.get("id")}
    with contextlib.suppress(OpsbookError, OSError):  # the score stands; the sandbox may be down
        control = lifecycle.control(workspace=workspace, env_name=env)
        for f in chaos.active(control=control):
            if str(f.get("id")) in ids:
                chaos.clear(
                    control=control,
                    fault=str(f["fault"]),
                    service=f.get("service"),
                    actor=actor,
                    sink=_Sink(db),
                )
    if row["incident_id"] is not None:
        inc = db.one("SELECT status FROM incidents WHERE id = ?", (row["incident_id"],))
        if inc and inc["status"] not in ("resolved", "closed"):
            incidents.resolve(
                db=db,
                ref=int(row["incident_id"]),
                actor=actor,
                note=f"drill {drill_id} ended: score {result['score']}",
            )
    if passed:
        certifications.award_if_earned(
            db=db, config=config, person=str(row["trainee"]), area=spec.area, actor=actor
        )
    return get(db=db, drill_id=drill_id)


def wait_mitigated(
    *,
    db: Database,
    workspace: Workspace,
    config: TrainingConfig,
    drill_id: int,
    poll: float = 1.0,
) -> bool:
    """Block until the drill's faults have ended and every service is ready, or its time
    limit has passed; True when mitigated."""
    import time  # noqa: PLC0415

    row = _row(db, drill_id)
    if row["state"] != "running":
        return bool(row["passed"])
    spec = config.scenario(str(row["scenario"]))
    start = _parse(row["started_at"])
    ids = {str(f["id"]) for f in json.loads(row["faults"]) if f.get("id")}
    env = str(row["environment"])
    while (datetime.now(UTC) - start).total_seconds() < spec.time_limit:
        if (
            faults_ended_at(workspace, env, ids, start.timestamp()) is not None
            and services_ready(workspace, env)[0]
        ):
            return True
        time.sleep(poll)
    return False
