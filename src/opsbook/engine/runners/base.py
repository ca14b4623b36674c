"""The step-runner interface: frozen inputs, frozen results (pip-audit's interface.py style).

A runner is given a fully rendered :class:`RunnerInput` and returns a :class:`RunnerResult`.
It never raises for a failing step (a non-zero exit, an HTTP 500, a SQL error): that is a
result with ``ok=False`` and ``error`` set. It raises only :class:`opsbook.errors.OpsbookError`
subclasses for problems in the input itself (e.g. an unknown database name).

``fields`` are what ``expect`` expressions see (see docs/runbook-format.md):

- sh:      exit_code, stdout, stderr, json (stdout parsed when it is JSON, else null), duration
- http:    status, headers, body, json, duration
- sql:     rows (list of dicts), row_count, duration
- promql:  value, series, duration
- action:  result, duration
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol

from opsbook.runbooks.model import Step


@dataclass(frozen=True)
class RunContext:
    """What every runner may know about the run. Built once per execution."""

    execution_id: str
    environment_name: str
    environment: Mapping[str, Any]  # the parsed environments/NAME.yaml
    workspace: Path
    started_by: str
    dry_run: bool = False
    output_limit: int = 1_048_576  # bytes kept per stream; the rest is dropped and marked


@dataclass(frozen=True)
class RunnerInput:
    step: Step
    body: str  # the block body after templating (sh: already shell-quoted substitutions)
    context: RunContext
    timeout: float | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # extra environment variables
    cwd: Path | None = None
    item: Any = None  # the for_each item, if any
    args: Mapping[str, Any] = field(default_factory=dict)  # action: rendered arguments
    cancel: asyncio.Event | None = None  # set to abort: the runner stops its work promptly
    #: Called with the pid of a process (group) the runner started, before waiting for it.
    on_start: Callable[[int], None] | None = None
    #: Called with ("stdout" | "stderr", bytes) for each chunk of output as it arrives.
    on_output: Callable[[str, bytes], None] | None = None


@dataclass(frozen=True)
class RunnerResult:
    ok: bool  # the runner's default verdict when the step has no expect block
    fields: Mapping[str, Any]
    duration: float
    error: str | None = None  # a short reason when ok is False (timeout, exit 3, HTTP 503)
    timed_out: bool = False
    #: False when the block could not be run at all (refused SQL write, bad query, an action
    #: that raised, a command that could not start): the step fails with ``error`` whatever its
    #: expectations say, because there is no result to check.
    ran: bool = True


class Runner(Protocol):
    """One implementation per step kind that executes something."""

    kind: ClassVar[str]
    supports_dry_run: ClassVar[bool]

    async def run(self, inp: RunnerInput) -> RunnerResult: ...
