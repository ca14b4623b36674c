"""Durations, the one grammar for every file, option and field that takes one.

``500ms``, ``30s``, ``5m``, ``1h``, ``1d``, or a plain number of seconds (``90``, ``1.5``,
``.5``); white space around the number and unit is allowed. Units are lower case. Callers decide
whether zero is allowed and how to report a bad value (file:line, API field, CLI option).
"""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"\s*(\d+(?:\.\d+)?|\.\d+)\s*(ms|s|m|h|d)?\s*")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

#: The hint every "not a duration" message gives.
DURATION_HINT = "write a duration such as 500ms, 30s, 5m, 1h, 1d, or a number of seconds"


def parse_duration(text: str) -> float:
    """``500ms``, ``30s``, ``5m``, ``1h``, ``1d`` or a plain number of seconds → seconds.

    Raises ``ValueError`` for anything else.
    """
    match = _DURATION.fullmatch(text)
    if not match:
        raise ValueError(f"{text!r} is not a duration")
    return float(match.group(1)) * _UNITS[match.group(2)]


def duration_seconds(value: object) -> float:
    """A duration from YAML, JSON or a form: a number (seconds) or text for
    :func:`parse_duration`. Booleans, non-finite and negative numbers raise ``ValueError``."""
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{value!r} is not a duration")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"{value!r} is not a duration")
        return float(value)
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"{value!r} is not a duration")


def format_duration(seconds: float) -> str:
    """Seconds as the largest whole unit: 3600 → ``1h``, 90 → ``90s``, 0.5 → ``500ms``."""
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0), ("s", 1.0)):
        if seconds >= size and float(seconds / size).is_integer():
            return f"{int(seconds / size)}{unit}"
    return f"{round(seconds * 1000, 3):g}ms" if seconds < 1 else f"{seconds:g}s"


def has_unit(text: str) -> bool:
    """Whether ``text`` is a duration written with a unit (``30d``, not ``30``)."""
    match = _DURATION.fullmatch(text)
    return bool(match and match.group(2))
