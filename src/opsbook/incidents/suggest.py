"""Which runbook procedures to run for an incident: by affected service, type and alert."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from opsbook.incidents.model import Incident

if TYPE_CHECKING:
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


def suggest(
    *, catalogue: Catalogue, incident: Incident, alert: str | None = None, limit: int = 5
) -> list[Suggestion]:
    out: list[Suggestion] = []
    words = TYPE_WORDS.get(incident.type, ())
    for rb in catalogue.runbooks:
        for proc in rb.procedures:
            if proc.schedule or proc.when_to_use not in (None, "reactive"):
                continue
            text = f"{proc.id} {proc.title} {proc.description}".lower()
            score, why = 0, []
            hits = [s for s in incident.services if s in rb.meta.services or s in text]
            if hits:
                score += 2 * len(hits)
                why.append(f"covers {', '.join(hits)}")
            found = [w for w in words if w in text]
            if found:
                score += 3
                why.append(f"fits a {incident.type} incident ({found[0]})")
            if alert and alert.lower() in text:
                score += 4
                why.append(f"mentions alert {alert}")
            if "incident" in rb.meta.tags or "reactive" in rb.meta.tags:
                score += 1
            if score >= 3:
                out.append(Suggestion(f"{rb.id}#{proc.id}", proc.title, score, tuple(why)))
    out.sort(key=lambda s: (-s.score, s.ref))
    return out[:limit]
