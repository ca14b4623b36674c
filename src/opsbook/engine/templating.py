"""Templates in block bodies, action arguments, ``env`` values and ``cwd``: sandboxed Jinja2.

Variables: ``params``, ``env``, ``item``, ``steps``, ``execution`` and the function
``secret("name")`` (resolved at run time; the value is registered with the redactor).

How a value becomes text: None → empty, booleans → ``true``/``false``, mappings and lists →
JSON, anything else ``str``. Where it goes depends on the block type, so a value can never
change the meaning of the block around it:

- ``sh`` — quoted for the shell context it sits in (:mod:`.runners.shell_quoting`);
- ``sql`` — a bind parameter of the database driver (:mod:`.runners.text_quoting`);
- ``http`` — no line breaks in the request line and headers, JSON-escaped in JSON strings;
- ``promql`` — escaped inside strings, names/numbers only outside;
- anything else (action arguments, ``env``, ``cwd``) — as is.

An undefined name, a syntax error or a forbidden operation is an :class:`TemplateError` (an
:class:`~opsbook.errors.ExpressionError`) saying which line of the block. Text without ``{{``,
``{%`` or ``{#`` is returned untouched without Jinja; compiled templates are cached.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from opsbook.engine._dry import NotRun
from opsbook.engine.runners._placeholders import PH, text_of
from opsbook.engine.runners.shell_quoting import fill_shell
from opsbook.engine.runners.text_quoting import (
    fill_http,
    fill_promql,
    fill_sql,
    looks_like_request,
)
from opsbook.errors import ExpressionError, OpsbookError
from opsbook.runbooks.model import StepKind

if TYPE_CHECKING:
    from opsbook.engine.secrets import SecretResolver

_VALUES = "_opsbook_values"
_MARKERS = ("{{", "{%", "{#")
_SINGLE = re.compile(r"\s*\{\{-?(.*?)-?\}\}\s*", re.S)
_VARIABLES_HINT = (
    'templates can read params, env, item, steps, execution and secret("NAME"); '
    "check the spelling against the procedure's params and the environment file"
)
_Filler = Callable[[str, list[Any]], str]


class TemplateError(ExpressionError):
    """A template that cannot be rendered; ``line`` is the line within the block (1-based)."""

    def __init__(self, message: str, *, line: int | None = None, hint: str | None = None) -> None:
        where = f"line {line} of the block: " if line else ""
        super().__init__(f"template {where}{message}", hint=hint)
        self.line = line


def _has_markers(text: str) -> bool:
    return any(m in text for m in _MARKERS)


@lru_cache(maxsize=2)
def _environment(collect: bool) -> Any:
    """The sandboxed Jinja environment; ``collect`` renders every value to a placeholder."""
    from jinja2 import StrictUndefined, pass_context  # noqa: PLC0415 - deferred: import cost
    from jinja2.sandbox import ImmutableSandboxedEnvironment  # noqa: PLC0415
    from jinja2.utils import missing  # noqa: PLC0415

    class Undefined(StrictUndefined):
        @property
        def _undefined_message(self) -> str:
            if self._undefined_hint:
                return str(self._undefined_hint)
            name = self._undefined_name
            obj = self._undefined_obj
            if obj is missing:
                return f"{name!r} is undefined"
            if isinstance(obj, Mapping):
                keys = ", ".join(sorted(str(k) for k in obj)[:20]) or "nothing"
                return f"{name!r} is undefined (there is: {keys})"
            return f"{type(obj).__name__} value has no {name!r}"

    def finalize_text(value: Any) -> str:
        return text_of(value)

    @pass_context
    def finalize_collect(ctx: Any, value: Any) -> str:
        if isinstance(value, StrictUndefined):
            str(value)  # raises the undefined error here, with the template's line
        values: list[Any] = ctx.get(_VALUES)
        values.append(value)
        return f"{PH}{len(values) - 1}{PH}"

    return ImmutableSandboxedEnvironment(
        undefined=Undefined,
        autoescape=False,
        keep_trailing_newline=True,
        finalize=finalize_collect if collect else finalize_text,
        cache_size=0,
        auto_reload=False,
    )


def _filler(kind: StepKind, template: str) -> _Filler | None:
    if kind is StepKind.SH:
        return fill_shell
    if kind is StepKind.SQL:
        return fill_sql
    if kind is StepKind.PROMQL:
        return fill_promql
    if kind is StepKind.HTTP and looks_like_request(template):
        return fill_http
    return None


@lru_cache(maxsize=2048)
def _compiled(template: str, collect: bool) -> Any:
    if PH in template:
        raise TemplateError("contains a NUL character", hint="remove the NUL (\\0) character")
    from jinja2 import TemplateSyntaxError  # noqa: PLC0415

    try:
        return _environment(collect).from_string(template)
    except TemplateSyntaxError as exc:
        raise TemplateError(
            f"syntax error: {exc.message}",
            line=exc.lineno,
            hint="check the {{ … }} / {% … %} markers; write {{ '{{' }} for a literal {{",
        ) from exc


@lru_cache(maxsize=2048)
def _compiled_expression(source: str) -> Any:
    from jinja2 import TemplateSyntaxError  # noqa: PLC0415

    try:
        return _environment(False).compile_expression(source, undefined_to_none=False)
    except TemplateSyntaxError as exc:
        raise TemplateError(f"syntax error: {exc.message}", hint="check the {{ … }}") from exc


def check(template: str) -> None:
    """Raise :class:`TemplateError` when ``template`` does not compile (for lint)."""
    if _has_markers(template):
        _compiled(template, False)


def _template_line(exc: BaseException) -> int | None:
    tb = exc.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _secret_function(secrets: SecretResolver | None) -> Callable[[str], str]:
    def secret(name: str) -> str:
        if secrets is None:
            raise ExpressionError(
                f"secret({name!r}) is not available here", hint="secrets resolve only in a run"
            )
        return secrets.resolve(name)

    return secret


def _translate(exc: Exception) -> OpsbookError:
    from jinja2 import TemplateError as JinjaError  # noqa: PLC0415
    from jinja2 import UndefinedError  # noqa: PLC0415
    from jinja2.exceptions import SecurityError  # noqa: PLC0415

    line = _template_line(exc)
    if isinstance(exc, UndefinedError):
        return TemplateError(str(exc.message), line=line, hint=_VARIABLES_HINT)
    if isinstance(exc, SecurityError):
        return TemplateError(
            f"not allowed: {exc}", line=line, hint="templates may read values, not call methods"
        )
    if isinstance(exc, JinjaError):
        return TemplateError(str(exc), line=line)
    return TemplateError(
        f"could not be rendered: {type(exc).__name__}: {exc}",
        line=line,
        hint="check the expression's types (e.g. a number where text is expected)",
    )


def render(
    template: str,
    *,
    context: Mapping[str, Any],
    kind: StepKind,
    secrets: SecretResolver | None,
) -> str:
    """Render a block body (or an ``env`` value / ``cwd``) for a step of type ``kind``."""
    if not _has_markers(template):
        return template
    filler = _filler(kind, template)
    compiled = _compiled(template, filler is not None)
    values: list[Any] = []
    variables = {**context, "secret": _secret_function(secrets), _VALUES: values}
    try:
        text = compiled.render(variables)
    except OpsbookError:
        raise
    except Exception as exc:  # Jinja reports user mistakes as assorted exceptions
        raise _translate(exc) from exc
    # A ``sql`` body stays a BoundQuery (a str carrying its bind parameters): no str() here.
    return filler(text, values) if filler is not None else str(text)


def render_value(
    obj: Any,
    *,
    context: Mapping[str, Any],
    secrets: SecretResolver | None,
    kind: StepKind = StepKind.ACTION,
) -> Any:
    """Render every string inside a nested mapping/list (``action`` arguments).

    Values are inserted as is (not shell-quoted). A string that is exactly one ``{{ expr }}``
    keeps the value's own type: ``"{{ params.replicas }}"`` gives the integer 3, not ``"3"``.
    """
    if isinstance(obj, str):
        if not _has_markers(obj):
            return obj
        single = _SINGLE.fullmatch(obj)
        if single is not None and not any(m in single.group(1) for m in (*_MARKERS, "}}")):
            return _evaluate(single.group(1), context=context, secrets=secrets)
        return render(obj, context=context, kind=kind, secrets=secrets)
    if isinstance(obj, Mapping):
        return {
            k: render_value(v, context=context, secrets=secrets, kind=kind) for k, v in obj.items()
        }
    if isinstance(obj, list | tuple):
        return [render_value(v, context=context, secrets=secrets, kind=kind) for v in obj]
    return obj


def _evaluate(source: str, *, context: Mapping[str, Any], secrets: SecretResolver | None) -> Any:
    from jinja2 import StrictUndefined  # noqa: PLC0415

    expression = _compiled_expression(source)
    try:
        value = expression(**{**context, "secret": _secret_function(secrets)})
        if isinstance(value, StrictUndefined):
            str(value)  # raises the undefined error
    except OpsbookError:
        raise
    except Exception as exc:
        raise _translate(exc) from exc
    return _plain(value)


def _plain(value: Any) -> Any:
    if isinstance(value, str | NotRun):
        return str(value)  # a dry run's placeholder becomes its text
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value
