"""YAML inside a runbook (front matter and block bodies), with file positions for every key.

Errors and positions are shifted from the YAML text to the runbook file so a message names
the file's own line and column.

Runbooks are read by ``opsbook serve`` from every file in ``runbooks/``, so one committed file
must not be able to exhaust it: anchors and aliases are refused (eleven lines of nested
aliases expand to gigabytes), and so are YAML texts past :data:`MAX_TEXT` characters and
nesting past :data:`MAX_DEPTH` levels.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from opsbook.errors import Location, RunbookFormatError

Key = tuple[str | int, ...]
MAX_TEXT = 256 * 1024  # characters of one YAML text (front matter, one block's body)
MAX_DEPTH = 64  # nested mappings and lists
ALIAS_FIX = "write the values out; YAML aliases are not allowed in runbooks"


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
    """Parse ``text`` (safe loader). ``what`` names the YAML in messages (``front matter``)."""
    import yaml  # noqa: PLC0415 - deferred: not needed for CLI start-up

    if len(text) > MAX_TEXT:
        raise RunbookFormatError(
            f"{what}: the YAML is too large ({len(text)} characters, at most {MAX_TEXT})",
            location=where.at(0, 0),
            hint="keep runbook metadata and block bodies short; put large data in a file",
        )
    node = None
    try:
        loader = _loader_class()(text)
    except yaml.YAMLError as exc:  # a character YAML does not allow (the reader checks first)
        position = getattr(exc, "position", 0) or 0
        line0 = text.count("\n", 0, position)
        raise RunbookFormatError(
            f"{what}: invalid YAML: {str(exc).splitlines()[0]}",
            location=where.at(line0, position - (text.rfind("\n", 0, position) + 1)),
            hint="remove the control character",
        ) from exc
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        raise RunbookFormatError(
            f"{what}: {exc.problem}",
            location=where.at(exc.mark.line, exc.mark.column),
            hint=exc.fix,
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        loc = where.at(mark.line, mark.column) if mark else where.at(0, 0)
        problem = exc.problem or exc.context or "invalid YAML"
        raise RunbookFormatError(
            f"{what}: invalid YAML: {problem}",
            location=loc,
            hint="fix the YAML syntax (indentation, quoting, a missing ':')",
        ) from exc
    except RecursionError:
        raise _too_deep(what, where) from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise RunbookFormatError(
            f"{what}: invalid YAML: {str(exc).splitlines()[0] if str(exc) else exc!r}",
            location=_culprit(loader, node, where),
            hint="fix the YAML (an impossible date such as 2026-02-30, or a control character)",
        ) from exc
    finally:
        loader.dispose()
    doc = Doc(data=data, where=where)
    if node is not None:
        try:
            _index(node, (), doc)
        except RecursionError:
            raise _too_deep(what, where) from None
    return doc


class _Refused(Exception):
    """Raised while composing; converted to a RunbookFormatError by :func:`load`."""

    def __init__(self, problem: str, mark: Any, fix: str) -> None:
        super().__init__(problem)
        self.problem, self.mark, self.fix = problem, mark, fix


@functools.cache
def _loader_class() -> Any:
    """The safe loader, refusing anchors, aliases and deep nesting while it composes (before
    anything is expanded or built)."""
    import yaml  # noqa: PLC0415

    class Loader(yaml.SafeLoader):
        depth = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML leaves it untyped
            if isinstance(event, yaml.AliasEvent):
                raise _Refused(
                    f"YAML aliases (*{event.anchor}) are not allowed", event.start_mark, ALIAS_FIX
                )
            anchor = getattr(event, "anchor", None)
            if anchor is not None:
                raise _Refused(
                    f"YAML anchors (&{anchor}) and aliases are not allowed",
                    event.start_mark,
                    ALIAS_FIX,
                )
            if self.depth >= MAX_DEPTH:
                raise _Refused(
                    f"the YAML is nested too deeply (more than {MAX_DEPTH} levels)",
                    event.start_mark,
                    "flatten the YAML: runbook metadata needs only a few levels",
                )
            self.depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self.depth -= 1

    return Loader


def _too_deep(what: str, where: Where) -> RunbookFormatError:
    return RunbookFormatError(
        f"{what}: the YAML is nested too deeply",
        location=where.at(0, 0),
        hint="flatten the YAML: runbook metadata needs only a few levels",
    )


def _culprit(loader: Any, node: Any, where: Where) -> Location:
    """Where a value that parsed but could not be built sits (e.g. the date 2026-02-30)."""
    import yaml  # noqa: PLC0415

    loader.constructed_objects, loader.recursive_objects = {}, {}
    stack = [node] if node is not None else []
    seen = 0
    while stack and seen < 100_000:
        seen += 1
        n = stack.pop()
        if isinstance(n, yaml.ScalarNode):
            try:
                loader.construct_object(n, deep=True)
            except (yaml.YAMLError, ValueError, TypeError, RecursionError):
                return where.at(n.start_mark.line, n.start_mark.column)
        elif isinstance(n, yaml.MappingNode):
            stack.extend(v for pair in reversed(n.value) for v in reversed(pair))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(reversed(n.value))
    return where.at(0, 0)


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
