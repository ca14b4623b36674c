"""Checks every ``deployments.yaml`` section shares: known keys (with a suggestion), names,
whole numbers and durations in range, each a ValidationError at the key's line."""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Any

from opsbook.durations import format_duration

if TYPE_CHECKING:
    from opsbook.incidents._yamlfile import YamlDoc

Key = tuple[str | int, ...]
HINT = "see the deployments.yaml that `opsbook init` writes (docs in its comments)"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def known_keys(
    doc: YamlDoc,
    data: dict[Any, Any],
    known: tuple[str, ...],
    *,
    where: str,
    key: Key = (),
) -> None:
    for k in data:
        if k not in known:
            close = difflib.get_close_matches(str(k), known, n=1)
            raise doc.error(
                f"{where}: unknown key {k!r}",
                *key,
                str(k),
                hint=(f"did you mean {close[0]!r}? " if close else "")
                + f"the keys here are: {', '.join(known)}",
            )


def valid_name(doc: YamlDoc, value: Any, what: str, *key: str | int) -> str:
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise doc.error(
            f"{what} {value!r} is not a valid name",
            *key,
            hint="use letters, digits, '-', '_' or '.', starting with a letter or digit",
        )
    return value


def whole_number(
    doc: YamlDoc,
    raw: dict[str, Any],
    name: str,
    key: Key,
    *,
    default: int,
    low: int,
    high: int,
    what: str,
    hint: str,
) -> int:
    value = raw.get(name, default)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise doc.error(
            f"{what}: {name} must be a whole number from {low} to {high}, not {value!r}",
            *key,
            name,
            hint=hint,
        )
    return value


def seconds(
    doc: YamlDoc,
    raw: dict[str, Any],
    name: str,
    key: Key,
    *,
    low: float,
    high: float,
    what: str,
    positive: bool = False,
) -> float:
    from opsbook.incidents._yamlfile import duration  # noqa: PLC0415

    seconds = duration(doc, raw[name], *key, name)
    if (positive and seconds <= 0) or seconds < low or seconds > high:
        bound = "longer than 0 and " if positive else ""
        if low > 0:
            bound = f"at least {format_duration(low)} and "
        raise doc.error(
            f"{what}: {name} must be {bound}at most {format_duration(high)}, not {raw[name]!r}",
            *key,
            name,
            hint=f"e.g. {name}: 15s",
        )
    return seconds
