"""Putting template values into ``sql``, ``http`` and ``promql`` bodies (see shell_quoting for
``sh``). Each ``{{ … }}`` was rendered to a placeholder; these fillers read the body the way its
language does and insert each value escaped for where it sits.

- **sql** — a value is a SQL literal: strings are quoted (``'it''s'``), numbers and booleans are
  written as such, None is NULL, lists and mappings are JSON strings. Inside ``'…'``, ``"…"`` or
  backticks the value is escaped for that quote. So ``WHERE name = {{ params.name }}`` and
  ``WHERE name = '{{ params.name }}'`` both compare with the exact value, and no value can add
  SQL. Table or column names cannot come from a value unquoted (write ``"{{ x }}"`` to use one as
  a quoted identifier).
- **http** (a body that starts with a request line) — a value in the request line or a header
  may not contain a line break; in a JSON body (``Content-Type: …json``, or no Content-Type and a
  body starting with ``{``/``[``) a value inside a ``"string"`` is JSON-escaped. Elsewhere values
  are inserted as they are (use ``| tojson`` or ``| urlencode`` where that is wanted).
- **promql** — a value inside a ``"…"``/``'…'`` string is escaped for it; elsewhere it must be a
  number, a duration or a name (letters, digits, ``_ . : + -``), unless marked ``| safe``.
"""

from __future__ import annotations

import json
import math
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


def sql_literal(raw: Any) -> str:
    if raw is None:
        return "NULL"
    if isinstance(raw, bool):
        return "TRUE" if raw else "FALSE"
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        if isinstance(raw, float) and not math.isfinite(raw):
            raise _refuse("sql", f"as the number {raw}", "use a finite number")
        return f"({raw!r})" if raw < 0 else repr(raw)
    return "'" + _sql_string(_text(raw)) + "'"


def _sql_string(text: str, *, estring: bool = False) -> str:
    if "\\'" in text or (estring and "\\" in text):
        raise _refuse(
            "sql",
            "in a string and contains a backslash before a quote",
            "some databases read \\' as an escaped quote; remove the backslash",
        )
    return text.replace("'", "''")


def _sql_quoted(text: str, i: int, quote: str, out: list[str], values: Sequence[Any]) -> int:
    """Copy the quoted string/identifier starting at ``text[i]`` and return the index after it."""
    estring = quote == "'" and i > 0 and text[i - 1] in "eE"
    estring = estring and (i < 2 or not (text[i - 2].isalnum() or text[i - 2] == "_"))
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
            value = _text(raw)
            if quote == "'":
                out.append(_sql_string(value, estring=estring))
            else:
                out.append(value.replace(quote, quote * 2))
            continue
        if c == "\\" and estring:
            if text[i + 1 : i + 2] == PH:
                raise _refuse("sql", "right after a backslash", "remove the backslash")
            out.append(text[i : i + 2])
            i += 2
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


def fill_sql(text: str, values: Sequence[Any]) -> str:
    """Replace the placeholders of a rendered ``sql`` block (see the module docstring)."""
    if PH not in text:
        return text
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        plain = _SQL_PLAIN.match(text, i)
        if plain is not None:
            out.append(plain.group())
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
            if prev == "[" and "]" in _text(raw):
                raise _refuse("sql", "inside […] and contains ]", "remove the ] from the value")
            out.append(sql_literal(raw))
            i = end
        elif c in "'\"`":
            i = _sql_quoted(text, i, c, out, values)
        elif text.startswith("--", i):
            end = text.find("\n", i)
            i = _sql_comment(text, i, n if end < 0 else end, out, values)
        elif text.startswith("/*", i):
            end = _block_comment_end(text, i)
            i = _sql_comment(text, i, end, out, values)
        elif c == "$" and (tag := _DOLLAR_TAG.match(text, i)) and not text[i - 1 : i].isalnum():
            close = text.find(tag.group(), tag.end())
            end = n if close < 0 else close + len(tag.group())
            body = text[i:end]
            for match in PLACEHOLDER.finditer(body):
                if "$" in _text(values[int(match.group(1))]):
                    raise _refuse("sql", "inside a $$-quoted string", "remove the $ from the value")
            out.append(PLACEHOLDER.sub(lambda m: _text(values[int(m.group(1))]), body))
            i = end
        else:
            out.append(c)
            i += 1
    return "".join(out)


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
