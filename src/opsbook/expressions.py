"""CEL expressions: the one safe expression language of opsbook (``expect``, ``when``,
``for_each``, ``decide``, probe conditions). Never ``eval`` Python.

The ``cel`` module (package ``common-expression-language``) is imported on first use so CLI
start-up does not pay for it.
"""

from __future__ import annotations

import re
import threading
from abc import abstractmethod
from collections.abc import Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from opsbook import patterns
from opsbook.errors import ExpressionError, Location

_POS = re.compile(r"<input>:(\d+):(\d+)")


_CEL_LOAD = threading.Lock()


def _cel() -> Any:
    """The ``cel.cel`` extension module, loaded once. Two threads loading it at once both run
    its init, and the second logger registration panics (pyo3 ``SetLoggerError``): the load
    happens under a lock."""
    with _CEL_LOAD:
        return _load_cel()


@lru_cache(maxsize=1)
def _load_cel() -> Any:
    """The compiled ``cel.cel`` extension module.

    The package's ``__init__`` also imports its interactive ``cel.cli`` (prompt_toolkit, rich):
    70-140 ms that every ``opsbook run`` with an expression paid. The extension is loaded on
    its own and registered as ``cel.cel``, so a later ``import cel`` reuses it; if the
    package's layout ever differs, the plain import is used.
    """
    import importlib.machinery  # noqa: PLC0415 - deferred with the module it loads
    import importlib.util  # noqa: PLC0415
    import sys  # noqa: PLC0415

    loaded = sys.modules.get("cel.cel")
    if loaded is not None:
        return loaded
    spec = importlib.util.find_spec("cel")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    suffixes = importlib.machinery.EXTENSION_SUFFIXES
    for path in (Path(folder) / f"cel{suffix}" for folder in folders for suffix in suffixes):
        if path.is_file():
            loader = importlib.machinery.ExtensionFileLoader("cel.cel", str(path))
            ext_spec = importlib.util.spec_from_loader("cel.cel", loader)
            if ext_spec is not None:
                module = importlib.util.module_from_spec(ext_spec)
                loader.exec_module(module)
                sys.modules["cel.cel"] = module
                return module
    import cel  # noqa: PLC0415 - deferred: an import that CLI start-up must not pay

    return cel


@lru_cache(maxsize=4096)
def _compile(expr: str) -> Any:
    return _cel().compile(expr)


def _syntax_message(exc: Exception) -> tuple[str, int]:
    text = str(exc)
    match = _POS.search(text)
    col = int(match.group(2)) + 1 if match else 1
    first = text.split("\n", maxsplit=1)[0]
    detail = first.split(": ERROR: ")[-1] if ": ERROR: " in first else first
    detail = _POS.sub("", detail).strip(" :")
    return detail, col


def compile_expression(expr: str, *, location: Location | None = None) -> Any:
    """Compile (and cache) a CEL expression; raise :class:`ExpressionError` pointing at it.

    ``location`` is where the expression starts; the column of a syntax error is added to it.
    A literal ``matches()`` pattern that RE2 refuses is an error too (see :func:`_bad_pattern`).
    """
    if not expr or not expr.strip():
        raise ExpressionError("empty expression", location=location, hint="write a CEL expression")
    try:
        program = _compile(expr)
    except (ValueError, RuntimeError, TypeError) as exc:
        detail, col = _syntax_message(exc)
        loc = location
        if location is not None:
            loc = Location(location.path, location.line, (location.col or 1) + col - 1)
        raise ExpressionError(
            f"invalid CEL expression {expr!r}: {detail}",
            location=loc,
            hint="see the CEL examples in docs/runbook-format.md (e.g. exit_code == 0)",
        ) from exc
    bad = _bad_pattern(expr)
    if bad is not None:
        raise ExpressionError(
            f"invalid CEL expression {expr!r}: {bad}",
            location=location,
            hint=PATTERN_HINT,
        )
    return program


PATTERN_HINT = (
    "write a pattern RE2 accepts with its default options: repeat counts up to 1000 "
    "(for a longer run, repeat a group: (?:a{1000}){100}, or test size() separately), no "
    "backreferences, lookarounds or possessive quantifiers"
)

# A CEL token: a string literal (optionally raw/bytes prefixed, single or triple quoted), an
# identifier, or any other single character. Whitespace and comments are skipped.
_TOKEN = re.compile(
    r"(?P<space>\s+|//[^\n]*)"
    r"|(?P<string>(?P<prefix>[rRbB]{0,2})(?P<quote>'''|\"\"\"|'|\")"
    r"(?P<body>(?:\\.|(?!(?P=quote)).)*?)(?P=quote))"
    r"|(?P<ident>[A-Za-z_]\w*)"
    r"|(?P<other>.)",
    re.DOTALL,
)
_ESCAPES = {
    "\\": "\\",
    "'": "'",
    '"': '"',
    "`": "`",
    "?": "?",
    "n": "\n",
    "t": "\t",
    "r": "\r",
    "a": "\a",
    "b": "\b",
    "f": "\f",
    "v": "\v",
}
_ESCAPE = re.compile(r"\\(x[0-9A-Fa-f]{2}|u[0-9A-Fa-f]{4}|U[0-9A-Fa-f]{8}|[0-7]{3}|.)", re.DOTALL)
_REPEAT = re.compile(r"invalid repetition size: (\S+)")


def _unescape(body: str) -> str:
    """A CEL (non-raw) string literal's value; an escape CEL does not know is kept as written
    (CEL refuses it when compiling)."""

    def one(match: re.Match[str]) -> str:
        esc = match.group(1)
        if esc[0] in "xuU" and len(esc) > 1:
            return chr(int(esc[1:], 16))
        if len(esc) == 3:
            return chr(int(esc, 8))
        return _ESCAPES.get(esc, match.group(0))

    return _ESCAPE.sub(one, body)


def _tokens(expr: str) -> list[tuple[str, str]]:
    """``expr`` as (kind, text) tokens; a string literal's text is its value."""
    tokens: list[tuple[str, str]] = []
    for m in _TOKEN.finditer(expr):
        if m.group("space") is not None:
            continue
        if m.group("string") is not None:
            body = m.group("body")
            raw = "r" in m.group("prefix").lower()
            tokens.append(("string", body if raw else _unescape(body)))
        elif m.group("ident") is not None:
            tokens.append(("ident", m.group("ident")))
        else:
            tokens.append(("other", m.group("other")))
    return tokens


def _literal_patterns(expr: str) -> Iterator[str]:
    """The string literals passed as the pattern of ``matches``: ``x.matches('…')`` (the first
    argument) and ``matches(x, '…')`` (the second). A computed pattern is not a literal and is
    left to run time."""
    tokens = _tokens(expr)
    for i, token in enumerate(tokens):
        if token != ("ident", "matches") or tokens[i + 1 : i + 2] != [("other", "(")]:
            continue
        j = i + 2
        if i == 0 or tokens[i - 1] != ("other", "."):  # matches(x, '…'): skip x
            depth = 0
            while j < len(tokens):
                kind, text = tokens[j]
                if kind == "other" and text in "([{":
                    depth += 1
                elif kind == "other" and text in ")]}," and depth == 0:
                    break
                elif kind == "other" and text in ")]}":
                    depth -= 1
                j += 1
            if tokens[j : j + 1] != [("other", ",")]:
                continue
            j += 1
        arg = tokens[j : j + 2]
        if len(arg) == 2 and arg[0][0] == "string" and arg[1] in (("other", ")"), ("other", ",")):
            yield arg[0][1]


@lru_cache(maxsize=4096)
def _bad_pattern(expr: str) -> str | None:
    """Why a literal ``matches()`` pattern in ``expr`` cannot be used, or None.

    CEL's ``matches`` uses a linear-time engine but takes any repeat count: ``a{100000}``
    against a long output runs for tens of seconds, compiled again on every call. RE2 with its
    default options refuses repeat counts above 1000 (and backreferences, lookarounds): what
    it refuses is refused here, when the runbook is linted or loaded, not in the middle of a
    run."""
    if "matches" not in expr:
        return None
    for pattern in _literal_patterns(expr):
        try:
            patterns.compiled(pattern)
        except patterns.PatternError as exc:
            detail = str(exc)
            size = _REPEAT.search(detail)
            if size is not None:
                detail = f"a repeat count above 1000 ({size.group(1)}) is not supported"
            return f"matches() pattern {pattern!r}: {detail}"
    return None


def variables_of(expr: str) -> list[str]:
    """The top-level variable names an expression reads (for reporting actual values)."""
    return list(_names_read(expr))


@lru_cache(maxsize=4096)
def _names_read(expr: str) -> tuple[str, ...]:
    program = compile_expression(expr)
    names = program.variables
    # Comprehension variables (the ``r`` of ``rows.all(r, …)``) are listed too: harmless, a
    # scope simply has no value for them.
    return tuple(names() if callable(names) else names)


@lru_cache(maxsize=4096)
def members_read(expr: str, name: str) -> frozenset[str] | None:
    """The members of variable ``name`` that ``expr`` reads (``name.a``, ``name["b"]``), or
    None when it may read any of them (``name`` used whole, indexed by a computed key, or
    anything this scan does not recognise). Conservative: when in doubt, None; text inside
    string literals counts too (at worst a member too many)."""
    members: set[str] = set()
    ident = re.escape(name)
    use = re.compile(
        rf"(?<![\w.]){ident}(?!\w)(?:\s*\.\s*([A-Za-z_]\w*)"
        r"|\s*\[\s*(?:'([^'\\]*)'|"
        '"([^"\\\\]*)"'
        r")\s*\])?"
    )
    for match in use.finditer(expr):
        member = match.group(1) or match.group(2) or match.group(3)
        if member is None:
            return None
        members.add(member)
    return frozenset(members)


class Scope(Mapping[str, Any]):
    """Variables for CEL whose values are built only when an expression reads them.

    :func:`evaluate` asks :meth:`for_expression` for just the variables an expression reads,
    so a long run's earlier results are not converted for ``exit_code == 0``. ``fields`` (a
    block's result) win over the scope's own names.
    """

    def __init__(self, fields: Mapping[str, Any] | None = None) -> None:
        self._fields: Mapping[str, Any] = fields or {}

    @abstractmethod
    def _own_names(self) -> tuple[str, ...]: ...

    @abstractmethod
    def _value(self, name: str, expr: str | None) -> Any:
        """The value of ``name``; ``expr`` (when known) lets it leave out what is not read."""

    @abstractmethod
    def with_fields(self, fields: Mapping[str, Any]) -> Scope: ...

    def __getitem__(self, name: str) -> Any:
        if name in self._fields:
            return self._fields[name]
        if name in self._own_names():
            return self._value(name, None)
        raise KeyError(name)

    def __contains__(self, name: object) -> bool:
        return name in self._fields or name in self._own_names()

    def __iter__(self) -> Iterator[str]:
        yield from self._fields
        yield from (n for n in self._own_names() if n not in self._fields)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def for_expression(self, expr: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in _names_read(expr):
            if name in self._fields:
                out[name] = self._fields[name]
            elif name in self._own_names():
                out[name] = self._value(name, expr)
        return out


@lru_cache(maxsize=4096)
def _uses_function_matches(expr: str) -> bool:
    """Whether ``expr`` calls ``matches(text, pattern)`` (CEL's global form, which the CEL
    library does not provide; opsbook does, on RE2 like the method form)."""
    if "matches" not in expr:
        return False
    tokens = _tokens(expr)
    return any(
        token == ("ident", "matches")
        and tokens[i + 1 : i + 2] == [("other", "(")]
        and (i == 0 or tokens[i - 1] != ("other", "."))
        for i, token in enumerate(tokens)
    )


def _matches(text: Any, pattern: Any) -> bool:
    """CEL's ``matches(text, pattern)``: true when RE2 finds ``pattern`` anywhere in ``text``."""
    if not isinstance(text, str) or not isinstance(pattern, str):
        raise TypeError(
            f"matches() takes two strings, not {type(text).__name__} and {type(pattern).__name__}"
        )
    try:
        return patterns.compiled(pattern).search(text) is not None
    except patterns.PatternError as exc:
        raise ValueError(f"matches(): {exc}") from None


def evaluate(expr: str, variables: Mapping[str, Any]) -> Any:
    """Evaluate ``expr`` over ``variables``. Raises :class:`ExpressionError` when evaluation
    fails (a missing field, a type mismatch), with CEL's own explanation.

    Only the variables the expression reads are handed to CEL (each is converted on every
    call, so passing everything made long runs quadratic)."""
    program = compile_expression(expr)
    if isinstance(variables, Scope):
        scope = variables.for_expression(expr)
    else:
        scope = {n: variables[n] for n in _names_read(expr) if n in variables}
    try:
        if _uses_function_matches(expr):
            return program.execute(_cel().Context(variables=scope, functions={"matches": _matches}))
        return program.execute(scope)
    except KeyError as exc:
        raise ExpressionError(
            f"{expr!r}: no field {exc.args[0]!r} in the result",
            hint="check the field name against the result fields of this block type",
        ) from exc
    except (ValueError, RuntimeError, TypeError) as exc:
        raise ExpressionError(f"{expr!r} could not be evaluated: {exc}") from exc
