from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsbook.errors import Location, NotFoundError, ValidationError, WorkspaceError
from opsbook.runbooks.model import QUEUE_PATTERN

MARKER = "opsbook.toml"
#: The workers' queue of an environment that names none (ADR 0017 §5).
DEFAULT_QUEUE = "default"
_QUEUE = re.compile(QUEUE_PATTERN)


@dataclass(frozen=True)
class Workspace:
    root: Path
    config: Mapping[str, Any] = field(default_factory=dict)

    @property
    def runbooks_dir(self) -> Path:
        return self.root / "runbooks"

    @property
    def environments_dir(self) -> Path:
        return self.root / "environments"

    @property
    def state_dir(self) -> Path:
        return self.root / ".opsbook"

    @property
    def contacts_path(self) -> Path:
        return self.root / "contacts.yaml"

    @property
    def name(self) -> str:
        return str(self.config.get("workspace", {}).get("name", self.root.name))

    @property
    def default_environment(self) -> str:
        return str(self.config.get("workspace", {}).get("default_environment", "sandbox"))

    def roles_of(self, user: str) -> tuple[str, ...]:
        """Roles of a user from ``[users]`` in opsbook.toml; ``default_roles`` otherwise."""
        users = self.config.get("users", {})
        if user in users:
            return tuple(str(r) for r in users[user])
        default = self.config.get("workspace", {}).get("default_roles", ["operator"])
        return tuple(str(r) for r in default)

    def config_location(self, section: str, key: str) -> Location:
        """Where ``key`` of ``[section]`` is written in opsbook.toml (file:line when found), for
        an error that points at the value to fix."""
        path = self.root / MARKER
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError:
            return Location(str(path))
        in_section = False
        for no, line in enumerate(lines, 1):
            stripped = line.strip()
            if stripped.startswith("["):
                in_section = stripped == f"[{section}]"
            elif in_section and stripped.split("=")[0].strip() == key:
                return Location(str(path), no)
        return Location(str(path))

    def environment_names(self) -> list[str]:
        if not self.environments_dir.is_dir():
            return []
        return sorted(p.stem for p in self.environments_dir.glob("*.yaml"))

    @classmethod
    def load(cls, root: Path) -> Workspace:
        path = root / MARKER
        try:
            config = tomllib.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise WorkspaceError(
                f"{root} is not an opsbook workspace (no {MARKER})",
                hint="run `opsbook init DIR` to create one, or pass --workspace",
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise WorkspaceError(
                f"{path}: {exc}",
                location=Location(str(path), getattr(exc, "lineno", 0), getattr(exc, "colno", 0)),
                hint="fix the TOML syntax",
            ) from exc
        return cls(root=root.resolve(), config=config)


def find_workspace(
    explicit: str | os.PathLike[str] | None = None, *, start: Path | None = None
) -> Workspace:
    """Find the workspace: ``explicit`` (``--workspace``), then ``OPSBOOK_WORKSPACE``, then
    upward from ``start`` (default: the current directory) like git finds a repository."""
    chosen = explicit or os.environ.get("OPSBOOK_WORKSPACE")
    if chosen:
        return Workspace.load(Path(chosen))
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / MARKER).is_file():
            return Workspace.load(candidate)
    raise WorkspaceError(
        f"no opsbook workspace in {here} or any parent directory",
        hint="cd into a workspace, pass --workspace DIR, set OPSBOOK_WORKSPACE, "
        "or create one with `opsbook init DIR`",
    )


@dataclass(frozen=True)
class Environment:
    name: str
    path: Path
    data: Mapping[str, Any]

    @property
    def platform(self) -> str:
        return str(self.data.get("platform", "local"))

    @property
    def services(self) -> list[Mapping[str, Any]]:
        return list(self.data.get("services", []) or [])

    @property
    def queue(self) -> str:
        """The workers' queue that drives this environment's runs (``queue:``; ``default``)."""
        return str(self.data.get("queue") or DEFAULT_QUEUE)

    @property
    def queues(self) -> dict[str, str]:
        """Logical queue names a step may give (``{queue=db}``) mapped to this environment's
        queues (``queues: {db: eastus-db}``), so one runbook serves every region."""
        return {str(k): str(v) for k, v in (self.data.get("queues") or {}).items()}


#: Parsed environment files by path, with the (mtime_ns, size) they were parsed at: the server
#: loads the environment for every start and every resume, and parsing the sandbox file that
#: `opsbook init` writes takes ~6 ms. Callers get a copy of the data.
_PARSED: dict[Path, tuple[tuple[int, int], dict[str, Any]]] = {}


def load_environment(workspace: Workspace, name: str) -> Environment:
    import copy  # noqa: PLC0415

    from opsbook import yamlsafe  # noqa: PLC0415 - refuses YAML aliases (issue 16 §3)

    path = workspace.environments_dir / f"{name}.yaml"
    try:
        st = path.stat()
    except OSError:
        st = None
    if st is None or not path.is_file():
        known = ", ".join(workspace.environment_names()) or "none"
        raise NotFoundError(
            f"unknown environment {name!r}",
            hint=f"use one of: {known} (files in {workspace.environments_dir})",
        )
    stamp = (st.st_mtime_ns, st.st_size)
    parsed = _PARSED.get(path)
    if parsed is not None and parsed[0] == stamp:
        return Environment(name=name, path=path, data=copy.deepcopy(parsed[1]))
    # invalid YAML, aliases, deep or huge YAML: a ValidationError at file:line:col
    loaded = yamlsafe.load_file(path, what="environment file", kind="environment files")
    data = loaded.data or {}
    if not isinstance(data, dict):
        raise ValidationError(
            "environment file must be a mapping of settings",
            location=Location(str(path), 1),
            hint="see environments/sandbox.yaml from `opsbook init` for the shape",
        )
    data.setdefault("name", name)
    if data.get("key_vault") not in (None, ""):  # refused here, at its line, not mid-run
        from opsbook.engine.keyvault import vault_url  # noqa: PLC0415

        line = next(
            (v.start_mark.line + 1 for k, v in loaded.node.value if k.value == "key_vault"), 0
        )
        vault_url(data["key_vault"], origin=str(path), line=line)
    _check_queues(data, loaded.node, path)
    if len(_PARSED) >= 64:
        _PARSED.clear()
    _PARSED[path] = (stamp, copy.deepcopy(data))
    return Environment(name=name, path=path, data=data)


def _check_queues(data: Mapping[str, Any], node: Any, path: Path) -> None:
    """``queue:`` is a queue name; ``queues:`` maps logical names to queue names (file:line)."""
    pairs = {k.value: (k, v) for k, v in getattr(node, "value", ())}
    hint = (
        "queue names use lower-case letters, digits, '.', '_' and '-', starting with a letter "
        f"or digit (pattern {QUEUE_PATTERN}); e.g. queue: eastus and queues: {{db: eastus-db}}"
    )
    if "queue" in data:
        value = data["queue"]
        if not isinstance(value, str) or not _QUEUE.fullmatch(value):
            line = pairs["queue"][0].start_mark.line + 1 if "queue" in pairs else 0
            raise ValidationError(
                f"queue: {value!r} is not a queue name",
                location=Location(str(path), line),
                hint=hint,
            )
    if "queues" not in data or data["queues"] is None:
        return
    queues = data["queues"]
    line = pairs["queues"][0].start_mark.line + 1 if "queues" in pairs else 0
    if not isinstance(queues, dict):
        raise ValidationError(
            "queues: must be a mapping of logical queue names to queues",
            location=Location(str(path), line),
            hint="write queues: {db: eastus-db} (a step's {queue=db} then runs on eastus-db)",
        )
    lines = {k.value: k.start_mark.line + 1 for k, _ in getattr(pairs["queues"][1], "value", ())}
    for key, value in queues.items():
        for what, text in (("logical queue name", key), ("queue", value)):
            if not isinstance(text, str) or not _QUEUE.fullmatch(text):
                raise ValidationError(
                    f"queues: {key!r}: {text!r} is not a {what}",
                    location=Location(str(path), lines.get(key, line)),
                    hint=hint,
                )
