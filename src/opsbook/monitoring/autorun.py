"""Alert rules that start their procedure automatically (``alerting.auto_run``), guarded by
a precondition (the alert is still firing and not acknowledged or silenced), a rate limit per
rule and a circuit breaker (the rule's last runs all failed: stop and leave it to people).

Bookkeeping lives in the audit trail: each start is an ``alert.autorun`` record whose subject
names the rule, alert and firing episode, so a restarted server never starts the same episode
twice and the rate limit and breaker read what really happened."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from opsbook import audit
from opsbook.errors import OpsbookError, ValidationError
from opsbook.monitoring.alerts import active_silences, iso, silenced_by

if TYPE_CHECKING:
    from opsbook.executions.context import AppContext

_LABEL = re.compile(r"\$\{labels\.([A-Za-z0-9_]+)\}")
FAILED = ("failed", "aborted")


@dataclass(frozen=True)
class AutoRun:
    alertname: str
    procedure: str  # RUNBOOK#PROCEDURE
    service: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)
    max_per_hour: int = 1
    breaker_failures: int = 3

    @property
    def key(self) -> str:
        return f"{self.alertname}/{self.service or '*'}/{self.procedure}"


def parse_rules(raw: Any, *, where: str) -> tuple[AutoRun, ...]:
    out = []
    for node in raw or []:
        if (
            not isinstance(node, dict)
            or not node.get("alertname")
            or "#" not in str(node.get("procedure", ""))
        ):
            raise ValidationError(
                "each auto_run rule needs alertname and procedure (RUNBOOK#PROCEDURE)",
                field=where,
                hint="e.g. {alertname: ProbeFailing, service: payment, "
                "procedure: troubleshooting#service-connectivity}",
            )
        out.append(
            AutoRun(
                alertname=str(node["alertname"]),
                procedure=str(node["procedure"]),
                service=str(node["service"]) if node.get("service") else None,
                params={str(k): str(v) for k, v in (node.get("params") or {}).items()},
                max_per_hour=int(node.get("max_per_hour", 1)),
                breaker_failures=int(node.get("breaker_failures", 3)),
            )
        )
    return tuple(out)


def _params(rule: AutoRun, labels: Mapping[str, str]) -> dict[str, str]:
    return {k: _LABEL.sub(lambda m: labels.get(m.group(1), ""), v) for k, v in rule.params.items()}


def _history(ctx: AppContext, rule: AutoRun, since: str) -> list[dict[str, Any]]:
    rows = ctx.db.query(
        "SELECT ts, subject, payload FROM events WHERE action = 'alert.autorun'"
        " AND subject LIKE ? ORDER BY id DESC LIMIT 50",
        (f"autorun:{rule.key}:%",),
    )
    return [{**r, "payload": json.loads(r["payload"])} for r in rows if str(r["ts"]) >= since]


def _breaker_open(ctx: AppContext, rule: AutoRun) -> bool:
    recent = _history(ctx, rule, "")[: rule.breaker_failures]
    if len(recent) < rule.breaker_failures:
        return False
    ids = [str(r["payload"].get("execution_id")) for r in recent]
    marks = ",".join("?" * len(ids))
    states = ctx.db.query(
        f"SELECT state FROM executions WHERE id IN ({marks})",  # noqa: S608 - placeholders
        ids,
    )
    return len(states) == len(ids) and all(str(s["state"]) in FAILED for s in states)


async def run_due(
    ctx: AppContext, *, rules: Sequence[AutoRun], environment: str, now: datetime | None = None
) -> list[str]:
    """Start the procedures due for firing alerts; returns the new execution ids."""
    from opsbook.executions import operations  # noqa: PLC0415
    from opsbook.users.access import SCHEDULER, Principal  # noqa: PLC0415
    from opsbook.users.roles import expand, permissions_of  # noqa: PLC0415

    if not rules:
        return []
    when = now or datetime.now(UTC)
    who = Principal(SCHEDULER, expand(["admin"]), permissions_of(["admin"]), via="system")
    started: list[str] = []
    firing = ctx.db.query(
        "SELECT * FROM mon_alerts WHERE status = 'firing' AND acked_by IS NULL ORDER BY id"
    )
    silences = active_silences(ctx.db, now=when)
    for row in firing:
        labels = json.loads(row["labels"])
        for rule in rules:
            if row["alertname"] != rule.alertname or (
                rule.service and row["service"] != rule.service
            ):
                continue
            episode = f"autorun:{rule.key}:{row['fingerprint']}:{row['starts_at']}"
            if ctx.db.one(
                "SELECT id FROM events WHERE action = 'alert.autorun' AND subject = ?", (episode,)
            ):
                continue  # this firing episode already had its run
            if silenced_by({**row, "labels": labels}, silences) is not None:
                continue
            if len(_history(ctx, rule, iso(when - timedelta(hours=1)))) >= rule.max_per_hour:
                continue  # rate limit: try again when the hour has passed
            if _breaker_open(ctx, rule):
                blocked = f"autorun-blocked:{rule.key}:{row['fingerprint']}:{row['starts_at']}"
                if not ctx.db.one("SELECT id FROM events WHERE subject = ?", (blocked,)):
                    audit.record(
                        db=ctx.db,
                        actor="system:monitoring",
                        action="alert.autorun_blocked",
                        subject=blocked,
                        payload={"reason": f"the last {rule.breaker_failures} runs failed"},
                    )
                continue
            current = ctx.db.one(
                "SELECT status, acked_by FROM mon_alerts WHERE id = ?", (row["id"],)
            )
            if not current or current["status"] != "firing" or current["acked_by"]:
                continue  # precondition: still firing, nobody took it
            # One start per firing episode even with two leaders for a moment (ADR 0017 §6):
            # the episode is claimed by its primary key before anything starts.
            claim = (f"autorun:{rule.key}:{row['fingerprint']}", str(row["starts_at"]))
            claimed = ctx.db.execute(
                "INSERT INTO schedule_claims (ref, due_at, claimed_by) VALUES (?, ?, ?)"
                " ON CONFLICT (ref, due_at) DO NOTHING",
                (*claim, ctx.engine().owner),  # the replica's owner token, as schedules do
            )
            if not claimed:
                continue  # another replica started this episode's run
            try:
                execution = await operations.start_execution(
                    ctx=ctx,
                    principal=who,
                    ref=rule.procedure,
                    environment=environment,
                    params=_params(rule, labels),
                    confirm=False,
                )
            except OpsbookError as exc:
                ctx.db.execute(  # not started: a later pass may try this episode again
                    "DELETE FROM schedule_claims WHERE ref = ? AND due_at = ?", claim
                )
                audit.record(
                    db=ctx.db,
                    actor="system:monitoring",
                    action="alert.autorun_failed",
                    subject=f"alert:{row['fingerprint']}",
                    payload={"procedure": rule.procedure, "error": exc.message},
                )
                continue
            audit.record(
                db=ctx.db,
                actor="system:monitoring",
                action="alert.autorun",
                subject=episode,
                payload={
                    "procedure": rule.procedure,
                    "execution_id": execution.id,
                    "alert_id": row["id"],
                },
            )
            started.append(execution.id)
    return started
