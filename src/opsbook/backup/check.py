"""One backup health check in the Barman manner: a name, ok or not, critical or not, what it
saw, and the fix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    critical: bool
    detail: str
    hint: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": "ok" if self.ok else "failed",
            "critical": self.critical,
            "detail": self.detail,
            "hint": self.hint,
        }
