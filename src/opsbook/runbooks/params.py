"""Procedure parameters given on the command line (``--param name=value``) → typed values.

Every value is checked before anything runs; a bad value names the parameter and what is
allowed. ``type: secret`` parameters are never given here: the engine resolves them from the
secret provider named by ``from`` when a template reads them.

Before its type is checked, each given value must be UTF-8 text (no lone surrogates: undecodable
bytes on the command line, ``\\ud800`` escapes in JSON), at most ``max_bytes`` long, and must not
hold a configured secret in any form the redactor knows (``secret_in``): parameters are stored
and audited as given, so a secret belongs in a ``type: secret`` parameter. No refusal repeats
the value.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from opsbook.config import DEFAULT_PARAM_MAX_BYTES as PARAM_MAX_BYTES
from opsbook.durations import DURATION_HINT
from opsbook.errors import ParameterError
from opsbook.runbooks._values import convert_param, format_bound
from opsbook.runbooks.model import Param, Procedure


class FoundSecret(Protocol):
    """What a secret finder reports (``opsbook.engine.redaction.SecretHit``)."""

    @property
    def source(self) -> str: ...

    @property
    def exact(self) -> bool: ...


SecretFinder = Callable[[str], FoundSecret | None]

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


def check_text(
    name: str,
    value: str,
    *,
    max_bytes: int | None = PARAM_MAX_BYTES,
    secret_in: SecretFinder | None = None,
    where: str = "",
) -> None:
    """Refuse a parameter value that is not UTF-8 text, is longer than ``max_bytes`` (None: no
    limit) or holds a configured secret. ``where`` is the parameter's definition (file:line)."""
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise ParameterError(
            f"parameter {name!r} is not valid UTF-8 text ({_bad_char(value[exc.start])} at "
            f"character {exc.start})",
            field=name,
            hint="send UTF-8 text: undecodable bytes and lone surrogate escapes "
            "(\\ud800-\\udfff) are refused",
        ) from None
    if max_bytes is not None and size > max_bytes:
        raise ParameterError(
            f"parameter {name!r} is {size} bytes, over the limit of {max_bytes} bytes "
            "(param_max_bytes)",
            field=name,
            hint="pass a shorter value (a path or a reference to the data, not the data), or "
            "raise the limit: OPSBOOK_PARAM_MAX_BYTES or [limits] param_max_bytes in opsbook.toml",
        )
    hit = secret_in(value) if secret_in is not None and value else None
    if hit is not None:
        what = "is" if hit.exact else "contains"
        raise ParameterError(
            f"parameter {name!r} {what} the value of a configured secret ({hit.source}); "
            "parameters are stored and audited as given",
            field=name,
            hint=f"declare {name!r} `type: secret` (with `from: SECRET-NAME`)"
            + (f" at {where}" if where else "")
            + " so the engine reads it from the secret provider, and stop passing it as a value",
        )


def _bad_char(ch: str) -> str:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # a byte the command line could not decode (surrogateescape)
        return f"byte 0x{code - 0xDC00:02x}"
    return f"lone surrogate U+{code:04X}"


def validate_params(
    procedure: Procedure,
    raw: Mapping[str, str],
    *,
    path: str = "",
    max_bytes: int | None = PARAM_MAX_BYTES,
    secret_in: SecretFinder | None = None,
) -> dict[str, object]:
    """Check and convert ``raw`` against the procedure's parameters; apply defaults.

    Optional parameters without a default that are not given are absent from the result (CEL:
    ``has(params.name)``). Secret parameters are never in the result. ``max_bytes`` and
    ``secret_in`` are described in :func:`check_text`.
    """
    known = {p.name: p for p in procedure.params}
    for name in raw:
        if not _is_text(name):
            raise ParameterError(
                "a parameter name is not valid UTF-8 text",
                field=name.encode("utf-8", "backslashreplace").decode("ascii", "replace"),
                hint="parameter names are the ones the procedure declares: "
                + ", ".join(sorted(p.name for p in procedure.params if p.type != "secret")),
            )
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
        where = f"{path}:{known[name].line}" if path else ""
        check_text(name, raw[name], max_bytes=max_bytes, secret_in=secret_in, where=where)
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


def _is_text(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
