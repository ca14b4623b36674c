"""Regular expressions from runbooks and API callers, matched in linear time (RE2).

Python's ``re`` backtracks: ``(a+)+$`` against ``aaaa…ab`` takes exponential time, and a
runbook's parameter pattern or a silence matcher is matched against values that callers
send. RE2 (``google-re2``) guarantees time linear in the input and refuses the constructs
that would need backtracking (backreferences, lookarounds, possessive quantifiers).

Patterns match the whole value (:func:`fullmatch`), as parameter patterns and Alertmanager
matchers always have. RE2's syntax is Python's for everything else runbooks use, with
two differences worth knowing: ``\\d`` and ``\\w`` are ASCII only, and the end of text is
``\\z`` (``$`` does not match before a final newline).
"""

from __future__ import annotations

import functools
from typing import Any

HINT = (
    "write a pattern RE2 accepts (linear-time regular expressions: no backreferences, "
    "lookarounds or possessive quantifiers); it must match the whole value"
)
#: Constructs RE2 refuses, as written, and what to call them in a message.
_CONSTRUCTS = (
    ("(?P=", "a backreference (?P=name)"),
    ("(?<=", "a lookbehind (?<=…)"),
    ("(?<!", "a lookbehind (?<!…)"),
    ("(?=", "a lookahead (?=…)"),
    ("(?!", "a lookahead (?!…)"),
    ("(?>", "an atomic group (?>…)"),
    ("(?#", "a comment group (?#…)"),
    ("++", "a possessive quantifier ++"),
    ("*+", "a possessive quantifier *+"),
    ("?+", "a possessive quantifier ?+"),
)


class PatternError(ValueError):
    """A pattern RE2 cannot compile; the text names the construct."""


@functools.lru_cache(maxsize=1024)
def compiled(pattern: str) -> Any:
    """The RE2 form of ``pattern`` (cached). Raises :class:`PatternError`."""
    import re2  # noqa: PLC0415 - deferred: only runbooks with patterns, silences with regexes

    options = re2.Options()
    options.log_errors = False  # the error is raised, not written to stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        raise PatternError(_explain(pattern, exc)) from None


def fullmatch(pattern: str, text: str) -> bool:
    """Whether ``pattern`` matches the whole of ``text`` (RE2, linear time)."""
    return compiled(pattern).fullmatch(text) is not None


def _explain(pattern: str, exc: Exception) -> str:
    raw = exc.args[0] if exc.args else exc
    detail = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
    for text, name in _CONSTRUCTS:
        if text in pattern:
            return f"{name} is not supported ({detail})"
    if "invalid escape sequence: \\" in detail and detail[-1:].isdigit():
        return f"a backreference ({detail[-2:]}) is not supported"
    if detail.endswith("\\Z"):
        return f"\\Z is not RE2 syntax: write \\z ({detail})"
    return detail
