"""YAML files whose errors point at a line: the data plus the line of every key and item."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsbook.durations import DURATION_HINT, duration_seconds
from opsbook.errors import Location, ValidationError

Key = tuple[str | int, ...]


@dataclass(frozen=True)
class YamlDoc:
    path: Path
    data: Any
    lines: dict[Key, int]

    def line(self, *key: str | int) -> int:
        """The line of ``key`` (or of its nearest parent that has one)."""
        k: Key = tuple(key)
        while k:
            if k in self.lines:
                return self.lines[k]
            k = k[:-1]
        return 1

    def error(self, message: str, *key: str | int, hint: str) -> ValidationError:
        return ValidationError(
            message, location=Location(str(self.path), self.line(*key)), hint=hint
        )


def load_yaml(path: Path, *, what: str) -> YamlDoc:
    from opsbook import yamlsafe  # noqa: PLC0415 - refuses YAML aliases (issue 16 §3)

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise ValidationError(
            f"{what} {path.name} is missing",
            location=Location(str(path)),
            hint="run `opsbook init` to get the default, or copy it from the documentation",
        ) from exc
    # invalid YAML, aliases, deep or huge YAML: a ValidationError at file:line:col
    loaded = yamlsafe.load(text, source=str(path), what=what, kind=path.name)
    node, data = loaded.node, loaded.data
    lines: dict[Key, int] = {}
    if node is not None:
        _walk(node, (), lines)
    return YamlDoc(path=path, data=data if data is not None else {}, lines=lines)


def _walk(node: Any, key: Key, out: dict[Key, int]) -> None:
    import yaml  # noqa: PLC0415

    out.setdefault(key, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            sub = (*key, str(k.value))
            out[sub] = k.start_mark.line + 1
            _walk(v, sub, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            out[(*key, i)] = v.start_mark.line + 1
            _walk(v, (*key, i), out)


def duration(doc: YamlDoc, value: Any, *key: str | int) -> float:
    """A duration such as ``30s``, ``15m``, ``1h``, ``1d`` (or a number of seconds)."""
    try:
        return duration_seconds(value)
    except ValueError:
        raise doc.error(
            f"{'.'.join(map(str, key))}: {value!r} is not a duration", *key, hint=DURATION_HINT
        ) from None
