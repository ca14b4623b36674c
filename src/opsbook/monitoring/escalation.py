"""Escalation hook: a firing alert that nobody acknowledged (or silenced) and whose severity
and age cross a rule of the environment's escalation policy is handed to a
:class:`Notifier` for the level named by the rule (a level of ``contacts.yaml``).

The incidents work provides the real notifier (paging, SMS, e-mail); monitoring only decides
*when* and *whom*, records it on the alert and audits it."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from opsbook import audit
from opsbook.db import Database
from opsbook.monitoring.alerts import active_silences, iso, parse_time, silenced_by
from opsbook.monitoring.config import Escalation

_PAGE = ("page", "critical", "error", "sev-1", "sev-2")
_TICKET = ("ticket", "warning", "sev-3")


def severity_class(severity: str) -> str:
    """page, ticket or info, from opsbook's or Alertmanager's usual severity labels."""
    s = severity.lower()
    if s in _PAGE:
        return "page"
    if s in _TICKET:
        return "ticket"
    return "info"


@dataclass(frozen=True)
class Contact:
    level: str
    title: str
    contacts: tuple[Mapping[str, Any], ...]


class Notifier(Protocol):
    """Called once per alert and level; raising means "not delivered" (tried again later)."""

    def notify(self, *, alert: Mapping[str, Any], level: Contact, reason: str) -> None: ...


def load_levels(data: Mapping[str, Any] | None) -> dict[str, Contact]:
    """The levels of a parsed contacts.yaml, by name."""
    out = {}
    for lv in (data or {}).get("levels", []) or []:
        name = str(lv.get("name"))
        out[name] = Contact(name, str(lv.get("title", name)), tuple(lv.get("contacts", []) or []))
    return out


def escalate(
    db: Database,
    *,
    rules: Sequence[Escalation],
    levels: Mapping[str, Contact],
    notifier: Notifier,
    now: datetime | None = None,
    environment: str | None = None,
) -> list[tuple[str, str]]:
    """Escalate every due alert; returns (fingerprint, level) of each notification made."""
    when = now or datetime.now(UTC)
    silences = active_silences(db, now=when)
    done: list[tuple[str, str]] = []
    ordered = sorted(rules, key=lambda r: r.after)
    rows = db.query(
        "SELECT * FROM mon_alerts WHERE status = 'firing' AND acked_by IS NULL ORDER BY id"
    )
    for row in rows:
        if environment and row["environment"] not in (None, environment):
            continue
        if silenced_by({**row, "labels": json.loads(row["labels"])}, silences) is not None:
            continue
        age = (when - parse_time(str(row["starts_at"]), field="starts_at")).total_seconds()
        sev = severity_class(str(row["severity"]))
        steps = [r for r in ordered if r.severity == sev]
        due = [i for i, r in enumerate(steps, start=1) if age >= r.after]
        if not due or due[-1] <= int(row["escalated_level"]):
            continue
        step = due[-1]
        rule = steps[step - 1]
        level = levels.get(rule.level, Contact(rule.level, rule.level, ()))
        reason = f"{sev} alert unacknowledged for {int(age // 60)} min"
        previous = int(row["escalated_level"])
        # Claim the level before notifying: with several replicas (or two leaders for a
        # moment) only the one whose UPDATE moves the level pages (ADR 0017 §6).
        claimed = db.execute(
            "UPDATE mon_alerts SET escalated_level = ?, escalated_at = ?"
            " WHERE id = ? AND escalated_level < ?",
            (step, iso(when), row["id"], step),
        )
        if not claimed:
            continue
        try:
            notifier.notify(alert=row, level=level, reason=reason)
        except Exception as exc:
            with db.transaction():  # not paged: the next pass tries again
                db.execute(
                    "UPDATE mon_alerts SET escalated_level = ?, escalated_at = ?"
                    " WHERE id = ? AND escalated_level = ?",
                    (previous, row["escalated_at"], row["id"], step),
                )
                audit.record(
                    db=db,
                    actor="system:monitoring",
                    action="alert.escalation_failed",
                    subject=f"alert:{row['fingerprint']}",
                    payload={"level": rule.level, "error": str(exc)[:200]},
                )
            continue
        audit.record(
            db=db,
            actor="system:monitoring",
            action="alert.escalated",
            subject=f"alert:{row['fingerprint']}",
            payload={"level": rule.level, "reason": reason, "alertname": row["alertname"]},
            ts=iso(when),
        )
        done.append((str(row["fingerprint"]), rule.level))
    return done


class LogNotifier:
    """The default until the incidents work plugs in a real one: writes the page to the log."""

    def notify(self, *, alert: Mapping[str, Any], level: Contact, reason: str) -> None:
        from opsbook.logs import get_logger  # noqa: PLC0415

        get_logger().warning(
            "monitoring.escalation",
            fields={"alert": alert.get("alertname"), "level": level.level, "reason": reason},
        )
