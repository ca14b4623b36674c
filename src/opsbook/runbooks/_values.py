"""Small value grammars shared by the parser and parameter validation: booleans,
identifiers, GitHub heading slugs, and the typed conversion of one parameter value."""

from __future__ import annotations

import math
import re
import unicodedata
from typing import Any

from opsbook.durations import DURATION_HINT, format_duration, parse_duration
from opsbook.runbooks.model import Param

_INTEGER = re.compile(r"\s*[+-]?\d+\s*")
#: Runbook, procedure and step ids written by hand (``id:``, ``name=``).
ID_PATTERN = re.compile(r"[\w][\w.-]*")
TRUE_WORDS = ("true", "yes", "1")
FALSE_WORDS = ("false", "no", "0")


def parse_bool(text: str) -> bool:
    """true/false, yes/no, 1/0 (any case). Raises ``ValueError`` for anything else."""
    word = text.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ValueError(f"{text!r} is not a boolean")


def github_slug(text: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, each space a dash."""
    kept = []
    for ch in text.strip().lower():
        if ch in "-_" or unicodedata.category(ch)[0] in "LNM":
            kept.append(ch)
        elif ch == " ":
            kept.append("-")
    return "".join(kept)


def is_id(text: str) -> bool:
    return bool(ID_PATTERN.fullmatch(text))


def convert_param(param: Param, value: Any) -> Any:
    """Turn one raw value (a command-line string, or a YAML default) into the parameter's type.

    Raises ``ValueError`` whose text says what is allowed; the caller adds the location.
    """
    raw = value if isinstance(value, str) else _plain(value)
    kind = param.type
    if kind == "integer":
        if isinstance(value, bool) or not _INTEGER.fullmatch(raw):
            raise ValueError(f"{raw!r} is not an integer{_range(param)}")
        number: float = int(raw)
        _check_range(param, number, raw)
        return number
    if kind == "number":
        try:
            number = float(raw)
        except ValueError:
            number = math.nan
        if isinstance(value, bool) or not math.isfinite(number):
            raise ValueError(f"{raw!r} is not a number{_range(param)}")
        _check_range(param, number, raw)
        return number
    if kind == "duration":
        try:
            seconds = parse_duration(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a duration; {DURATION_HINT}") from None
        _check_range(param, seconds, raw)
        return seconds
    if kind == "boolean":
        try:
            return parse_bool(raw)
        except ValueError:
            raise ValueError(f"{raw!r} is not a boolean; use true/false, yes/no or 1/0") from None
    if kind == "choice":
        if raw not in param.choices:
            raise ValueError(f"{raw!r} is not one of: {', '.join(param.choices)}")
        return raw
    if kind == "string":
        from opsbook.patterns import fullmatch  # noqa: PLC0415 - RE2, linear time (issue 16)

        if param.pattern is not None and not fullmatch(param.pattern, raw):
            raise ValueError(f"{raw!r} does not match the pattern {param.pattern!r}")
        return raw
    raise ValueError(f"a {kind} parameter takes no value here")


def _plain(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def format_bound(param: Param, x: float) -> str:
    if param.type == "duration":
        return format_duration(x)
    return str(int(x)) if float(x).is_integer() else str(x)


def _range(param: Param) -> str:
    low = format_bound(param, param.min) if param.min is not None else None
    high = format_bound(param, param.max) if param.max is not None else None
    if low is not None and high is not None:
        return f" between {low} and {high}"
    if low is not None:
        return f" >= {low}"
    if high is not None:
        return f" <= {high}"
    return ""


def _check_range(param: Param, number: float, raw: str) -> None:
    low = param.min is not None and number < param.min
    high = param.max is not None and number > param.max
    if low or high:
        raise ValueError(f"{raw!r} is out of range: allowed{_range(param)}")
