"""Loading YAML that one committed file cannot turn into gigabytes (issue 16 §3).

Every YAML file opsbook reads (runbooks, ``contacts.yaml``, ``incident_policy.yaml``,
``environments/*.yaml``) goes through :func:`load`. ``opsbook serve`` reads them all, so a
file must not be able to exhaust it: eleven lines of nested aliases expand to gigabytes.
While the document is composed, before anything is expanded or built, :func:`load` refuses

* anchors, aliases and merge keys (``&a``, ``*a``, ``<<``),
* nesting past ``max_depth`` levels and more than ``max_nodes`` values,
* texts past ``max_chars`` characters,

and raises a :class:`~opsbook.errors.ValidationError` (or the subclass the caller names)
located at the file's own line and column, with the fix as its hint. Invalid YAML is reported
the same way (``WHAT: invalid YAML: PROBLEM``).

Only :mod:`opsbook.errors` is imported, so every domain can use this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsbook.errors import Location, ValidationError

MAX_CHARS = 1024 * 1024  # characters of one YAML text
MAX_DEPTH = 64  # nested mappings and lists
MAX_NODES = 20_000  # values (scalars, lists, mappings): ~15 MB and well under a second
MERGE_TAG = "tag:yaml.org,2002:merge"

#: Builds a mapping from its constructed ``dict`` and its 1-based file line.
MappingHook = Callable[[dict[Any, Any], int], Any]


def alias_fix(kind: str) -> str:
    """The hint for a refused anchor, alias or merge key; ``kind`` names the files."""
    return f"write the values out; YAML aliases are not allowed in {kind}"


@dataclass(frozen=True)
class Loaded:
    """The built data and the composed node tree (``yaml.Node``, ``None`` for an empty text),
    whose ``start_mark`` positions give the line of every key and item."""

    data: Any
    node: Any


@dataclass(frozen=True)
class _Place:
    source: str
    first_line: int
    first_col: int

    def at(self, line0: int, col0: int) -> Location:
        return Location(self.source, self.first_line + line0, self.first_col + col0)


def load(
    text: str,
    *,
    source: str,
    what: str,
    kind: str,
    first_line: int = 1,
    first_col: int = 1,
    error: type[ValidationError] = ValidationError,
    max_chars: int = MAX_CHARS,
    max_depth: int = MAX_DEPTH,
    max_nodes: int = MAX_NODES,
    mapping: MappingHook | None = None,
) -> Loaded:
    """Parse ``text`` (safe loader, no anchors or aliases) read from ``source``.

    ``what`` starts every message (``front matter``, ``environment file``); ``kind`` names
    the files in the fix (``runbooks``, ``contacts.yaml``). ``first_line``/``first_col`` are
    the file position of the text's first character when it is part of a larger file.
    ``mapping`` replaces how mappings are built (e.g. a dict that remembers its line)."""
    import yaml  # noqa: PLC0415 - deferred: not needed for CLI start-up

    place = _Place(source, first_line, first_col)
    if len(text) > max_chars:
        raise error(
            f"{what}: the YAML is too large ({len(text)} characters, at most {max_chars})",
            location=place.at(0, 0),
            hint=f"keep {kind} short; put large data in a file of its own",
        )
    try:
        loader = _loader_class()(text)
    except yaml.YAMLError as exc:  # a character YAML does not allow (the reader checks first)
        position = getattr(exc, "position", 0) or 0
        line0 = text.count("\n", 0, position)
        raise error(
            f"{what}: invalid YAML: {str(exc).splitlines()[0]}",
            location=place.at(line0, position - (text.rfind("\n", 0, position) + 1)),
            hint="remove the control character",
        ) from exc
    loader.limits = _Limits(kind=kind, max_depth=max_depth, max_nodes=max_nodes)
    loader.mapping_hook = mapping
    loader.first_line = first_line
    node = None
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except _Refused as exc:
        raise error(
            f"{what}: {exc.problem}",
            location=place.at(exc.mark.line, exc.mark.column),
            hint=exc.fix,
        ) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "invalid YAML"
        raise error(
            f"{what}: invalid YAML: {problem}",
            location=place.at(mark.line, mark.column) if mark else place.at(0, 0),
            hint="fix the YAML syntax (indentation, quoting, a missing ':')",
        ) from exc
    except RecursionError:
        raise error(
            f"{what}: the YAML is nested too deeply",
            location=place.at(0, 0),
            hint=f"flatten the YAML: {kind} need only a few levels",
        ) from None
    except (yaml.YAMLError, ValueError, TypeError) as exc:
        raise error(
            f"{what}: invalid YAML: {str(exc).splitlines()[0] if str(exc) else exc!r}",
            location=_culprit(loader, node, place),
            hint="fix the YAML (an impossible date such as 2026-02-30, or a control character)",
        ) from exc
    finally:
        loader.dispose()
    return Loaded(data=data, node=node)


def load_file(path: Path, *, what: str, kind: str, mapping: MappingHook | None = None) -> Loaded:
    """:func:`load` the text of ``path`` (UTF-8); ``OSError`` is left to the caller."""
    return load(
        path.read_text(encoding="utf-8"), source=str(path), what=what, kind=kind, mapping=mapping
    )


@dataclass(frozen=True)
class _Limits:
    kind: str
    max_depth: int
    max_nodes: int


class _Refused(Exception):
    """Raised while composing; converted to the caller's error by :func:`load`."""

    def __init__(self, problem: str, mark: Any, fix: str) -> None:
        super().__init__(problem)
        self.problem, self.mark, self.fix = problem, mark, fix


@functools.cache
def _loader_class() -> Any:
    """The safe loader, refusing anchors, aliases, merge keys, deep nesting and too many
    values while it composes (before anything is expanded or built)."""
    import yaml  # noqa: PLC0415

    class Loader(yaml.SafeLoader):
        limits = _Limits(kind="YAML files", max_depth=MAX_DEPTH, max_nodes=MAX_NODES)
        mapping_hook: MappingHook | None = None
        first_line = 1
        depth = 0
        nodes = 0

        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()  # type: ignore[no-untyped-call]  # types-PyYAML leaves it untyped
            fix = alias_fix(self.limits.kind)
            if isinstance(event, yaml.AliasEvent):
                raise _Refused(
                    f"YAML aliases (*{event.anchor}) are not allowed", event.start_mark, fix
                )
            anchor = getattr(event, "anchor", None)
            if anchor is not None:
                raise _Refused(
                    f"YAML anchors (&{anchor}) and aliases are not allowed", event.start_mark, fix
                )
            if self.depth >= self.limits.max_depth:
                raise _Refused(
                    f"the YAML is nested too deeply (more than {self.limits.max_depth} levels)",
                    event.start_mark,
                    f"flatten the YAML: {self.limits.kind} need only a few levels",
                )
            self.nodes += 1
            if self.nodes > self.limits.max_nodes:
                raise _Refused(
                    f"the YAML has too many values (more than {self.limits.max_nodes})",
                    event.start_mark,
                    f"shorten the file: {self.limits.kind} need far fewer values",
                )
            self.depth += 1
            try:
                node: Any = super().compose_node(parent, index)
            finally:
                self.depth -= 1
            if node is not None and node.tag == MERGE_TAG:
                raise _Refused("YAML merge keys (<<) are not allowed", node.start_mark, fix)
            return node

        def construct_line_mapping(self, node: Any) -> Any:
            hook = self.mapping_hook
            if hook is None:
                return self.construct_yaml_map(node)
            built = self.construct_mapping(node, deep=True)
            return hook(built, self.first_line + node.start_mark.line)

    Loader.add_constructor(
        yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, Loader.construct_line_mapping
    )
    return Loader


def _culprit(loader: Any, node: Any, place: _Place) -> Location:
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
                return place.at(n.start_mark.line, n.start_mark.column)
        elif isinstance(n, yaml.MappingNode):
            stack.extend(v for pair in reversed(n.value) for v in reversed(pair))
        elif isinstance(n, yaml.SequenceNode):
            stack.extend(reversed(n.value))
    return place.at(0, 0)
