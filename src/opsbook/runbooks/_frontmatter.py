"""The YAML front matter: ``---`` on the first line, the runbook's metadata, ``---``."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from opsbook.durations import DURATION_HINT, has_unit
from opsbook.errors import Location, RunbookFormatError
from opsbook.runbooks import _yaml
from opsbook.runbooks._collect import Errors
from opsbook.runbooks._values import is_id
from opsbook.runbooks.model import RunbookMeta

_FENCE = re.compile(r"---[ \t]*")
_END = re.compile(r"(---|\.\.\.)[ \t]*")
KNOWN = (
    "id",
    "title",
    "purpose",
    "owner",
    "review_interval",
    "last_reviewed",
    "use_cases",
    "tags",
    "services",
)


@dataclass(frozen=True)
class FrontMatter:
    text: str  # the YAML between the fences
    end_line: int  # 1-based line of the closing fence


def split(lines: list[str]) -> FrontMatter | None:
    """The front matter of a file's lines, or None when the file does not start with ``---``."""
    if not lines or not _FENCE.fullmatch(lines[0].lstrip("\ufeff")):
        return None
    for i in range(1, len(lines)):
        if _END.fullmatch(lines[i]):
            return FrontMatter("\n".join(lines[1:i]), i + 1)
    return FrontMatter("", 0)


def has_front_matter(text: str) -> bool:
    return split(text.splitlines()[:1]) is not None


def key_line(source: str, key: str) -> int:
    """The line of ``key:`` in a runbook's front matter (1 when it is not there)."""
    lines = source.splitlines()
    fm = split(lines)
    if fm is None:
        return 1
    pattern = re.compile(re.escape(key) + r"\s*:")
    for i, line in enumerate(lines[1 : fm.end_line or len(lines)], start=2):
        if pattern.match(line):
            return i
    return 1


def parse_meta(lines: list[str], *, path: str, errors: Errors) -> tuple[RunbookMeta, int]:
    """The runbook's metadata and the 1-based line of the closing ``---``.

    A missing or unclosed front matter, or one that is not a YAML mapping, stops the parse;
    each key's own problem goes to ``errors`` and the other keys are still checked."""
    fm = split(lines)
    if fm is None:
        raise RunbookFormatError(
            "the runbook has no front matter",
            location=Location(path, 1, 1),
            hint="start the file with '---', then 'id: my-runbook' and 'title: My runbook', "
            "then '---'",
        )
    if fm.end_line == 0:
        raise RunbookFormatError(
            "the front matter is not closed",
            location=Location(path, 1, 1),
            hint="end the front matter with a line holding only '---'",
        )
    doc = _yaml.load(fm.text, where=_yaml.Where(path, 2), what="front matter")
    data = doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RunbookFormatError(
            "the front matter must be a YAML mapping (key: value lines)",
            location=Location(path, 2, 1),
            hint="write 'id: my-runbook' and 'title: My runbook' between the '---' lines",
        )
    for key in ("id", "title"):
        errors.guard(functools.partial(_required, data, key, doc, path), None)
    rb_id = errors.guard(functools.partial(_id, data, doc), "")

    def tuple_of(key: str) -> tuple[str, ...]:
        return errors.guard(
            lambda: _yaml.as_str_tuple(data.get(key), doc=doc, key=(key,), what=key), ()
        )

    meta = RunbookMeta(
        id=rb_id,
        title=errors.guard(functools.partial(_text, data, "title", doc), ""),
        purpose=errors.guard(functools.partial(_text, data, "purpose", doc), ""),
        owner=errors.guard(functools.partial(_text, data, "owner", doc), ""),
        review_interval=errors.guard(functools.partial(_interval, data, doc), None),
        last_reviewed=errors.guard(functools.partial(_reviewed, data, doc), None),
        use_cases=tuple_of("use_cases"),
        tags=tuple_of("tags"),
        services=tuple_of("services"),
        extra={str(k): v for k, v in data.items() if k not in KNOWN},
    )
    return meta, fm.end_line


def _required(data: dict[Any, Any], key: str, doc: _yaml.Doc, path: str) -> None:
    value = data.get(key)
    if value is None or not str(value).strip():
        raise RunbookFormatError(
            f"the front matter has no {key!r}",
            location=doc.key(key) if key in data else Location(path, 1, 1),
            hint=f"add '{key}: …' to the front matter"
            + (" (lower-case words joined by dashes, e.g. system-monitoring)") * (key == "id"),
        )


def _id(data: dict[Any, Any], doc: _yaml.Doc) -> str:
    value = data.get("id")
    if value is None:
        return ""  # reported by _required
    rb_id = _yaml.scalar_text(value).strip()
    if rb_id and not is_id(rb_id):
        raise RunbookFormatError(
            f"runbook id {rb_id!r} is not a valid id",
            location=doc.value("id"),
            hint="use letters, digits, '-', '_' and '.', e.g. system-monitoring",
        )
    return rb_id


def _text(data: dict[Any, Any], key: str, doc: _yaml.Doc) -> str:
    value = data.get(key)
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        raise RunbookFormatError(
            f"front matter {key!r} must be text",
            location=doc.value(key),
            hint=f"write {key}: followed by one line of text",
        )
    return _yaml.scalar_text(value).strip()


def _interval(data: dict[Any, Any], doc: _yaml.Doc) -> str | None:
    value = data.get("review_interval")
    if value is None:
        return None
    text = _yaml.scalar_text(value).strip()
    if isinstance(value, (dict, list)) or not has_unit(text):
        raise RunbookFormatError(
            f"review_interval {text!r} is not a duration with a unit",
            location=doc.value("review_interval"),
            hint=f"{DURATION_HINT}; e.g. 30d (monthly), 90d (quarterly), 365d (annual)",
        )
    return text


def _reviewed(data: dict[Any, Any], doc: _yaml.Doc) -> str | None:
    value = data.get("last_reviewed")
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    try:
        return date.fromisoformat(str(value).strip()).isoformat()
    except ValueError:
        raise RunbookFormatError(
            f"last_reviewed {value!r} is not a date",
            location=doc.value("last_reviewed"),
            hint="write the date as YYYY-MM-DD, e.g. last_reviewed: 2026-11-20",
        ) from None
