"""The redactor: every secret value it knows, and the forms that value takes in output, become
``***`` in one regular-expression pass.

Forms of a value ``v`` (UTF-8 bytes ``b``) that are redacted:

- ``v`` itself, and as escaped in JSON, URLs (``%XX`` in either case, ``+`` for spaces), shell
  words (single- and double-quoted) and SQL strings;
- ``v`` reversed (``rev``);
- ``b`` in hexadecimal, either case, bytes run together or separated by spaces or colons
  (``xxd -p``, ``od -tx1`` including the offset column ``od`` starts each line with);
- ``b`` in base64, standard and URL-safe alphabets, whole (with its padding) and as it appears
  inside a longer base64 stream at each of the three byte alignments (the characters that
  depend on ``b`` alone);
- each of those with whitespace (spaces, tabs, line breaks) inserted between characters, so
  ``sed 's/./& /g'``, ``base64``'s line wrapping and ``od``'s layout do not hide it.

Matching goes through a trie of all forms of all values compiled into one pattern, longest form
first at each position. Values shorter than :data:`MIN_REDACT_LENGTH` characters are not
redacted (replacing every ``abc`` would wreck the output, and such a value protects nothing);
an alignment fragment of base64 shorter than :data:`MIN_FRAGMENT` characters is left out for the
same reason. Values longer than :data:`MAX_DERIVED` characters get their literal and escaped
forms only. What no redactor can catch is in docs/secrets.md.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
#: Values shorter than this many characters are not redacted (see the module docstring).
MIN_REDACT_LENGTH = 4
#: Base64 alignment fragments shorter than this are not redacted.
MIN_FRAGMENT = 6
#: Values longer than this (keys, certificates) get their literal and escaped forms only,
#: without whitespace inserted.
MAX_DERIVED = 256
_BATCH_TOKENS = 12_000  # tokens of forms per compiled pattern
_RE2_MEMORY = 64 << 20  # bytes RE2 may use per pattern (its default, 8 MiB, is too little)

# Tokens of a form: an atom (a regular expression for one character) or a separator.
_SEP = r"\s*"  # whitespace inserted between characters
_HEX_SEP = r"(?:\s*\n[0-7]{7,}[ \t]+|[\s:]*)"  # od's next-line offset, or spaces / colons
_HEXDIGITS = frozenset("0123456789abcdefABCDEF")


def _atom(ch: str, *, fold: bool = False) -> str:
    if fold and ch.lower() != ch.upper():
        return f"[{ch.lower()}{ch.upper()}]"
    return re.escape(ch)


def _literal(text: str, *, spaced: bool = True) -> tuple[str, ...]:
    """A form matched character for character, whitespace inserted anywhere. Whitespace in the
    value itself is dropped: the separators match it (and any other run of whitespace)."""
    if not spaced:
        return tuple(re.escape(ch) for ch in text)
    out: list[str] = []
    for ch in text:
        if ch.isspace():
            continue
        if out:
            out.append(_SEP)
        out.append(_atom(ch))
    return tuple(out)


def _percent(text: str) -> tuple[str, ...]:
    """A URL-encoded form: the hex digits of each ``%XX`` in either case."""
    out: list[str] = []
    fold = 0
    for ch in text:
        if ch.isspace():
            continue
        if out:
            out.append(_SEP)
        out.append(_atom(ch, fold=fold > 0))
        fold = 2 if ch == "%" else max(fold - 1, 0)
    return tuple(out)


def _hex(data: bytes) -> tuple[str, ...]:
    out: list[str] = []
    for ch in data.hex():
        if out:
            out.append(_HEX_SEP)
        out.append(_atom(ch, fold=True))
    return tuple(out)


def _base64_forms(data: bytes) -> set[str]:
    """Whole encodings (padded and not), and for each alignment of ``data`` inside a longer
    stream the run of characters that depend on ``data`` alone."""
    forms: set[str] = set()
    bits = 8 * len(data)
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        whole = encode(data).decode("ascii")
        forms |= {whole, whole.rstrip("=")}
        for offset in (0, 1, 2):
            encoded = encode(b"\0" * offset + data).decode("ascii")
            first = -(-8 * offset // 6)  # the first character made only of data bits
            last = (8 * offset + bits) // 6  # one past the last such character
            fragment = encoded[first:last]
            if len(fragment) >= MIN_FRAGMENT:
                forms.add(fragment)
    return forms


def forms_of(value: str) -> set[tuple[str, ...]]:
    """Every form of ``value`` as a token sequence (empty when the value is too short)."""
    if len(value) < MIN_REDACT_LENGTH:
        return set()
    escaped = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        shlex.quote(value),
        value.replace("'", "'\\''"),
        re.sub(r'([$`"\\])', r"\\\1", value),
        re.sub(r"([$`\\])", r"\\\1", value),
        value.replace("'", "''"),
    }
    urls = {quote(value, safe=""), quote(value), quote_plus(value)}
    if len(value) > MAX_DERIVED:
        return {_literal(f, spaced=False) for f in escaped | urls}
    forms = {_literal(f) for f in escaped}
    forms |= {_percent(f) for f in urls}
    data = value.encode("utf-8", "surrogatepass")
    forms.add(_literal(value[::-1]))
    forms.add(_hex(data))
    forms |= {_literal(f) for f in _base64_forms(data)}
    return {f for f in forms if f}


class _Node:
    __slots__ = ("children", "depth", "end")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.end = False
        self.depth = 0  # tokens on the longest path below


def _trie(forms: Iterable[tuple[str, ...]]) -> _Node:
    root = _Node()
    for form in forms:
        node = root
        for token in form:
            node = node.children.setdefault(token, _Node())
        node.end = True
    # Depths bottom-up without recursion (forms can be thousands of tokens long).
    order: list[_Node] = []
    stack = [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(node.children.values())
    for node in reversed(order):
        node.depth = max((c.depth + 1 for c in node.children.values()), default=0)
    return root


def _emit(node: _Node) -> str:
    """The alternatives below ``node`` as one expression: chains of single children are
    written out flat, so nesting grows only with branch points; deeper branches come first
    and optional tails are greedy, so the longest form wins at each position."""
    branches: list[str] = []
    for first, below in sorted(node.children.items(), key=lambda kv: -kv[1].depth):
        parts, child = [first], below
        while len(child.children) == 1 and not child.end:
            (token, child), *_ = child.children.items()
            parts.append(token)
        if child.children:
            rest = _emit(child)
            parts.append(f"(?:{rest})?" if child.end else f"(?:{rest})")
        branches.append("".join(parts))
    return "|".join(branches)


class _Pass:
    """One compiled pattern over a batch of values: RE2 (linear time, a DFA over the whole
    alternation) when it can take the pattern, Python's ``re`` otherwise and for text RE2
    cannot take (lone surrogates)."""

    __slots__ = ("_fallback", "_re2", "source")

    def __init__(self, source: str) -> None:
        import re2  # noqa: PLC0415 - only runs that know a secret pay for it

        self.source = source
        self._fallback: re.Pattern[str] | None = None
        options = re2.Options()
        options.log_errors = False  # an oversized pattern falls back quietly
        options.longest_match = True
        options.max_mem = _RE2_MEMORY
        try:
            self._re2: Any = re2.compile(source, options)
        except re2.error:
            self._re2 = None

    def _python(self) -> re.Pattern[str]:
        if self._fallback is None:
            self._fallback = re.compile(self.source)
        return self._fallback

    def sub(self, text: str) -> str:
        if self._re2 is not None:
            try:
                return str(self._re2.sub(MASK, text))
            except UnicodeEncodeError:
                pass
        return self._python().sub(MASK, text)

    def spans(self, text: str) -> list[tuple[int, int]]:
        if self._re2 is not None:
            try:
                return [m.span() for m in self._re2.finditer(text)]
            except UnicodeEncodeError:
                pass
        return [m.span() for m in self._python().finditer(text)]

    def search(self, text: str) -> bool:
        if self._re2 is not None:
            try:
                return self._re2.search(text) is not None
            except UnicodeEncodeError:
                pass
        return self._python().search(text) is not None


def compile_forms(values: Iterable[str]) -> tuple[_Pass, ...]:
    """Patterns matching every form of every value, longest values first, each pattern over
    a batch small enough for RE2's automaton (empty when no value is long enough)."""
    passes: list[_Pass] = []
    batch: set[tuple[str, ...]] = set()
    size = 0
    for value in sorted(set(values), key=lambda v: (-len(v), v)):
        forms = forms_of(value)
        if batch and size + sum(map(len, forms)) > _BATCH_TOKENS:
            passes.append(_Pass(_emit(_trie(batch))))
            batch, size = set(), 0
        batch |= forms
        size += sum(map(len, forms))
    if batch:
        passes.append(_Pass(_emit(_trie(batch))))
    return tuple(passes)


@dataclass(frozen=True)
class SecretHit:
    """Where a secret found in some text comes from, and whether the text is exactly it."""

    source: str
    exact: bool


class Redactor:
    """Replaces every registered secret (in every form listed in the module docstring) with
    ``***``. Thread-safe; ``redact`` is a no-op when nothing is registered.

    A value may be registered with where it comes from (``source``), which :meth:`find` reports
    so a refusal can say which secret a parameter holds.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._sources: dict[str, str] = {}
        self._passes: tuple[_Pass, ...] = ()
        self.span_bound = 0  # characters a match can reach over (see StreamRedactor)
        self._single: dict[str, tuple[_Pass, ...]] = {}
        self.add_many(dict.fromkeys(values, ""))

    def add(self, value: str, *, source: str = "") -> None:
        """Register a secret value (values shorter than MIN_REDACT_LENGTH are ignored)."""
        self.add_many({value: source})

    def add_many(self, values: Mapping[str, str]) -> None:
        """Register ``{value: source}``; the pattern is rebuilt once, and only when a value is
        new."""
        fresh = {
            v: s
            for v, s in values.items()
            if isinstance(v, str) and len(v) >= MIN_REDACT_LENGTH and v not in self._sources
        }
        if not fresh:
            for v, s in values.items():  # a source learnt later for a known value
                if s and self._sources.get(v) == "":
                    self._sources[v] = s
            return
        with self._lock:
            self._sources.update(fresh)
            self._passes = compile_forms(self._sources)
            longest = max(
                (len(v.encode("utf-8", "surrogatepass")) for v in self._sources), default=0
            )
            # hex is the widest form: 2 digits a byte, plus od's spaces and offset columns
            self.span_bound = 4 * longest + 16 * (longest // 16 + 1) + 64

    @property
    def active(self) -> bool:
        """Whether any secret is registered (an empty redactor is still a shared object, so it
        deliberately does not define ``__bool__``)."""
        return bool(self._passes)

    def redact(self, text: str) -> str:
        if not text:
            return text
        for one in self._passes:
            text = one.sub(text)
        return text

    def redact_obj(self, obj: Any) -> Any:
        """``redact`` over every string (and mapping key) inside dicts, lists and tuples."""
        if not self._passes:
            return obj
        return self._walk(obj)

    def _walk(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, Mapping):
            return {
                (self.redact(k) if isinstance(k, str) else k): self._walk(v) for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [self._walk(v) for v in obj]
        return obj

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Where ``text`` holds a secret, as merged ``(start, end)`` ranges."""
        found = sorted(span for one in self._passes for span in one.spans(text))
        merged: list[tuple[int, int]] = []
        for start, end in found:
            if merged and start <= merged[-1][1]:
                merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
            else:
                merged.append((start, end))
        return merged

    def find(self, text: str) -> SecretHit | None:
        """The secret ``text`` holds in any redacted form, or None. Slow path (one pattern
        per value): meant for refusing input, not for output."""
        if not text or not any(one.search(text) for one in self._passes):
            return None
        with self._lock:
            sources = dict(self._sources)
        for value, source in sorted(sources.items(), key=lambda kv: -len(kv[0])):
            single = self._single.get(value)
            if single is None:
                single = self._single[value] = compile_forms([value])
            if any(one.search(text) for one in single):
                return SecretHit(source or "a configured secret", exact=text == value)
        return SecretHit("a configured secret", exact=False)


class StreamRedactor:
    """Redacts a stream that arrives in pieces (a running step's output, shown live).

    Redacting each piece alone would miss a secret split across two of them, and redacting
    each line alone one that ``od`` or ``base64`` spread over lines. So the last
    :attr:`Redactor.span_bound` characters are held back until more text arrives (or
    :meth:`flush`), and a match that reaches into them is held back whole. With no secret
    registered nothing is held back.
    """

    def __init__(self, redactor: Redactor) -> None:
        self._redactor = redactor
        self._carry = ""

    def feed(self, text: str) -> str:
        """Redacted text that can be shown now (possibly empty)."""
        buf = self._carry + text
        if not self._redactor.active:
            self._carry = ""
            return buf
        cut = len(buf) - self._redactor.span_bound
        if cut <= 0:
            self._carry = buf
            return ""
        spans = self._redactor.spans(buf)
        for start, end in spans:
            if start < cut < end:
                cut = start
        self._carry = buf[cut:]
        return _masked(buf, cut, spans)

    def flush(self) -> str:
        """Everything held back, redacted (at the end of the stream)."""
        buf, self._carry = self._carry, ""
        return self._redactor.redact(buf)


def _masked(buf: str, cut: int, spans: list[tuple[int, int]]) -> str:
    out: list[str] = []
    at = 0
    for start, end in spans:
        if end > cut:
            break
        out.append(buf[at:start])
        out.append(MASK)
        at = end
    out.append(buf[at:cut])
    return "".join(out)
