"""The per-execution context: template and CEL variables, secrets, redaction."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opsbook.engine.secrets import Redactor, SecretResolver
from opsbook.runbooks.model import Procedure


class SecretParams(Mapping[str, Any]):
    """``params`` for templates: plain values, and ``type: secret`` parameters resolved from the
    secret providers only when a template reads them (never stored)."""

    def __init__(
        self, values: Mapping[str, Any], secret_sources: Mapping[str, str], resolver: SecretResolver
    ) -> None:
        self._values = dict(values)
        self._secret_sources = dict(secret_sources)
        self._resolver = resolver

    def __getitem__(self, key: str) -> Any:
        if key in self._secret_sources:
            return self._resolver.resolve(self._secret_sources[key])
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        yield from self._values
        yield from self._secret_sources

    def __len__(self) -> int:
        return len(self._values) + len(self._secret_sources)

    def plain(self) -> dict[str, Any]:
        """The values CEL may see (secrets excluded)."""
        return dict(self._values)


@dataclass
class ExecutionContext:
    execution_id: str
    started_by: str
    environment_name: str
    environment: Mapping[str, Any]
    params: SecretParams
    resolver: SecretResolver
    redactor: Redactor
    dry_run: bool = False
    steps: dict[str, Any] = field(default_factory=dict)

    def template_vars(self, item: Any = None) -> dict[str, Any]:
        return {
            "params": self.params,
            "env": self.environment,
            "steps": self.steps,
            "item": item,
            "execution": {
                "id": self.execution_id,
                "started_by": self.started_by,
                "environment": self.environment_name,
                "dry_run": self.dry_run,
            },
        }

    def cel_vars(self, item: Any = None) -> dict[str, Any]:
        return _json_safe(  # type: ignore[no-any-return]
            {
                "params": self.params.plain(),
                "env": dict(self.environment),
                "steps": self.steps,
                "item": item,
                "execution": {
                    "id": self.execution_id,
                    "started_by": self.started_by,
                    "environment": self.environment_name,
                    "dry_run": self.dry_run,
                },
            }
        )


def _json_safe(obj: Any) -> Any:
    """CEL takes JSON-like values; YAML dates and the like become strings."""
    return json.loads(json.dumps(obj, default=str))


def secret_sources(procedure: Procedure) -> dict[str, str]:
    return {p.name: (p.secret_from or p.name) for p in procedure.params if p.type == "secret"}
