"""The action registry, fed by the ``opsbook.actions`` entry-point group."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from opsbook.errors import NotFoundError, OpsbookError


@dataclass(frozen=True)
class ActionContext:
    """What an action may use. ``environment`` is the parsed environments/NAME.yaml."""

    environment_name: str
    environment: Mapping[str, Any]
    workspace: Path
    execution_id: str
    started_by: str
    dry_run: bool = False
    #: Report progress while the action works: each line is shown at once where the run is
    #: followed (terminal, console) like a shell step's output, redacted. Ignored when nobody
    #: follows the run.
    progress: Callable[[str], None] = field(default=lambda line: None, compare=False)


ActionFunc = Callable[[ActionContext, Mapping[str, Any]], Awaitable[Any]]


@dataclass(frozen=True)
class ActionSpec:
    """A registered action. ``result`` must be JSON-serialisable (dicts, lists, scalars).

    ``secret_args`` name arguments whose values are redacted everywhere; ``supports_dry_run``
    means the function honours ``ctx.dry_run`` by describing what it would do (returning
    e.g. ``{"would_run": [...]}``) instead of doing it. Actions without dry-run support are
    not called in a dry run; the engine shows their rendered arguments instead.
    """

    name: str
    func: ActionFunc
    description: str = ""
    args: Mapping[str, str] = field(default_factory=dict)  # arg name -> short description
    required: tuple[str, ...] = ()
    secret_args: tuple[str, ...] = ()
    supports_dry_run: bool = False


def action(
    name: str,
    *,
    description: str = "",
    args: Mapping[str, str] | None = None,
    required: tuple[str, ...] = (),
    secret_args: tuple[str, ...] = (),
    supports_dry_run: bool = False,
) -> Callable[[ActionFunc], ActionSpec]:
    """Decorator turning an async function into an :class:`ActionSpec`."""

    def wrap(func: ActionFunc) -> ActionSpec:
        return ActionSpec(
            name=name,
            func=func,
            description=description or (func.__doc__ or "").strip().splitlines()[0:1][0]
            if (description or func.__doc__)
            else "",
            args=dict(args or {}),
            required=required,
            secret_args=secret_args,
            supports_dry_run=supports_dry_run,
        )

    return wrap


class ActionRegistry:
    def __init__(self, specs: Mapping[str, ActionSpec]) -> None:
        self._specs = dict(specs)

    def get(self, name: str) -> ActionSpec:
        spec = self._specs.get(name)
        if spec is None:
            known = ", ".join(sorted(self._specs)) or "none"
            raise NotFoundError(
                f"unknown action {name!r}",
                hint=f"use one of: {known} (or install a package that registers it)",
            )
        return spec

    def names(self) -> list[str]:
        return sorted(self._specs)

    def __contains__(self, name: object) -> bool:
        return name in self._specs


_cached: ActionRegistry | None = None


def load_registry(*, refresh: bool = False) -> ActionRegistry:
    """Load every action from the ``opsbook.actions`` entry points (cached per process)."""
    global _cached  # noqa: PLW0603 - one registry per process, built on first use
    if _cached is not None and not refresh:
        return _cached
    specs: dict[str, ActionSpec] = {}
    for ep in entry_points(group="opsbook.actions"):
        try:
            loaded = ep.load()
        except Exception as exc:  # a broken plugin must be named, not swallowed
            raise OpsbookError(
                f"action plugin {ep.name!r} ({ep.value}) failed to load: {exc}",
                hint="fix or uninstall the package that provides it",
            ) from exc
        if not isinstance(loaded, Mapping):
            raise OpsbookError(
                f"action plugin {ep.name!r} ({ep.value}) is not a mapping of name -> ActionSpec"
            )
        for name, spec in loaded.items():
            specs[str(name)] = spec
    _cached = ActionRegistry(specs)
    return _cached
