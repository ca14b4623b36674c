"""The bodies of ``expect``, ``action``, ``approval``, ``decide`` and ``http`` blocks."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from opsbook.durations import DURATION_HINT, parse_duration
from opsbook.errors import ExpressionError, Location, RunbookFormatError
from opsbook.runbooks import _yaml
from opsbook.runbooks._values import is_id
from opsbook.runbooks.model import ApprovalSpec, DecideRule, Expectation

CompileCel = Callable[[str, Location], None]
_ACTION = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*")
_REF = re.compile(r"[\w.-]+(#[\w.-]+)?")
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
APPROVAL_KEYS = ("quorum", "roles", "expires")


@dataclass(frozen=True)
class GotoRef:
    """A ``goto`` target to check once every step of the procedure is known."""

    target: str
    location: Location


def cel(expr: str, where: Location, compile_cel: CompileCel, what: str) -> None:
    try:
        compile_cel(expr, where)
    except ExpressionError as exc:
        raise RunbookFormatError(
            f"{what}: {exc.message}",
            location=exc.location or where,
            hint=exc.hint or "write a CEL expression",
        ) from None


def expectations(
    content: str, *, where: _yaml.Where, compile_cel: CompileCel
) -> tuple[Expectation, ...]:
    """One CEL assertion per non-blank line; ``#`` starts a comment line."""
    out = []
    for i, raw in enumerate(content.splitlines()):
        expr = raw.strip()
        if not expr or expr.startswith("#"):
            continue
        col = len(raw) - len(raw.lstrip())
        loc = where.at(i, col)
        cel(expr, loc, compile_cel, "expect")
        out.append(Expectation(expr, loc.line))
    if not out:
        raise RunbookFormatError(
            "the expect block has no assertion",
            location=where.at(-1, 0),
            hint="write one CEL expression per line, e.g. exit_code == 0, or remove the block",
        )
    return tuple(out)


def action(content: str, *, where: _yaml.Where) -> tuple[str, dict[str, Any]]:
    doc = _yaml.load(content, where=where, what="action block")
    data = doc.data
    hint = "write one line 'action.name: {arg: value}', e.g. platform.restart: {service: x}"
    if not isinstance(data, dict) or len(data) != 1:
        raise RunbookFormatError(
            "an action block must hold exactly one 'action.name: {args}' entry",
            location=where.at(0, 0) if data is None else doc.value(),
            hint=hint,
        )
    ((name, args),) = data.items()
    name = str(name)
    if not _ACTION.fullmatch(name):
        raise RunbookFormatError(
            f"{name!r} is not an action name", location=doc.key(name), hint=hint
        )
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise RunbookFormatError(
            f"the arguments of {name} must be a mapping",
            location=doc.value(name),
            hint=hint,
        )
    return name, {str(k): v for k, v in args.items()}


def approval(content: str, *, where: _yaml.Where) -> ApprovalSpec:
    doc = _yaml.load(content, where=where, what="approval block")
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise RunbookFormatError(
            "an approval block must be a YAML mapping",
            location=where.at(0, 0),
            hint="e.g. quorum: 2, roles: [approver], expires: 1h",
        )
    for key in data:
        if key not in APPROVAL_KEYS:
            raise RunbookFormatError(
                f"unknown approval key {key!r}",
                location=doc.key(str(key)),
                hint=f"known keys: {', '.join(APPROVAL_KEYS)}",
            )
    quorum = data.get("quorum", 1)
    if isinstance(quorum, bool) or not isinstance(quorum, int) or quorum < 1:
        raise RunbookFormatError(
            f"quorum {quorum!r} must be a whole number of at least 1",
            location=doc.value("quorum"),
            hint="e.g. quorum: 2 (two people other than the one who started the run)",
        )
    roles = _yaml.as_str_tuple(data.get("roles"), doc=doc, key=("roles",), what="roles")
    expires = None
    if data.get("expires") is not None:
        try:
            expires = parse_duration(_yaml.scalar_text(data["expires"]))
        except ValueError:
            expires = -1.0
        if expires <= 0:
            raise RunbookFormatError(
                f"expires {data['expires']!r} is not a positive duration",
                location=doc.value("expires"),
                hint=DURATION_HINT,
            )
    return ApprovalSpec(quorum=quorum, roles=roles, expires=expires)


def decide(
    content: str, *, where: _yaml.Where, compile_cel: CompileCel
) -> tuple[tuple[DecideRule, ...], list[GotoRef]]:
    doc = _yaml.load(content, where=where, what="decide block")
    data = doc.data
    hint = "write a list: '- {if: CEL, goto: STEP}', '- {if: CEL, run: RUNBOOK#PROC}', "
    hint += "'- {else: STEP}'"
    if not isinstance(data, list) or not data:
        raise RunbookFormatError(
            "a decide block must be a non-empty YAML list of branches",
            location=where.at(0, 0),
            hint=hint,
        )
    rules: list[DecideRule] = []
    gotos: list[GotoRef] = []
    for i, item in enumerate(data):
        here = doc.key(i)
        if not isinstance(item, dict):
            raise RunbookFormatError(f"branch {i + 1} must be a mapping", location=here, hint=hint)
        unknown = [k for k in item if k not in ("if", "goto", "run", "else")]
        if unknown:
            raise RunbookFormatError(
                f"branch {i + 1}: unknown key {unknown[0]!r}",
                location=doc.key(i, str(unknown[0])),
                hint=hint,
            )
        if "else" in item:
            if len(item) != 1:
                raise RunbookFormatError(
                    f"branch {i + 1}: 'else' stands alone",
                    location=here,
                    hint="write '- else: STEP' or '- else: {run: RUNBOOK#PROC}'",
                )
            if i != len(data) - 1:
                raise RunbookFormatError(
                    "'else' must be the last branch", location=here, hint="move it to the end"
                )
            target = item["else"]
            sub: dict[Any, Any] = {"goto": target} if not isinstance(target, dict) else target
            goto, run = _target(sub, doc, (i, "else"), hint)
            rules.append(DecideRule(None, goto, run, here.line))
        else:
            cond = item.get("if")
            if not isinstance(cond, str) or not cond.strip():
                raise RunbookFormatError(
                    f"branch {i + 1} has no 'if' condition", location=here, hint=hint
                )
            cel(cond, doc.value(i, "if"), compile_cel, "decide")
            goto, run = _target({k: v for k, v in item.items() if k != "if"}, doc, (i,), hint)
            rules.append(DecideRule(cond.strip(), goto, run, here.line))
        if goto is not None:
            gotos.append(GotoRef(goto, here))
    return tuple(rules), gotos


def _target(
    item: dict[Any, Any], doc: _yaml.Doc, key: tuple[str | int, ...], hint: str
) -> tuple[str | None, str | None]:
    if len(item) != 1 or next(iter(item)) not in ("goto", "run"):
        raise RunbookFormatError(
            "a branch needs exactly one of 'goto' or 'run'", location=doc.key(*key), hint=hint
        )
    ((kind, value),) = item.items()
    text = _yaml.scalar_text(value).strip() if value is not None else ""
    if kind == "goto" and is_id(text):
        return text, None
    if kind == "run" and _REF.fullmatch(text):
        return None, text
    raise RunbookFormatError(
        f"{kind} target {text!r} is not a {'step id' if kind == 'goto' else 'RUNBOOK#PROCEDURE'}",
        location=doc.value(*key, kind) if (*key, kind) in doc.values else doc.value(*key),
        hint=hint,
    )


def http_request_line(content: str, *, where: _yaml.Where) -> None:
    """The first line that is not blank must be the request line ``METHOD URL``."""
    for i, raw in enumerate(content.splitlines()):
        line = raw.strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) >= 2 and (parts[0] in HTTP_METHODS or parts[0].startswith("{{")):
            return
        raise RunbookFormatError(
            f"the http block must start with 'METHOD URL', not {line[:40]!r}",
            location=where.at(i, len(raw) - len(raw.lstrip())),
            hint=f"e.g. 'GET https://…' (methods: {', '.join(HTTP_METHODS)}), then header lines, "
            "a blank line and the body",
        )
