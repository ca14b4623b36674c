"""The ```` ```yaml procedure ```` block: a procedure's metadata and its parameters."""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from opsbook.durations import DURATION_HINT, parse_duration
from opsbook.errors import RunbookFormatError
from opsbook.runbooks import _yaml
from opsbook.runbooks._collect import Errors
from opsbook.runbooks._values import convert_param, is_id
from opsbook.runbooks.model import PARAM_TYPES, RISKS, WHEN_TO_USE, Param

KNOWN = (
    "id",
    "when_to_use",
    "schedule",
    "permissions",
    "prerequisites",
    "environments",
    "risk",
    "params",
)
PARAM_KEYS = (
    "type",
    "required",
    "default",
    "choices",
    "min",
    "max",
    "pattern",
    "from",
    "description",
)
_PARAM_NAME = re.compile(r"[A-Za-z_]\w*")
Bad = Callable[[str, str], RunbookFormatError]


@dataclass(frozen=True)
class ProcMeta:
    id: str | None
    when_to_use: str | None
    schedule: str | None
    permissions: tuple[str, ...]
    prerequisites: tuple[str, ...]
    environments: tuple[str, ...]
    risk: str
    params: tuple[Param, ...]


EMPTY = ProcMeta(None, None, None, (), (), (), "low", ())


def parse(body: str, *, where: _yaml.Where, errors: Errors) -> ProcMeta:
    """The block's metadata. YAML that does not load, or is not a mapping, raises; a bad key or
    parameter goes to ``errors`` and the others are still checked."""
    doc = _yaml.load(body, where=where, what="procedure block")
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise RunbookFormatError(
            "the procedure block must be a YAML mapping",
            location=where.at(0, 0),
            hint="write key: value lines, e.g. 'risk: low' and 'permissions: [operator]'",
        )
    for key in data:
        if key not in KNOWN:
            errors.add(
                RunbookFormatError(
                    f"unknown procedure key {key!r}",
                    location=doc.key(str(key)),
                    hint=f"known keys: {', '.join(KNOWN)}",
                )
            )
    g = errors.guard
    return ProcMeta(
        id=g(functools.partial(_id, data, doc), None),
        when_to_use=g(functools.partial(_choice, data, doc, "when_to_use", WHEN_TO_USE), None),
        schedule=g(functools.partial(_schedule, data, doc), None),
        permissions=g(functools.partial(_list, data, doc, "permissions"), ()),
        prerequisites=g(functools.partial(_list, data, doc, "prerequisites"), ()),
        environments=g(functools.partial(_list, data, doc, "environments"), ()),
        risk=g(functools.partial(_choice, data, doc, "risk", RISKS), None) or "low",
        params=_params(data.get("params"), doc, errors),
    )


def _id(data: dict[Any, Any], doc: _yaml.Doc) -> str | None:
    if data.get("id") is None:
        return None
    proc_id = _yaml.scalar_text(data["id"]).strip()
    if not is_id(proc_id):
        raise RunbookFormatError(
            f"procedure id {proc_id!r} is not a valid id",
            location=doc.value("id"),
            hint="use letters, digits, '-', '_' and '.', e.g. morning-health-check",
        )
    return proc_id


def _list(data: dict[Any, Any], doc: _yaml.Doc, key: str) -> tuple[str, ...]:
    return _yaml.as_str_tuple(data.get(key), doc=doc, key=(key,), what=key)


def _choice(data: dict[Any, Any], doc: _yaml.Doc, key: str, allowed: tuple[str, ...]) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or value not in allowed:
        raise RunbookFormatError(
            f"{key} {value!r} is not allowed",
            location=doc.value(key),
            hint=f"use one of: {', '.join(allowed)}",
        )
    return value


def _schedule(data: dict[Any, Any], doc: _yaml.Doc) -> str | None:
    value = data.get("schedule")
    if value is None:
        return None
    from croniter import croniter  # noqa: PLC0415 - deferred: only runbooks with a schedule

    text = _yaml.scalar_text(value).strip()
    try:
        ok = isinstance(value, str) and bool(croniter.is_valid(text))
    except (ValueError, TypeError, KeyError, IndexError):
        ok = False
    if not ok:
        raise RunbookFormatError(
            f"schedule {text!r} is not a cron expression",
            location=doc.value("schedule"),
            hint='write five cron fields in quotes, e.g. schedule: "0 7 * * *" (07:00 daily)',
        )
    return text


def _params(value: Any, doc: _yaml.Doc, errors: Errors) -> tuple[Param, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        errors.add(
            RunbookFormatError(
                "params must be a mapping of parameter name to its definition",
                location=doc.value("params"),
                hint="e.g. params: {replicas: {type: integer, min: 1, default: 3}}",
            )
        )
        return ()
    out: list[Param] = []
    for name, spec in value.items():
        param = errors.guard(functools.partial(_param, str(name), spec, doc), None)
        if param is not None:
            out.append(param)
    return tuple(out)


def _param(name: str, spec: Any, doc: _yaml.Doc) -> Param:
    key = ("params", name)
    here = doc.key(*key)
    if not _PARAM_NAME.fullmatch(name):
        raise RunbookFormatError(
            f"parameter name {name!r} is not an identifier",
            location=here,
            hint="use letters, digits and '_' (templates read it as params.NAME)",
        )
    if spec is None:
        spec = {}
    if not isinstance(spec, dict):
        raise RunbookFormatError(
            f"parameter {name!r} must be a mapping",
            location=here,
            hint=f"e.g. {name}: {{type: string, required: true}}",
        )
    for k in spec:
        if k not in PARAM_KEYS:
            raise RunbookFormatError(
                f"parameter {name!r}: unknown key {k!r}",
                location=doc.key(*key, str(k)),
                hint=f"known keys: {', '.join(PARAM_KEYS)}",
            )
    kind = spec.get("type", "choice" if "choices" in spec else "string")
    if kind not in PARAM_TYPES:
        raise RunbookFormatError(
            f"parameter {name!r}: type {kind!r} is not a parameter type",
            location=doc.value(*key, "type"),
            hint=f"use one of: {', '.join(PARAM_TYPES)}",
        )

    def bad(k: str, msg: str, hint: str) -> RunbookFormatError:
        return RunbookFormatError(
            f"parameter {name!r}: {msg}", location=doc.value(*key, k), hint=hint
        )

    required = spec.get("required", False)
    if not isinstance(required, bool):
        raise bad("required", "required must be true or false", "write required: true")
    choices: tuple[str, ...] = ()
    if "choices" in spec:
        if kind != "choice":
            raise bad(
                "choices",
                f"choices apply only to type: choice, not {kind}",
                "write type: choice or remove choices",
            )
        choices = _yaml.as_str_tuple(
            spec["choices"], doc=doc, key=(*key, "choices"), what="choices"
        )
    if kind == "choice" and not choices:
        raise bad(
            "type",
            "a choice parameter needs choices",
            f"add choices, e.g. {name}: {{type: choice, choices: [a, b]}}",
        )
    bounds = {}
    for k in ("min", "max"):
        if spec.get(k) is None:
            continue
        if kind not in ("integer", "number", "duration"):
            raise bad(
                k, f"{k} applies only to integer, number and duration parameters", f"remove {k}"
            )
        bounds[k] = _bound(spec[k], kind, bad=functools.partial(bad, k))
    if "min" in bounds and "max" in bounds and bounds["min"] > bounds["max"]:
        raise bad("min", "min is greater than max", "swap min and max")
    pattern = spec.get("pattern")
    if pattern is not None:
        if kind != "string":
            raise bad("pattern", "pattern applies only to string parameters", "remove pattern")
        pattern = _pattern(pattern, bad=functools.partial(bad, "pattern"))
    source = spec.get("from")
    if kind == "secret":
        if not isinstance(source, str) or not source.strip():
            raise bad(
                "type",
                "a secret parameter needs 'from', the secret's name",
                f"e.g. {name}: {{type: secret, from: db-password}}",
            )
        if spec.get("default") is not None:
            raise bad(
                "default",
                "a secret parameter cannot have a default",
                "remove the default; the value comes from the secret provider",
            )
    elif source is not None:
        raise bad(
            "from", "'from' applies only to secret parameters", "write type: secret or remove from"
        )
    description = spec.get("description")
    param = Param(
        name=name,
        type=kind,
        line=here.line,
        required=required,
        choices=choices,
        min=bounds.get("min"),
        max=bounds.get("max"),
        pattern=pattern,
        secret_from=source.strip() if isinstance(source, str) and kind == "secret" else None,
        description=_yaml.scalar_text(description).strip() if description is not None else "",
    )
    default = spec.get("default")
    if default is None:
        return param
    if required:
        raise bad(
            "default",
            "a required parameter cannot have a default",
            "remove required: true or the default",
        )
    if isinstance(default, (dict, list)):
        raise bad("default", "the default must be a single value", "write one value")
    try:
        typed = convert_param(param, default)
    except ValueError as exc:
        raise bad("default", f"the default is not valid: {exc}", "fix the default") from None
    return replace(param, default=typed)


def _bound(value: Any, kind: str, *, bad: Bad) -> float:
    if isinstance(value, bool):
        raise bad("must be a number", "e.g. min: 1")
    if kind == "duration" and isinstance(value, str):
        try:
            return parse_duration(value)
        except ValueError:
            raise bad(f"{value!r} is not a duration", DURATION_HINT) from None
    if isinstance(value, (int, float)) and math.isfinite(value):
        return float(value)
    raise bad(f"{value!r} is not a number", "e.g. min: 1")


def _pattern(value: Any, *, bad: Bad) -> str:
    """A parameter pattern RE2 compiles (linear-time matching of caller-supplied values)."""
    from opsbook import patterns  # noqa: PLC0415 - deferred: only runbooks with patterns

    if not isinstance(value, str):
        raise bad("pattern must be a string", "quote the regular expression")
    try:
        patterns.compiled(value)
    except patterns.PatternError as exc:
        raise bad(
            f"pattern {value[:80]!r} is not a regular expression RE2 accepts: {exc}",
            patterns.HINT,
        ) from None
    return value
