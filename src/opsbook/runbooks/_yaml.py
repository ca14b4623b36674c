"""YAML inside a runbook (front matter and block bodies), with file positions for every key.

Errors and positions are shifted from the YAML text to the runbook file so a message names
the file's own line and column.

Runbooks are read by ``opsbook serve`` from every file in ``runbooks/``, so one committed file
must not be able to exhaust it: :mod:`opsbook.yamlsafe` refuses anchors, aliases and merge
keys (eleven lines of nested aliases expand to gigabytes), YAML texts past :data:`MAX_TEXT`
characters, nesting past :data:`MAX_DEPTH` levels and more than ``yamlsafe.MAX_NODES`` values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from opsbook import yamlsafe
from opsbook.errors import Location, RunbookFormatError

Key = tuple[str | int, ...]
MAX_TEXT = 256 * 1024  # characters of one YAML text (front matter, one block's body)
MAX_DEPTH = yamlsafe.MAX_DEPTH  # nested mappings and lists
ALIAS_FIX = yamlsafe.alias_fix("runbooks")


@dataclass(frozen=True)
class Where:
    """Where a YAML text sits in the runbook file: its first line and the indent of its lines."""

    path: str
    first_line: int  # 1-based file line of the YAML text's first line
    indent: int = 0  # columns stripped from each line before parsing

    def at(self, line0: int, col0: int) -> Location:
        return Location(self.path, self.first_line + line0, self.indent + col0 + 1)


@dataclass(frozen=True)
class Doc:
    """A loaded YAML document and the file locations of its keys, items and values."""

    data: Any
    where: Where
    keys: dict[Key, Location] = field(default_factory=dict)  # mapping key / sequence item
    values: dict[Key, Location] = field(default_factory=dict)  # value start (inside quotes)

    def key(self, *path: str | int) -> Location:
        """The location of ``path`` (falling back to its parents, then the document start)."""
        for n in range(len(path), 0, -1):
            loc = self.keys.get(tuple(path[:n]))
            if loc is not None:
                return loc
        return self.where.at(0, 0)

    def value(self, *path: str | int) -> Location:
        return self.values.get(tuple(path)) or self.key(*path)


def load(text: str, *, where: Where, what: str) -> Doc:
    """Parse ``text`` with :func:`opsbook.yamlsafe.load` (no anchors or aliases, bounded
    nesting and size). ``what`` names the YAML in messages (``front matter``)."""
    loaded = yamlsafe.load(
        text,
        source=where.path,
        what=what,
        kind="runbooks",
        first_line=where.first_line,
        first_col=where.indent + 1,
        error=RunbookFormatError,
        max_chars=MAX_TEXT,
    )
    doc = Doc(data=loaded.data, where=where)
    if loaded.node is not None:
        _index(loaded.node, (), doc)  # at most MAX_DEPTH levels: yamlsafe refused deeper
    return doc


def _index(node: Any, path: Key, doc: Doc) -> None:
    import yaml  # noqa: PLC0415

    start = node.start_mark
    quoted = isinstance(node, yaml.ScalarNode) and node.style in ('"', "'")
    doc.values[path] = doc.where.at(start.line, start.column + (1 if quoted else 0))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            sub = (*path, str(key_node.value))
            mark = key_node.start_mark
            doc.keys.setdefault(sub, doc.where.at(mark.line, mark.column))
            _index(value_node, sub, doc)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            sub = (*path, i)
            mark = item.start_mark
            doc.keys.setdefault(sub, doc.where.at(mark.line, mark.column))
            _index(item, sub, doc)


def fail(message: str, *, location: Location, hint: str) -> RunbookFormatError:
    return RunbookFormatError(message, location=location, hint=hint)


def as_str_tuple(value: Any, *, doc: Doc, key: Key, what: str) -> tuple[str, ...]:
    """A list of scalars (or a single scalar) as a tuple of strings."""
    if value is None:
        return ()
    items = value if isinstance(value, list) else [value]
    out = []
    for i, item in enumerate(items):
        if isinstance(item, (dict, list)) or item is None:
            raise fail(
                f"{what}: item {i + 1} must be a plain value",
                location=doc.key(*key, i) if isinstance(value, list) else doc.value(*key),
                hint=f"write {what} as a list of words, e.g. [a, b]",
            )
        out.append(scalar_text(item))
    return tuple(out)


def scalar_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return str(value)
