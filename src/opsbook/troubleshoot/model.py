"""What a diagnosis is made of (issue 12): evidence, hypotheses, the diagnosis, and the fixing
procedure for each cause.

Causes are named after the sandbox's fault types, which are generic categories that make sense
in production too. Each cause names the procedure an operator runs for it (a reference `opsbook
run` accepts) and how its parameters are filled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SERVICES = ("account", "transaction", "payment", "notification")

#: cause -> (procedure, takes the service as its ``service`` parameter)
PROCEDURES: dict[str, tuple[str, bool]] = {
    "crash": ("troubleshooting#restart-service", True),
    "hang": ("troubleshooting#restart-service", True),
    "memory-leak": ("troubleshooting#restart-service", True),
    "bad-deploy": ("troubleshooting#roll-back-release", True),
    "latency": ("troubleshooting#slow-service", True),
    "error-rate": ("troubleshooting#error-spike", True),
    "db-down": ("troubleshooting#database-path", True),
    "db-connections-exhausted": ("troubleshooting#connection-pool", True),
    "dependency-slow": ("troubleshooting#payment-network", False),
    "disk-full": ("troubleshooting#disk-space", False),
    "cert-expiring": ("troubleshooting#certificate-renewal", False),
    "suspicious-logins": ("troubleshooting#credential-stuffing", False),
}
CAUSES = tuple(PROCEDURES)


def confidence_of(score: float) -> str:
    return "high" if score >= 0.7 else "medium" if score >= 0.4 else "low"


@dataclass(frozen=True)
class Evidence:
    #: platform | health | logs | signals | changes | database | payment_network | known_error
    source: str
    text: str  # a sentence with the numbers
    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "text": self.text, "data": self.data}


@dataclass(frozen=True)
class Hypothesis:
    cause: str
    service: str | None
    title: str
    score: float
    evidence: tuple[Evidence, ...]
    known_error: str | None = None

    @property
    def confidence(self) -> str:
        return confidence_of(self.score)

    @property
    def procedure(self) -> str:
        return PROCEDURES[self.cause][0]

    @property
    def params(self) -> dict[str, str]:
        takes = PROCEDURES[self.cause][1]
        return {"service": self.service} if takes and self.service else {}

    def to_dict(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "service": self.service,
            "title": self.title,
            "confidence": self.confidence,
            "score": round(self.score, 3),
            "evidence": [e.to_dict() for e in self.evidence],
            "procedure": self.procedure,
            "params": self.params,
            "known_error": self.known_error,
        }


@dataclass(frozen=True)
class Source:
    ok: bool
    took_ms: float
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "took_ms": round(self.took_ms, 1), "error": self.error}


@dataclass
class Diagnosis:
    id: str
    environment: str
    target: dict[str, str | None]
    started_at: str
    took_ms: float
    hypotheses: list[Hypothesis]
    sources: dict[str, Source]
    facts: dict[str, Any]
    bundle: str | None = None

    @property
    def top(self) -> Hypothesis | None:
        return self.hypotheses[0] if self.hypotheses and self.hypotheses[0].score >= 0.4 else None

    def to_dict(self) -> dict[str, Any]:
        top = self.top
        return {
            "id": self.id,
            "environment": self.environment,
            "target": dict(self.target),
            "started_at": self.started_at,
            "took_ms": round(self.took_ms, 1),
            "hypotheses": [h.to_dict() for h in self.hypotheses],
            "top": top.to_dict() if top else None,
            "sources": {k: v.to_dict() for k, v in self.sources.items()},
            "facts": self.facts,
            "bundle": self.bundle,
        }
