"""Fence info strings: ``TYPE {attributes}``, Runme style or JSON, and their typed options."""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opsbook.durations import DURATION_HINT, parse_duration
from opsbook.errors import ExpressionError, Location, RunbookFormatError
from opsbook.runbooks._collect import Errors
from opsbook.runbooks._values import ID_PATTERN, is_id, parse_bool
from opsbook.runbooks.model import QUEUE_PATTERN, RISKS, OnFailure, StepOptions

KNOWN = (
    "name",
    "timeout",
    "retries",
    "retry_delay",
    "when",
    "for_each",
    "on_failure",
    "idempotent",
    "risk",
    "cwd",
    "env",
    "db",
    "write",
    "ignore",
    "queue",
)
#: A ``queue`` attribute's value: the logical queue of the workers that run the step (ADR 0017).
_QUEUE = re.compile(QUEUE_PATTERN)
#: Blocks that need no worker (the engine answers them itself, or a person does): never routed.
_UNROUTED = ("approval", "decide")
#: Runme's cell attributes that opsbook does not use: accepted and ignored, so a runbook written
#: with Runme (which adds ``id`` to every block it touches) parses and lints clean. ``name`` and
#: ``cwd`` are Runme's too and mean the same here.
RUNME_IGNORED = frozenset(
    (
        "id",
        "interactive",
        "background",
        "closeTerminalOnSuccess",
        "openTerminalOnError",
        "excludeFromRunAll",
        "mimeType",
        "promptEnv",
        "skipPrompts",
        "terminalRows",
        "category",
        "interpreter",
    )
)
_KEY = re.compile(r"[A-Za-z_][\w-]*")
_ENV_NAME = re.compile(r"[A-Za-z_]\w*")
_REF = re.compile(r"[\w.-]+(#[\w.-]+)?")
_FENCE_OPEN = re.compile(r"\s*(`{3,}|~{3,})\s*")


@dataclass(frozen=True)
class Attr:
    key: str
    value: str
    col: int  # 1-based file column of the key
    vcol: int  # 1-based file column of the value's first character


@dataclass(frozen=True)
class Info:
    """A fence's info string split into its type word, the words after it, and attributes."""

    word: str
    words: tuple[str, ...]  # further words before any '{'
    attr_text: str  # the '{…}' part, '' when absent
    attr_col: int  # 1-based file column of the '{'
    col: int  # 1-based file column of the type word


def split_info(info: str, line_text: str) -> Info:
    """Split a fence's info string; columns come from the fence's line in the file."""
    match = _FENCE_OPEN.match(line_text)
    raw = line_text[match.end() :].rstrip() if match else ""
    base = match.end() + 1 if match else 1
    if not raw.startswith(info.split(" ", 1)[0] if info else "\0"):
        raw, base = info.strip(), 1
    brace = raw.find("{")
    head = raw if brace < 0 else raw[:brace]
    words = head.split()
    word = words[0] if words else ""
    return Info(
        word=word,
        words=tuple(words[1:]),
        attr_text=raw[brace:].strip() if brace >= 0 else "",
        attr_col=base + brace if brace >= 0 else base + len(raw),
        col=base,
    )


def parse_attrs(info: Info, *, path: str, line: int) -> list[Attr]:
    """The attributes in ``{…}``: ``{name=x timeout=30s when="a > 1"}`` or ``{"name": "x"}``."""
    text = info.attr_text
    if not text:
        return []
    where = Location(path, line, info.attr_col)
    if not text.endswith("}"):
        raise RunbookFormatError(
            "the attributes are not closed with '}'",
            location=where,
            hint='write attributes as {name=check-pods timeout=30s} or {"name": "check-pods"}',
        )
    inner = text[1:-1]
    if inner.lstrip().startswith('"'):
        return _json_attrs(text, where)
    attrs: list[Attr] = []
    i = 0
    while i < len(inner):
        if inner[i].isspace() or inner[i] == ",":
            i += 1
            continue
        col = info.attr_col + 1 + i
        key_match = _KEY.match(inner, i)
        if not key_match:
            raise RunbookFormatError(
                f"unexpected {inner[i]!r} in the attributes",
                location=Location(path, line, col),
                hint="write attributes as key=value separated by spaces, e.g. {name=x retries=2}",
            )
        key = key_match.group(0)
        i = key_match.end()
        if i >= len(inner) or inner[i] != "=":
            attrs.append(Attr(key, "true", col, col))  # a bare flag: {idempotent}
            continue
        i += 1
        vcol = info.attr_col + 1 + i
        if i < len(inner) and inner[i] in "\"'":
            value, i = _quoted(inner, i, Location(path, line, vcol))
            vcol += 1
        else:
            end = i
            while end < len(inner) and not inner[end].isspace():
                end += 1
            value, i = inner[i:end], end
        attrs.append(Attr(key, value, col, vcol))
    return attrs


def _quoted(text: str, start: int, where: Location) -> tuple[str, int]:
    quote = text[start]
    out: list[str] = []
    i = start + 1
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in (quote, "\\"):
            out.append(text[i + 1])
            i += 2
            continue
        if ch == quote:
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise RunbookFormatError(
        f"unterminated {quote} quote in the attributes",
        location=where,
        hint=f"close the value with {quote}",
    )


def _json_attrs(text: str, where: Location) -> list[Attr]:
    try:
        data = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise RunbookFormatError(
            f"the JSON attributes are not valid JSON: {exc}",
            location=where,
            hint='write JSON attributes as {"name": "check-pods", "timeout": "30s"}',
        ) from None
    if not isinstance(data, dict):
        raise RunbookFormatError(
            "the JSON attributes must be an object",
            location=where,
            hint='write {"name": "check-pods"}',
        )
    attrs = []
    for key, value in data.items():
        col = where.col + max(text.find(json.dumps(key)), 0)
        if isinstance(value, bool):
            text_value = "true" if value else "false"
        elif isinstance(value, str):
            text_value = value
        elif isinstance(value, (int, float)) or (key == "env" and isinstance(value, dict)):
            text_value = json.dumps(value)
        else:
            raise RunbookFormatError(
                f"attribute {key!r} must be a string, number or boolean",
                location=Location(where.path, where.line, col),
                hint="give the value as a JSON string, number or true/false",
            )
        attrs.append(Attr(str(key), text_value, col, col))
    return attrs


def build_options(
    attrs: list[Attr],
    *,
    kind: str,
    interpreter: str | None,
    path: str,
    line: int,
    compile_cel: Callable[[str, Location], None],
    errors: Errors,
) -> StepOptions:
    """Check every attribute and build the step's options (``name`` and ``ignore`` excluded).
    Each bad attribute goes to ``errors``; the others are still checked."""
    seen: dict[str, Attr] = {}
    for a in attrs:
        if a.key in RUNME_IGNORED:
            continue
        if a.key not in KNOWN:
            errors.add(
                RunbookFormatError(
                    f"unknown attribute {a.key!r}",
                    location=Location(path, line, a.col),
                    hint=f"known attributes: {', '.join(KNOWN)} (Runme's "
                    f"{', '.join(sorted(RUNME_IGNORED, key=str.lower))} are accepted and ignored)",
                )
            )
            continue
        if a.key in seen:
            errors.add(
                RunbookFormatError(
                    f"attribute {a.key!r} is given twice",
                    location=Location(path, line, a.col),
                    hint="keep one of them",
                )
            )
            continue
        seen[a.key] = a
        if a.key in ("db", "write") and kind != "sql":
            errors.add(
                RunbookFormatError(
                    f"attribute {a.key!r} applies only to sql blocks",
                    location=Location(path, line, a.col),
                    hint=f"remove {a.key}= from this {kind} block",
                )
            )
        if a.key == "queue" and kind in _UNROUTED:
            errors.add(
                RunbookFormatError(
                    f"attribute 'queue' does not apply to {kind} blocks (they need no worker)",
                    location=Location(path, line, a.col),
                    hint=f"remove queue= from this {kind} block",
                )
            )
    values: dict[str, Any] = {"interpreter": interpreter}
    for key, a in seen.items():
        where = Location(path, line, a.vcol)
        errors.guard(functools.partial(_option, key, a, where, compile_cel, values), None)
    return StepOptions(**values)


def _option(
    key: str,
    a: Attr,
    where: Location,
    compile_cel: Callable[[str, Location], None],
    values: dict[str, Any],
) -> None:
    """Check one attribute and put its typed value in ``values``."""
    if key == "name":
        if not is_id(a.value):
            raise RunbookFormatError(
                f"name {a.value!r} is not a valid step id",
                location=where,
                hint=f"use letters, digits, '-', '_' and '.' (pattern {ID_PATTERN.pattern})",
            )
    elif key in ("timeout", "retry_delay"):
        values[key] = _duration(a, where, positive=key == "timeout")
    elif key == "retries":
        if not re.fullmatch(r"\d+", a.value):
            raise RunbookFormatError(
                f"retries={a.value!r} is not a whole number",
                location=where,
                hint="write retries=2 (0 means no retry)",
            )
        values["retries"] = int(a.value)
    elif key in ("when", "for_each"):
        _cel(a, where, compile_cel)
        values[key] = a.value
    elif key == "on_failure":
        values["on_failure"] = _on_failure(a.value, where)
    elif key in ("idempotent", "write", "ignore"):
        flag = _flag(a, where)
        if key != "ignore":
            values[key] = flag
    elif key == "risk":
        if a.value not in RISKS:
            raise RunbookFormatError(
                f"risk={a.value!r} is not a risk level",
                location=where,
                hint=f"use one of: {', '.join(RISKS)}",
            )
        values["risk"] = a.value
    elif key == "env":
        values["env"] = _env(a.value, where)
    elif key == "queue":
        if not _QUEUE.fullmatch(a.value):
            raise RunbookFormatError(
                f"queue={a.value!r} is not a queue name",
                location=where,
                hint="use lower-case letters, digits, '.', '_' and '-', starting with a letter or "
                f"digit (pattern {QUEUE_PATTERN}), e.g. {{queue=db}}",
            )
        values["queue"] = a.value
    else:  # cwd, db
        if not a.value:
            raise RunbookFormatError(
                f"{key}= is empty", location=where, hint=f"give {key} a value or remove it"
            )
        values[key] = a.value


def _duration(a: Attr, where: Location, *, positive: bool) -> float:
    try:
        seconds = parse_duration(a.value)
    except ValueError:
        raise RunbookFormatError(
            f"{a.key}={a.value!r} is not a duration", location=where, hint=DURATION_HINT
        ) from None
    if positive and seconds <= 0:
        raise RunbookFormatError(
            f"{a.key} must be more than zero", location=where, hint="e.g. timeout=30s"
        )
    return seconds


def _flag(a: Attr, where: Location) -> bool:
    try:
        return parse_bool(a.value)
    except ValueError:
        raise RunbookFormatError(
            f"{a.key}={a.value!r} is not true or false",
            location=where,
            hint=f"write {a.key}=true or {a.key}=false",
        ) from None


def _cel(a: Attr, where: Location, compile_cel: Callable[[str, Location], None]) -> None:
    try:
        compile_cel(a.value, where)
    except ExpressionError as exc:
        raise RunbookFormatError(
            f"{a.key}: {exc.message}",
            location=exc.location or where,
            hint=exc.hint or "write a CEL expression",
        ) from None


def _on_failure(value: str, where: Location) -> OnFailure:
    hint = "use on_failure=stop, continue, goto:STEP or run:RUNBOOK#PROCEDURE"
    if value in ("stop", "continue"):
        return OnFailure(value)
    action, sep, target = value.partition(":")
    if sep and action == "goto" and is_id(target):
        return OnFailure("goto", target)
    if sep and action == "run" and _REF.fullmatch(target):
        return OnFailure("run", target)
    raise RunbookFormatError(f"on_failure={value!r} is not understood", location=where, hint=hint)


def _env(value: str, where: Location) -> dict[str, str]:
    hint = 'write env=\'{"K": "V"}\' or env=K=V,K2=V2'
    pairs: dict[str, str] = {}
    if value.lstrip().startswith("{"):
        try:
            data = json.loads(value)
        except (ValueError, RecursionError):
            data = None
        if not isinstance(data, dict):
            raise RunbookFormatError("env is not a JSON object", location=where, hint=hint)
        for k, v in data.items():
            if isinstance(v, (dict, list)) or v is None:
                raise RunbookFormatError(f"env {k!r} must be a string", location=where, hint=hint)
            pairs[str(k)] = v if isinstance(v, str) else json.dumps(v)
    else:
        for part in value.split(","):
            k, sep, v = part.partition("=")
            if not sep:
                raise RunbookFormatError(
                    f"env entry {part!r} has no '='", location=where, hint=hint
                )
            pairs[k.strip()] = v
    for k in pairs:
        if not _ENV_NAME.fullmatch(k):
            raise RunbookFormatError(
                f"{k!r} is not an environment variable name",
                location=where,
                hint="use letters, digits and '_', not starting with a digit",
            )
    return pairs
