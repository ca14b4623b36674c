"""A PromQL syntax check without Prometheus: the lexer and the shape of the grammar, so a typo
in ``deployments.yaml`` is reported when the file is read, not halfway through a canary.

It checks what an operator gets wrong: unbalanced ``()``, ``{}``, ``[]``, an unterminated
string, an unknown function (with a suggestion), a label matcher that is not
``name OP "value"``, a range that is not a duration, an operator with nothing on one side.
It does not type-check (``rate(x)`` without a range passes here and is refused by Prometheus
as an error measurement). :func:`check` raises :class:`PromqlError` with the 0-based
character position of the problem."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


FUNCTIONS = _words(
    """abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil
    changes clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week
    day_of_year days_in_month deg delta deriv double_exponential_smoothing exp floor
    histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev
    histogram_stdvar histogram_sum holt_winters hour idelta increase info irate label_join
    label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time
    minute month pi predict_linear present_over_time quantile_over_time rad rate resets
    round scalar sgn sin sinh sort sort_by_label sort_by_label_desc sort_desc sqrt
    stddev_over_time stdvar_over_time sum_over_time tan tanh time timestamp vector year"""
)
AGGREGATIONS = _words(
    """sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk
    limit_ratio"""
)
_KEYWORDS = _words("by without on ignoring group_left group_right bool offset and or unless atan2")
_SET_OPS = frozenset(("and", "or", "unless", "atan2"))
_BINARY = frozenset(("+", "-", "*", "/", "%", "^", "==", "!=", "<=", ">=", "<", ">"))
_MATCH_OPS = frozenset(("=", "!=", "=~", "!~"))

_TOKEN = re.compile(
    r"(?P<space>\s+|\#[^\n]*)"
    r"|(?P<string>\"(?:\\.|[^\"\\\n])*\"|'(?:\\.|[^'\\\n])*'|`[^`]*`)"
    r"|(?P<placeholder>\{\{\s*\w*\s*\}\})"  # {{ service }} outside quotes (opsbook's, not PromQL)
    r"|(?P<open>\"|'|`)"  # an opening quote the rule above could not close
    r"|(?P<duration>(?:\d+(?:ms|s|m|h|d|w|y))+(?![\w.]))"
    r"|(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<ident>[a-zA-Z_][a-zA-Z0-9_:]*|:[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r"|(?P<op>==|!=|<=|>=|=~|!~|[-+*/%^<>=,(){}\[\]@:])",
    re.DOTALL,
)


class PromqlError(ValueError):
    """A query that Prometheus would refuse; ``position`` is the 0-based character."""

    def __init__(self, message: str, position: int) -> None:
        super().__init__(message)
        self.message = message
        self.position = position


@dataclass(frozen=True)
class _Tok:
    kind: str  # string, duration, number, ident, op, end
    text: str
    pos: int


def _tokens(query: str) -> list[_Tok]:
    out: list[_Tok] = []
    pos = 0
    while pos < len(query):
        m = _TOKEN.match(query, pos)
        if m is None:
            raise PromqlError(f"unexpected character {query[pos]!r}", pos)
        kind = m.lastgroup or "op"
        if kind == "open":
            raise PromqlError(f"unterminated string: the {m.group()} is never closed", pos)
        if kind != "space":
            out.append(_Tok(kind, m.group(), pos))
        pos = m.end()
    out.append(_Tok("end", "", len(query)))
    return out


def _balanced(tokens: list[_Tok]) -> None:
    pairs = {")": "(", "}": "{", "]": "["}
    stack: list[_Tok] = []
    for tok in tokens:
        if tok.kind != "op":
            continue
        if tok.text in "({[":
            stack.append(tok)
        elif tok.text in pairs:
            if not stack:
                raise PromqlError(f"{tok.text!r} closes nothing", tok.pos)
            if stack[-1].text != pairs[tok.text]:
                opened = stack[-1]
                raise PromqlError(
                    f"{tok.text!r} does not match the {opened.text!r} at character "
                    f"{opened.pos + 1}",
                    tok.pos,
                )
            stack.pop()
    if stack:
        raise PromqlError(f"the {stack[-1].text!r} is never closed", stack[-1].pos)


class _Parser:
    def __init__(self, tokens: list[_Tok]) -> None:
        self.tokens = tokens
        self.i = 0

    def peek(self) -> _Tok:
        return self.tokens[self.i]

    def take(self) -> _Tok:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def at(self, text: str, kind: str = "op") -> bool:
        tok = self.peek()
        return tok.kind == kind and (tok.text.lower() if kind == "ident" else tok.text) == text

    def expect(self, text: str, what: str) -> _Tok:
        if not self.at(text):
            tok = self.peek()
            found = "the end of the query" if tok.kind == "end" else repr(tok.text)
            raise PromqlError(f"expected {what}, found {found}", tok.pos)
        return self.take()

    def query(self) -> None:
        if self.peek().kind == "end":
            raise PromqlError("the query is empty", 0)
        self.expr()
        tok = self.peek()
        if tok.kind != "end":
            raise PromqlError(f"unexpected {tok.text!r}: an operator is missing before it", tok.pos)

    def expr(self) -> None:
        self.unary()
        while self._binary_op():
            op = self.take()
            if self.at("bool", "ident"):
                self.take()
            if self.peek().kind == "ident" and self.peek().text.lower() in ("on", "ignoring"):
                self.take()
                self.labels()
                if self.peek().kind == "ident" and self.peek().text.lower() in (
                    "group_left",
                    "group_right",
                ):
                    self.take()
                    if self.at("("):
                        self.labels()
            if self.peek().kind == "end":
                raise PromqlError(f"{op.text!r} has nothing on its right", op.pos)
            self.unary()

    def _binary_op(self) -> bool:
        tok = self.peek()
        if tok.kind == "op":
            return tok.text in _BINARY
        return tok.kind == "ident" and tok.text.lower() in _SET_OPS

    def unary(self) -> None:
        while self.at("-") or self.at("+"):
            self.take()
        self.postfix()

    def postfix(self) -> None:
        self.primary()
        while True:
            if self.at("["):
                self.range()
            elif self.at("offset", "ident"):
                self.take()
                if self.at("-"):
                    self.take()
                self.duration("a duration after offset (offset 5m)")
            elif self.at("@"):
                self.take()
                tok = self.peek()
                if tok.kind == "ident" and tok.text.lower() in ("start", "end"):
                    self.take()
                    self.expect("(", "'(' after @ " + tok.text)
                    self.expect(")", "')'")
                elif tok.kind == "number":
                    self.take()
                else:
                    raise PromqlError("expected a Unix time, start() or end() after @", tok.pos)
            else:
                return

    def primary(self) -> None:
        tok = self.take()
        if tok.kind in ("number", "duration", "string"):
            return
        if tok.kind == "op" and tok.text == "(":
            if self.at(")"):
                raise PromqlError("empty parentheses", tok.pos)
            self.expr()
            self.expect(")", "')'")
            return
        if tok.kind == "op" and tok.text == "{":
            self.i -= 1
            self.matchers()
            return
        if tok.kind == "ident":
            self.name(tok)
            return
        if tok.kind == "placeholder":
            raise PromqlError(f"{tok.text} must stand inside quotes", tok.pos)
        if tok.kind == "end":
            raise PromqlError("the query ends where a value was expected", tok.pos)
        raise PromqlError(f"unexpected {tok.text!r} where a value was expected", tok.pos)

    def name(self, tok: _Tok) -> None:
        low = tok.text.lower()
        if low in AGGREGATIONS and (self.at("(") or self._grouping_next()):
            if self._grouping_next():
                self.take()
                self.labels()
            self.args(tok)
            if self._grouping_next():
                self.take()
                self.labels()
            return
        if self.at("("):
            if tok.text not in FUNCTIONS and low not in AGGREGATIONS:
                close = difflib.get_close_matches(tok.text, sorted(FUNCTIONS | AGGREGATIONS), 1)
                tip = f" (did you mean {close[0]}?)" if close else ""
                raise PromqlError(f"unknown function {tok.text!r}{tip}", tok.pos)
            self.args(tok)
            return
        if low in ("inf", "nan"):
            return
        if low in _KEYWORDS:
            raise PromqlError(f"{tok.text!r} cannot stand here", tok.pos)
        if self.at("{"):
            self.matchers()

    def _grouping_next(self) -> bool:
        tok = self.peek()
        return tok.kind == "ident" and tok.text.lower() in ("by", "without")

    def args(self, fn: _Tok) -> None:
        self.expect("(", f"'(' after {fn.text}")
        if self.at(")"):
            self.take()
            return
        while True:
            self.expr()
            if self.at(","):
                self.take()
                continue
            self.expect(")", f"',' or ')' in the arguments of {fn.text}")
            return

    def labels(self) -> None:
        self.expect("(", "'(' and a list of label names")
        while not self.at(")"):
            tok = self.take()
            if tok.kind not in ("ident", "string"):
                raise PromqlError(f"expected a label name, found {tok.text!r}", tok.pos)
            if not self.at(")"):
                self.expect(",", "',' between label names")
        self.take()

    def matchers(self) -> None:
        self.expect("{", "'{'")
        while not self.at("}"):
            tok = self.take()
            if tok.kind == "string" and (self.at(",") or self.at("}")):
                pass  # {"metric.name"}: a quoted metric name (Prometheus 3)
            elif tok.kind in ("ident", "string"):
                op = self.take()
                if op.kind != "op" or op.text not in _MATCH_OPS:
                    raise PromqlError(
                        f"expected =, !=, =~ or !~ after the label {tok.text}, found "
                        f"{op.text or 'the end of the query'!r}",
                        op.pos,
                    )
                value = self.take()
                if value.kind != "string":
                    raise PromqlError(
                        f'the value of the label {tok.text} must be a quoted string ("..."), '
                        f"found {value.text or 'nothing'!r}",
                        value.pos,
                    )
            else:
                raise PromqlError(f"expected a label matcher, found {tok.text!r}", tok.pos)
            if not self.at("}"):
                self.expect(",", "',' between label matchers")
        self.take()

    def range(self) -> None:
        self.expect("[", "'['")
        self.duration("a duration such as 5m in [...]")
        if self.at(":"):
            self.take()
            if not self.at("]"):
                self.duration("a resolution such as 1m after ':'")
        self.expect("]", "']' after the range")

    def duration(self, what: str) -> None:
        tok = self.take()
        if tok.kind not in ("duration", "number"):
            found = "the end of the query" if tok.kind == "end" else repr(tok.text)
            raise PromqlError(f"expected {what}, found {found}", tok.pos)


def check(query: str) -> None:
    """Raise :class:`PromqlError` when ``query`` is not PromQL Prometheus would parse."""
    tokens = _tokens(query)
    _balanced(tokens)
    _Parser(tokens).query()
