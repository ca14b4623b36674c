"""Label matchers of silences, as Alertmanager and amtool write them.

``name=value``, ``name!=value``, ``name=~regex`` and ``name!~regex``. A regular expression
must match the whole value (Alertmanager anchors it), and a label the alert does not have
counts as the empty string. Values may be double-quoted (``service=~"pay.*"``).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from opsbook.errors import ValidationError

OPS = ("=~", "!~", "!=", "=")
_SYNTAX = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)
MAX_VALUE = 1000


class Matcher(NamedTuple):
    name: str
    op: str
    value: str

    def matches(self, labels: Mapping[str, str]) -> bool:
        have = labels.get(self.name, "")
        if self.op == "=":
            return have == self.value
        if self.op == "!=":
            return have != self.value
        found = _compiled(self.value).fullmatch(have) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        """The matcher's text; ``parse(str(m)) == m`` for every matcher."""
        v = self.value
        quoted = v != v.strip() or (len(v) >= 2 and v[0] == v[-1] == '"')
        return f'{self.name}{self.op}"{v}"' if quoted else f"{self.name}{self.op}{v}"


@functools.lru_cache(maxsize=512)
def _compiled(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


def parse(text: str, *, field: str = "matchers") -> Matcher:
    """One matcher from its text; ValidationError naming ``field`` and showing the syntax."""
    m = _SYNTAX.match(text)
    if not m:
        raise ValidationError(
            f"{field}: {text[:60]!r} is not a matcher",
            field=field,
            hint="label=value, label!=value, label=~regex or label!~regex",
        )
    name, op, value = m.groups()
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return checked(Matcher(name, op, value), field=field)


def checked(m: Matcher, *, field: str) -> Matcher:
    if m.op not in OPS or not m.name or len(m.value) > MAX_VALUE:
        raise ValidationError(
            f"{field}: {str(m)[:60]!r} is not a matcher",
            field=field,
            hint=f"an operator of {', '.join(OPS)} and a value of at most {MAX_VALUE} characters",
        )
    if m.op in ("=~", "!~"):
        try:
            _compiled(m.value)
        except re.error as exc:
            raise ValidationError(
                f"{field}: {m.value[:60]!r} is not a regular expression ({exc})",
                field=field,
                hint='e.g. service=~"pay.*" (it must match the whole value)',
            ) from exc
    return m


def from_input(value: Mapping[str, str] | Iterable[str], *, field: str) -> list[Matcher]:
    """Matchers from a ``{label: value}`` map (all equality) or a list of matcher texts."""
    if isinstance(value, Mapping):
        return [
            checked(Matcher(str(k), "=", str(v)), field=f"{field}.{k}") for k, v in value.items()
        ]
    return [parse(str(t), field=f"{field}[{i}]") for i, t in enumerate(value)]


def dumps(matchers: Iterable[Matcher]) -> str:
    """Stored form: a JSON list of ``[name, op, value]``."""
    return json.dumps([list(m) for m in matchers])


def loads(text: str) -> list[Matcher]:
    """From the stored form; silences stored before regex matchers were a ``{label: value}``
    map of equalities."""
    data: Any = json.loads(text)
    if isinstance(data, dict):
        return [Matcher(str(k), "=", str(v)) for k, v in data.items()]
    return [Matcher(str(n), str(o), str(v)) for n, o, v in data]


def all_match(texts: Iterable[str], labels: Mapping[str, str]) -> bool:
    """Whether ``labels`` satisfy every matcher, given as texts (a silence as listed)."""
    return all(_parsed(t).matches(labels) for t in texts)


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> Matcher:
    return parse(text)
