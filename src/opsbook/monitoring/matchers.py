"""Label matchers of silences, parsed as Alertmanager parses them (``pkg/labels``).

A text holds a list of matchers: ``{a="x", b=~"y.*"}`` or ``a="x",b="y"``; the braces and
a trailing comma are optional, and commas inside double quotes belong to the value. Each
matcher is a label name (``[a-zA-Z_:][a-zA-Z0-9_:]*``), an operator (``=``, ``!=``, ``=~``,
``!~``) and a value, with any whitespace around them. A value may be double-quoted; in it
``\\"``, ``\\\\`` and ``\\n`` are a quote, a backslash and a line feed, and any other
backslash is itself. An unescaped ``"`` is allowed only as the value's first and last
character. Anything else is refused, naming the field (``--match``, ``matchers[1]``).

A regular expression must match the whole value (Alertmanager anchors it) and runs on RE2,
in time linear in the value (:mod:`opsbook.patterns`). A label the alert does not have
counts as the empty string.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple

from opsbook import patterns
from opsbook.errors import ValidationError

OPS = ("=~", "!~", "!=", "=")
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_SPACE = " \t\n\f\r"  # Go's \s, which Alertmanager's syntax allows around each part
_PLAIN = re.compile(r"[^\s\"\\,{}]+")  # a value written without quotes (see Matcher.__str__)
MAX_VALUE = 1000
SYNTAX = 'label=value, label!=value, label=~regex or label!~regex, e.g. service=~"pay.*"'


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
        found = patterns.fullmatch(self.value, have)
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        """The matcher's text; ``parse(str(m)) == m`` for every matcher."""
        v = self.value
        if _PLAIN.fullmatch(v) and v[0] not in "=~":
            return f"{self.name}{self.op}{v}"
        escaped = v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.name}{self.op}"{escaped}"'


def _bad(field: str, message: str, hint: str = SYNTAX) -> ValidationError:
    return ValidationError(f"{field}: {message}", field=field, hint=hint)


def split(text: str) -> list[str]:
    """The matcher texts of a list, as Alertmanager splits it: one optional ``{`` and ``}``
    trimmed, then commas outside double quotes (``\\"`` does not open or close a quote)."""
    text = text.strip()
    text = text.removeprefix("{").removesuffix("}")
    tokens: list[str] = []
    current: list[str] = []
    inside = escaped = False
    for ch in text:
        if ch == ",":
            if not inside:
                tokens.append("".join(current))
                current = []
                continue
        elif ch == '"':
            if escaped:
                escaped = False
            else:
                inside = not inside
        elif ch == "\\":
            escaped = not escaped
        else:
            escaped = False
        current.append(ch)
    last = "".join(current).strip()
    if last:
        tokens.append(last)
    return tokens


def parse_list(text: str, *, field: str = "matchers") -> list[Matcher]:
    """Every matcher of a list (``{a="x", b=~"y"}``); ValidationError naming ``field``."""
    tokens = split(text)
    return [
        _one(token, field=field, which=f" (matcher {i + 1})" if len(tokens) > 1 else "")
        for i, token in enumerate(tokens)
    ]


def parse(text: str, *, field: str = "matchers") -> Matcher:
    """Exactly one matcher from its text; ValidationError naming ``field``."""
    found = parse_list(text, field=field)
    if len(found) != 1:
        raise _bad(
            field,
            f"{text[:60]!r} holds {len(found)} matchers, not one",
            "give one matcher here, or each in its own field",
        )
    return found[0]


def _one(token: str, *, field: str, which: str) -> Matcher:
    rest = token.lstrip(_SPACE)
    name = _NAME.match(rest)
    op = None
    if name is not None:
        rest = rest[name.end() :].lstrip(_SPACE)
        op = next((o for o in ("=~", "=", "!=", "!~") if rest.startswith(o)), None)
    if name is None or op is None:
        raise _bad(field, f"{token.strip()[:60]!r}{which} is not a matcher")
    raw = rest[len(op) :].strip(_SPACE)
    return checked(Matcher(name.group(), op, _unquote(raw, field=field, which=which)), field=field)


def _unquote(raw: str, *, field: str, which: str) -> str:
    """The value, with Alertmanager's (OpenMetrics) escapes resolved."""
    quoted = raw.startswith('"')
    body = raw[1:] if quoted else raw
    out: list[str] = []
    escaped = closed = False
    last = len(body) - 1
    for i, ch in enumerate(body):
        if escaped:
            escaped = False
            out.append({"n": "\n", '"': '"', "\\": "\\"}.get(ch, "\\" + ch))
        elif ch == "\\" and i < last:
            escaped = True
        elif ch == '"':
            if not quoted or i < last:
                raise _unescaped(raw, field, which)
            closed = True
        else:
            out.append(ch)
    if quoted and not closed:
        raise _unescaped(raw, field, which)
    value = "".join(out)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad(field, f"the value{which} is not valid UTF-8", "send UTF-8 text") from None
    return value


def _unescaped(raw: str, field: str, which: str) -> ValidationError:
    return _bad(
        field,
        f"the value {raw[:60]!r}{which} has an unescaped double quote",
        'quote the whole value and escape quotes inside it: label="say \\"hi\\""',
    )


def checked(m: Matcher, *, field: str) -> Matcher:
    if m.op not in OPS or not _NAME.fullmatch(m.name) or len(m.value) > MAX_VALUE:
        raise _bad(
            field,
            f"{str(m)[:60]!r} is not a matcher",
            f"a label name, an operator of {', '.join(OPS)} and a value of at most"
            f" {MAX_VALUE} characters",
        )
    if m.op in ("=~", "!~"):
        try:
            patterns.compiled(m.value)
        except patterns.PatternError as exc:
            raise _bad(
                field,
                f"{m.value[:60]!r} is not a regular expression RE2 accepts: {exc}",
                'e.g. service=~"pay.*" (RE2 syntax; it must match the whole value)',
            ) from None
    return m


def from_input(value: Mapping[str, str] | Iterable[str], *, field: str) -> list[Matcher]:
    """Matchers from a ``{label: value}`` map (all equality) or a list of matcher texts,
    each of which may hold several matchers (``a="x",b="y"``)."""
    if isinstance(value, Mapping):
        return [
            checked(Matcher(str(k), "=", str(v)), field=f"{field}.{k}") for k, v in value.items()
        ]
    out: list[Matcher] = []
    for i, text in enumerate(value):
        found = parse_list(str(text), field=f"{field}[{i}]")
        if not found:
            raise _bad(f"{field}[{i}]", f"{str(text)[:60]!r} holds no matcher")
        out.extend(found)
    return out


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
    """Whether ``labels`` satisfy every matcher, given as texts (a silence as listed). A
    matcher stored before these rules that no longer holds (a regular expression RE2 refuses,
    such as a lookahead) matches nothing: its silence silences nothing rather than fail."""
    for text in texts:
        m = _parsed(text)
        if m is None or not m.matches(labels):
            return False
    return True


@functools.lru_cache(maxsize=1024)
def _parsed(text: str) -> Matcher | None:
    try:
        return parse(text)
    except ValidationError:
        return None
