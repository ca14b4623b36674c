"""Putting template values into ``sql``, ``http`` and ``promql`` bodies (see shell_quoting for
``sh``). Each ``{{ … }}`` was rendered to a placeholder; these fillers read the body the way its
language does and put each value in for where it sits.

- **sql** — a value is a bind parameter of the driver, never SQL text (:class:`BoundQuery`):
  ``WHERE name = {{ params.name }}`` sends ``WHERE name = ?`` plus the value. None is NULL,
  booleans and numbers keep their type, lists and mappings are JSON text, anything else is text.
  A value inside a ``'…'`` string is text joined to the rest of the string:
  ``'%{{ v }}%'`` becomes ``('%' || ? || '%')``, so ``WHERE name = '{{ params.name }}'`` also
  compares with the exact value. Names cannot be parameters: inside ``"…"`` or backticks a
  value is a quoted identifier (escaped for the quote); in a comment it is text on one line; in
  a PostgreSQL ``$$…$$`` string it is inserted as written (and may not contain ``$``).
- **http** (a body that starts with a request line) — a value in the request line or a header
  may not contain a line break; in a JSON body (``Content-Type: …json``, or no Content-Type and a
  body starting with ``{``/``[``) a value inside a ``"string"`` is JSON-escaped. Elsewhere values
  are inserted as they are (use ``| tojson`` or ``| urlencode`` where that is wanted).
- **promql** — a value inside a ``"…"``/``'…'`` string is escaped for it; elsewhere it must be a
  number, a duration or a name (letters, digits, ``_ . : + -``), unless marked ``| safe``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from opsbook.engine.runners._placeholders import PH, PLACEHOLDER, text_of
from opsbook.errors import ExpressionError

_REQUEST = re.compile(r"\s*(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|TRACE|CONNECT)\s", re.I)
_SQL_PLAIN = re.compile(r"[^'\"`\-/$\x00]+")
_DOLLAR_TAG = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_PROMQL_WORD = re.compile(r"[\w.:+-]*", re.ASCII)


def _refuse(lang: str, where: str, hint: str) -> ExpressionError:
    return ExpressionError(
        f"a template value in this {lang} block sits {where}, where it cannot be put safely",
        hint=hint,
    )


def _raw(text: str, i: int, values: Sequence[Any]) -> tuple[Any, int]:
    match = PLACEHOLDER.match(text, i)
    if match is None or int(match.group(1)) >= len(values):
        raise ExpressionError("the block contains a NUL character", hint="remove it")
    return values[int(match.group(1))], match.end()


def _text(raw: Any) -> str:
    text = text_of(raw)
    if PH in text:
        raise ExpressionError(
            "a template value contains a NUL character (or the output of a macro or "
            "{% set %} block)",
            hint="pass plain values; use {% set x = … %} rather than a {% set %} block",
        )
    return text


def _is_safe_markup(raw: Any) -> bool:
    return hasattr(raw, "__html__") and isinstance(raw, str)  # `| safe`, `| tojson`


# -- sql ----------------------------------------------------------------------------------


class BoundQuery(str):
    """A rendered ``sql`` body whose template values are bind parameters. As text it reads with
    ``?`` where each value goes (what a step record or a dry run shows); ``parts`` is the SQL
    around the values (``len(params) + 1`` pieces) and ``params`` the values, in order."""

    parts: tuple[str, ...]
    params: tuple[Any, ...]

    def __new__(cls, parts: Sequence[str], params: Sequence[Any]) -> BoundQuery:
        if len(parts) != len(params) + 1:
            raise ValueError("a bound query has one more part than parameters")
        self = super().__new__(cls, "?".join(parts))
        self.parts = tuple(parts)
        self.params = tuple(params)
        return self


def sql_param(raw: Any) -> Any:
    """A template value as a bind parameter: None, booleans and numbers as they are, lists and
    mappings as JSON text, anything else as its text."""
    if raw is None or isinstance(raw, bool | int | float):
        return raw
    text = text_of(raw)
    if PLACEHOLDER.search(text):
        raise ExpressionError(
            "a template value holds the output of a macro or {% set %} block",
            hint="pass plain values; use {% set x = … %} rather than a {% set %} block",
        )
    return text


class _Binder:
    """Collects the SQL text between bind parameters."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.params: list[Any] = []
        self.out: list[str] = []

    def bind(self, value: Any) -> None:
        self.parts.append("".join(self.out))
        self.out = []
        self.params.append(value)

    def query(self) -> BoundQuery:
        return BoundQuery([*self.parts, "".join(self.out)], self.params)


def _sql_string(text: str, i: int, b: _Binder, values: Sequence[Any]) -> int:
    """The '…' string starting at ``text[i]``: copied as written, or, when it holds template
    values, rebuilt as a concatenation of its pieces and bind parameters:
    ``'%{{ v }}%'`` → ``('%' || ? || '%')``. Returns the index after the string."""
    prefix = ""
    if i > 0 and (text[i - 1].isalnum() or text[i - 1] in "_&"):
        prefix = text[i - 1]
        if prefix in "eE" and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_")):
            prefix = "E"
    pieces: list[str | int] = []  # literal text (as written) or the index of a value
    chunk: list[str] = []
    j, n = i + 1, len(text)
    while j < n:
        c = text[j]
        if c == "'":
            if text.startswith("''", j):
                chunk.append("''")
                j += 2
                continue
            break
        if c == PH:
            match = PLACEHOLDER.match(text, j)
            if match is None or int(match.group(1)) >= len(values):
                raise ExpressionError("the block contains a NUL character", hint="remove it")
            pieces.append("".join(chunk))
            chunk = []
            pieces.append(int(match.group(1)))
            j = match.end()
            continue
        if c == "\\" and prefix == "E":
            if text[j + 1 : j + 2] == PH:
                raise _refuse("sql", "right after a backslash", "remove the backslash")
            chunk.append(text[j : j + 2])
            j += 2
            continue
        chunk.append(c)
        j += 1
    pieces.append("".join(chunk))
    end = min(j + 1, n)
    if len(pieces) == 1:
        b.out.append(text[i:end])
        return end
    if prefix not in ("", "E"):
        raise _refuse(
            "sql",
            f"inside a {prefix}'…' literal",
            "write the value outside quotes ({{ … }} is passed to the database as a parameter)",
        )
    if prefix == "E":
        b.out[-1] = b.out[-1][:-1]  # the E goes in front of each piece instead
    b.out.append("(")
    first = True
    for piece in pieces:
        if piece == "":
            continue
        if not first:
            b.out.append(" || ")
        first = False
        if isinstance(piece, int):
            b.bind(text_of_value(values[piece]))
        else:
            b.out.append(f"{prefix}'{piece}'")
    b.out.append(")")
    return end


def text_of_value(raw: Any) -> str:
    """A template value inside a quoted SQL string: its text, as a parameter."""
    value = sql_param(raw)
    return value if isinstance(value, str) else text_of(value)


def _sql_quoted(text: str, i: int, quote: str, out: list[str], values: Sequence[Any]) -> int:
    """Copy the quoted identifier starting at ``text[i]`` (a value in it is escaped for the
    quote: names cannot be parameters) and return the index after it."""
    out.append(quote)
    i += 1
    n = len(text)
    while i < n:
        c = text[i]
        if c == quote:
            if text.startswith(quote * 2, i):
                out.append(quote * 2)
                i += 2
                continue
            out.append(quote)
            return i + 1
        if c == PH:
            raw, i = _raw(text, i, values)
            out.append(_text(raw).replace(quote, quote * 2))
            continue
        out.append(c)
        i += 1
    return i


def _sql_comment(text: str, i: int, end: int, out: list[str], values: Sequence[Any]) -> int:
    while i < end:
        ph = text.find(PH, i, end)
        if ph < 0:
            out.append(text[i:end])
            return end
        out.append(text[i:ph])
        raw, i = _raw(text, ph, values)
        value = _text(raw).replace("\n", " ").replace("\r", " ")
        out.append(value.replace("*/", "* /").replace("/*", "/ *"))
    return end


def fill_sql(text: str, values: Sequence[Any]) -> BoundQuery:
    """The placeholders of a rendered ``sql`` block as bind parameters (see the module
    docstring)."""
    b = _Binder()
    i, n = 0, len(text)
    while i < n:
        plain = _SQL_PLAIN.match(text, i)
        if plain is not None:
            b.out.append(plain.group())
            i = plain.end()
            continue
        c = text[i]
        if c == PH:
            raw, end = _raw(text, i, values)
            prev, nxt = text[i - 1 : i], text[end : end + 1]
            if (prev and (prev.isalnum() or prev in "_'\"`$")) or (
                nxt and (nxt.isalnum() or nxt in "_'\"`")
            ):
                raise _refuse(
                    "sql",
                    "directly against a name or a literal",
                    "separate {{ … }} from the text around it with a space",
                )
            b.bind(sql_param(raw))
            i = end
        elif c == "'":
            i = _sql_string(text, i, b, values)
        elif c in '"`':
            i = _sql_quoted(text, i, c, b.out, values)
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = _sql_comment(text, i, n if end < 0 else end, b.out, values)
        elif text.startswith("/*", i):
            end = _block_comment_end(text, i)
            i = _sql_comment(text, i, end, b.out, values)
        elif c == "$" and (tag := _DOLLAR_TAG.match(text, i)) and not text[i - 1 : i].isalnum():
            close = text.find(tag.group(), tag.end())
            end = n if close < 0 else close + len(tag.group())
            body = text[i:end]
            for match in PLACEHOLDER.finditer(body):
                if "$" in _text(values[int(match.group(1))]):
                    raise _refuse("sql", "inside a $$-quoted string", "remove the $ from the value")
            b.out.append(PLACEHOLDER.sub(lambda m: _text(values[int(m.group(1))]), body))
            i = end
        else:
            b.out.append(c)
            i += 1
    return b.query()


def _block_comment_end(text: str, i: int) -> int:
    depth, j, n = 0, i, len(text)
    while j < n:
        if text.startswith("/*", j):
            depth += 1
            j += 2
        elif text.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        else:
            j += 1
    return n


# -- strings with backslash escapes (JSON bodies, PromQL) -----------------------------------


def _escape_in(quote: str, value: str) -> str:
    if quote == '"':
        return json.dumps(value, ensure_ascii=False)[1:-1]
    value = value.replace("\\", "\\\\").replace(quote, "\\" + quote)
    return value.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")


def _fill_cstrings(
    text: str, values: Sequence[Any], *, quotes: str, lang: str, outside: Any
) -> str:
    out: list[str] = []
    i, n = 0, len(text)
    quote: str | None = None
    while i < n:
        c = text[i]
        if c == PH:
            raw, end = _raw(text, i, values)
            if quote is None:
                out.append(outside(raw))
            elif quote == "`":
                value = _text(raw)
                if "`" in value:
                    raise _refuse(lang, "in a `raw string` and contains `", "use a '…' string")
                out.append(value)
            else:
                out.append(_escape_in(quote, _text(raw)))
            i = end
        elif quote is not None and c == "\\" and quote != "`":
            if text[i + 1 : i + 2] == PH:
                raise _refuse(lang, "right after a backslash", "remove the backslash")
            out.append(text[i : i + 2])
            i += 2
        elif quote is not None and c == quote:
            quote = None
            out.append(c)
            i += 1
        elif quote is None and c in quotes:
            quote = c
            out.append(c)
            i += 1
        elif quote is None and c == "#" and lang == "promql":
            end = text.find("\n", i)
            end = n if end < 0 else end
            comment = PLACEHOLDER.sub(
                lambda m: _text(values[int(m.group(1))]).replace("\n", " ").replace("\r", " "),
                text[i:end],
            )
            out.append(comment)
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _promql_outside(raw: Any) -> str:
    value = _text(raw)
    if _is_safe_markup(raw) or _PROMQL_WORD.fullmatch(value):
        return value
    raise _refuse(
        "promql",
        "outside a string and is not a number, duration or name",
        'put it inside a label matcher string ("{{ … }}") or mark a trusted value | safe',
    )


def fill_promql(text: str, values: Sequence[Any]) -> str:
    if PH not in text:
        return text
    return _fill_cstrings(text, values, quotes="\"'`", lang="promql", outside=_promql_outside)


# -- http -----------------------------------------------------------------------------------


def looks_like_request(template: str) -> bool:
    """Whether a template starts with an HTTP request line (``GET http://…``)."""
    return _REQUEST.match(template) is not None


def fill_http(text: str, values: Sequence[Any]) -> str:
    """Replace the placeholders of a rendered ``http`` request (see the module docstring)."""
    if PH not in text:
        return text
    lines = text.split("\n")
    start = next((k for k, line in enumerate(lines) if line.strip()), len(lines))
    blank = next((k for k in range(start, len(lines)) if not lines[k].strip()), len(lines))
    head = "\n".join(lines[:blank])
    body = "\n".join(lines[blank:])

    def head_value(match: re.Match[str]) -> str:
        value = _text(values[int(match.group(1))])
        if "\n" in value or "\r" in value:
            raise ExpressionError(
                "a template value in the request line or a header contains a line break",
                hint="a value there must be one line (it could otherwise add headers)",
            )
        return value

    head = PLACEHOLDER.sub(head_value, head)
    content_type = next(
        (
            line.partition(":")[2].strip().lower()
            for line in head.split("\n")[1:]
            if line.partition(":")[0].strip().lower() == "content-type"
        ),
        None,
    )
    stripped = PLACEHOLDER.sub("", body).lstrip()
    is_json = "json" in content_type if content_type is not None else stripped[:1] in ("{", "[")
    if is_json:
        body = _fill_cstrings(body, values, quotes='"', lang="http", outside=_text)
    else:
        body = PLACEHOLDER.sub(lambda m: _text(values[int(m.group(1))]), body)
    return head + "\n" + body if blank < len(lines) else head
