"""The per-execution context: template and CEL variables, secrets, redaction."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opsbook.engine.secrets import Redactor, SecretResolver
from opsbook.expressions import Scope, members_read
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


class StepResults(dict[str, Any]):
    """``steps``: each finished step's ``{result, state, ok}``, and its CEL form, made once
    (replacing an entry drops its CEL form)."""

    def __init__(self) -> None:
        super().__init__()
        self._cel: dict[str, Any] = {}

    def __setitem__(self, key: str, value: Any) -> None:
        self._cel.pop(key, None)
        super().__setitem__(key, value)

    def __delitem__(self, key: str) -> None:
        self._cel.pop(key, None)
        super().__delitem__(key)

    def cel(self, members: frozenset[str] | None) -> dict[str, Any]:
        """The CEL form of the named steps (all when ``members`` is None)."""
        names = self.keys() if members is None else [m for m in members if m in self]
        out: dict[str, Any] = {}
        for name in names:
            value = self._cel.get(name)
            if value is None:
                value = self._cel[name] = _json_safe(self[name])
            out[name] = value
        return out


_CEL_NAMES = ("params", "env", "steps", "item", "execution")


class CelVars(Scope):
    """What CEL expressions see: ``params`` (secrets left out), ``env``, ``steps``, ``item``
    and ``execution``, each turned into JSON-like values only when an expression reads it."""

    def __init__(
        self, ctx: ExecutionContext, item: Any, fields: Mapping[str, Any] | None = None
    ) -> None:
        super().__init__(fields)
        self._ctx = ctx
        self._item = item

    def _own_names(self) -> tuple[str, ...]:
        return _CEL_NAMES

    def _value(self, name: str, expr: str | None) -> Any:
        ctx = self._ctx
        if name == "steps":
            steps = ctx.steps
            members = None if expr is None else members_read(expr, "steps")
            if isinstance(steps, StepResults):
                return steps.cel(members)
            return _json_safe(steps)
        if name == "item":
            return _json_safe(self._item)
        return ctx.cel_shared()[name]

    def with_fields(self, fields: Mapping[str, Any]) -> CelVars:
        return CelVars(self._ctx, self._item, {**self._fields, **fields})


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
    steps: dict[str, Any] = field(default_factory=StepResults)
    _cel_shared: dict[str, Any] | None = field(default=None, init=False, repr=False)

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

    def cel_vars(self, item: Any = None) -> CelVars:
        """The CEL variables (see :class:`CelVars`); built only as far as an expression reads
        them."""
        return CelVars(self, item)

    def cel_shared(self) -> dict[str, Any]:
        """``params``, ``env`` and ``execution`` in CEL form, made once per execution."""
        if self._cel_shared is None:
            self._cel_shared = _json_safe(
                {
                    "params": self.params.plain(),
                    "env": dict(self.environment),
                    "execution": {
                        "id": self.execution_id,
                        "started_by": self.started_by,
                        "environment": self.environment_name,
                        "dry_run": self.dry_run,
                    },
                }
            )
        return self._cel_shared


def _json_safe(obj: Any) -> Any:
    """CEL takes JSON-like values; YAML dates and the like become strings."""
    return json.loads(json.dumps(obj, default=str))


def secret_sources(procedure: Procedure) -> dict[str, str]:
    return {p.name: (p.secret_from or p.name) for p in procedure.params if p.type == "secret"}
