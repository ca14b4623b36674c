"""Procedure parameters given on the command line (``--param name=value``) → typed values.

Every value is checked before anything runs; a bad value names the parameter and what is
allowed. ``type: secret`` parameters are never given here: the engine resolves them from the
secret provider named by ``from`` when a template reads them.
"""

from __future__ import annotations

from collections.abc import Mapping

from opsbook.errors import ParameterError
from opsbook.runbooks._values import DURATION_HINT, convert_param, format_bound
from opsbook.runbooks.model import Param, Procedure

NOT_ON_COMMAND_LINE = (
    "secret parameters are resolved from the secret provider `from`, never passed on the "
    "command line"
)


def parse_param_args(items: list[str]) -> dict[str, str]:
    """``["replicas=3", "reason=INC-42"]`` → ``{"replicas": "3", "reason": "INC-42"}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise ParameterError(
                f"--param {item!r} is not NAME=VALUE",
                field=name or item,
                hint="write --param NAME=VALUE, e.g. --param replicas=3",
            )
        if name in out:
            raise ParameterError(
                f"parameter {name!r} is given twice",
                field=name,
                hint=f"pass --param {name}=… once",
            )
        out[name] = value
    return out


def validate_params(
    procedure: Procedure, raw: Mapping[str, str], *, path: str = ""
) -> dict[str, object]:
    """Check and convert ``raw`` against the procedure's parameters; apply defaults.

    Optional parameters without a default that are not given are absent from the result (CEL:
    ``has(params.name)``). Secret parameters are never in the result.
    """
    known = {p.name: p for p in procedure.params}
    for name in raw:
        if name not in known:
            listed = ", ".join(sorted(p.name for p in procedure.params if p.type != "secret"))
            raise ParameterError(
                f"unknown parameter {name!r} for procedure {procedure.id!r}",
                field=name,
                hint=f"its parameters are: {listed}" if listed else "it takes no parameters",
            )
        if known[name].type == "secret":
            raise ParameterError(
                f"parameter {name!r}: {NOT_ON_COMMAND_LINE}",
                field=name,
                hint=f"store the secret {known[name].secret_from!r} in a secret provider "
                f"and drop --param {name}",
            )
    values: dict[str, object] = {}
    for p in procedure.params:
        if p.type == "secret":
            continue
        if p.name not in raw or (p.required and not raw[p.name].strip()):
            if p.required:
                raise ParameterError(
                    f"missing required parameter {p.name!r} ({p.type})",
                    field=p.name,
                    hint=f"pass --param {p.name}=…; {_allowed(p, path)}",
                )
            if p.default is not None:
                values[p.name] = p.default
            continue
        try:
            values[p.name] = convert_param(p, raw[p.name])
        except ValueError as exc:
            raise ParameterError(
                f"parameter {p.name!r}: {exc}", field=p.name, hint=_allowed(p, path)
            ) from None
    return values


def _allowed(p: Param, path: str) -> str:
    """What a parameter accepts, said to the user."""
    if p.type == "choice":
        text = f"one of: {', '.join(p.choices)}"
    elif p.type == "boolean":
        text = "true/false, yes/no or 1/0"
    elif p.type == "duration":
        text = DURATION_HINT.removeprefix("write ")
    elif p.type in ("integer", "number"):
        text = f"{'a whole number' if p.type == 'integer' else 'a number'}"
    elif p.pattern:
        text = f"text matching {p.pattern!r}"
    else:
        text = "any text"
    if p.min is not None:
        text += f", at least {format_bound(p, p.min)}"
    if p.max is not None:
        text += f", at most {format_bound(p, p.max)}"
    if p.description:
        text += f" ({p.description})"
    if path:
        text += f"; defined at {path}:{p.line}"
    return f"{p.name} takes {text}" if not text.startswith("one of") else f"{p.name}: {text}"
