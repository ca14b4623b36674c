"""Which runbook procedures to run for an incident: by affected service, type and alert."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opsbook.incidents.model import Incident

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.runbooks.catalogue import Catalogue

#: Words that make a procedure fit an incident type.
TYPE_WORDS: dict[str, tuple[str, ...]] = {
    "outage": ("connectivity", "outage", "rollback", "restart", "investigation", "health"),
    "performance": ("performance", "latency", "slow", "resource", "investigation"),
    "security": ("security", "containment", "breach", "access", "investigation"),
    "data": ("database", "ledger", "backup", "recovery", "restore", "integrity"),
    "other": ("investigation",),
}


@dataclass(frozen=True)
class Suggestion:
    ref: str
    title: str
    score: int
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "ref": self.ref,
            "title": self.title,
            "score": self.score,
            "reasons": list(self.reasons),
        }


def alert_hints(*, db: Database, incident: Incident) -> tuple[str | None, tuple[str, ...]]:
    """The incident's alert name and the procedures its alerts link (``runbook`` in the
    ``declared`` and ``alert.attached`` events), for :func:`suggest`."""
    import json  # noqa: PLC0415

    key = incident.alert_key or ""
    alert = key.split("/", 1)[0] if "/" in key else None  # ALERT/SERVICE, not a fingerprint
    linked: list[str] = []
    for row in db.query(
        "SELECT payload FROM incident_events WHERE incident_id = ?"
        " AND kind IN ('declared', 'alert.attached') ORDER BY id",
        (incident.id,),
    ):
        payload = json.loads(row["payload"])
        alert = alert or payload.get("alert")
        if payload.get("runbook") and str(payload["runbook"]) not in linked:
            linked.append(str(payload["runbook"]))
    return alert, tuple(linked)


def suggest_for(*, db: Database, catalogue: Catalogue, incident: Incident) -> list[Suggestion]:
    """:func:`suggest` with the alert name and linked procedures from the timeline."""
    alert, linked = alert_hints(db=db, incident=incident)
    return suggest(catalogue=catalogue, incident=incident, alert=alert, linked=linked)


def _links(ref: str, runbook_id: str, linked: tuple[str, ...]) -> bool:
    """``troubleshooting#service-connectivity`` (or a URL ending in it) links that procedure."""
    return any(link in (ref, runbook_id) or link.endswith("/" + ref) for link in linked)


def suggest(
    *,
    catalogue: Catalogue,
    incident: Incident,
    alert: str | None = None,
    linked: tuple[str, ...] = (),
    limit: int = 5,
) -> list[Suggestion]:
    out: list[Suggestion] = []
    words = TYPE_WORDS.get(incident.type, ())
    for rb in catalogue.runbooks:
        for proc in rb.procedures:
            if proc.schedule or proc.when_to_use not in (None, "reactive"):
                continue
            text = f"{proc.id} {proc.title} {proc.description}".lower()
            score, why = 0, []
            if _links(f"{rb.id}#{proc.id}", rb.id, linked):
                score += 10
                why.append("linked from the alert")
            hits = [s for s in incident.services if s in rb.meta.services or s in text]
            if hits:
                score += 2 * len(hits)
                why.append(f"covers {', '.join(hits)}")
            found = [w for w in words if w in text]
            if found:
                score += 3
                article = "an" if incident.type[:1] in "aeiou" else "a"
                why.append(f"fits {article} {incident.type} incident ({found[0]})")
            if alert and alert.lower() in text:
                score += 4
                why.append(f"mentions alert {alert}")
            if "incident" in rb.meta.tags or "reactive" in rb.meta.tags:
                score += 1
            if score >= 3:
                out.append(Suggestion(f"{rb.id}#{proc.id}", proc.title, score, tuple(why)))
    out.sort(key=lambda s: (-s.score, s.ref))
    return out[:limit]
