"""SQL text into statements, for the migration lint and for applying a migration one statement at
a time: a small tokenizer that knows strings (``'…'``, ``E'…'``), quoted identifiers (``"…"``,
and SQLite's ```…``` and ``[…]``), dollar quotes (``$tag$…$tag$``), line and block comments
(nested, as PostgreSQL nests them) — so a ``;`` inside any of them does not end a statement —
and trigger bodies (``CREATE TRIGGER … BEGIN …; END``), whose ``;`` do not either.

Every token knows its 1-based line and column, so a finding points at the offending word."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

_WORD = re.compile(r"[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*")
_NUMBER = re.compile(r"\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?")
_DOLLAR = re.compile(r"\$([A-Za-z_][A-Za-z0-9_]*)?\$")
_PARAM = re.compile(r"\$\d+")
_OPS = ("::", "<=", ">=", "<>", "!=", "||", "->>", "->")


class SqlTextError(ValueError):
    """Text that cannot be split: an unterminated string, identifier, comment or dollar quote."""

    def __init__(self, message: str, *, line: int, col: int) -> None:
        super().__init__(message)
        self.line = line
        self.col = col


@dataclass(frozen=True)
class Token:
    kind: str  # word | ident (quoted) | string | number | op | comment
    text: str
    line: int
    col: int
    offset: int
    depth: int = 0  # parenthesis depth inside its statement

    @property
    def upper(self) -> str:
        """The keyword this token could be (quoted identifiers and strings are never one)."""
        return self.text.upper() if self.kind == "word" else ""

    @property
    def name(self) -> str:
        """As an identifier: unquoted names fold to lower case, quoted ones keep theirs."""
        if self.kind == "ident":
            body = self.text[1:-1]
            return body.replace('""', '"') if self.text[0] == '"' else body
        return self.text.lower()


@dataclass
class Statement:
    """One statement: its tokens (no comments), where it starts, its text, and the comments on
    the lines just above it (where ``-- lint: ignore RULE`` is read; a comment at the end of
    the previous statement's line is not one of them)."""

    tokens: list[Token]
    text: str
    line: int
    col: int
    leading_comments: list[Token] = field(default_factory=list)

    def words(self) -> list[str]:
        return [t.upper for t in self.tokens]

    @property
    def concurrent(self) -> bool:
        """``CREATE INDEX CONCURRENTLY`` and friends: they cannot run inside a transaction."""
        return any(t.upper == "CONCURRENTLY" and t.depth == 0 for t in self.tokens[:6])


class _Lines:
    def __init__(self, text: str) -> None:
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def at(self, offset: int) -> tuple[int, int]:
        i = bisect.bisect_right(self.starts, offset) - 1
        return i + 1, offset - self.starts[i] + 1


def tokenize(sql: str) -> list[Token]:
    """Every token of ``sql``, comments included (kind ``comment``), ``;`` as an ``op``."""
    lines = _Lines(sql)
    out: list[Token] = []
    i, n = 0, len(sql)

    def add(kind: str, start: int, end: int) -> None:
        line, col = lines.at(start)
        out.append(Token(kind, sql[start:end], line, col, start))

    def unterminated(what: str, start: int) -> SqlTextError:
        line, col = lines.at(start)
        return SqlTextError(f"unterminated {what} starting here", line=line, col=col)

    while i < n:
        c = sql[i]
        if c.isspace():
            i += 1
        elif sql.startswith("--", i):
            end = sql.find("\n", i)
            end = n if end < 0 else end
            add("comment", i, end)
            i = end
        elif sql.startswith("/*", i):
            depth, j = 1, i + 2
            while depth and j < n:
                if sql.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif sql.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            if depth:
                raise unterminated("/* comment", i)
            add("comment", i, j)
            i = j
        elif c in "'" or (c in "eEnNbBxXuU" and sql.startswith("'", i + 1)):
            quote = i if c == "'" else i + 1
            backslash = c in "eE"
            j = quote + 1
            while True:
                if j >= n:
                    raise unterminated("string", i)
                if backslash and sql[j] == "\\":
                    j += 2
                elif sql[j] == "'":
                    if sql.startswith("'", j + 1):
                        j += 2
                    else:
                        break
                else:
                    j += 1
            add("string", i, j + 1)
            i = j + 1
        elif c in '"`[':
            close = {"[": "]"}.get(c, c)
            j = i + 1
            while True:
                j = sql.find(close, j)
                if j < 0:
                    raise unterminated("quoted identifier", i)
                if close != "]" and sql.startswith(close, j + 1):
                    j += 2
                    continue
                break
            add("ident", i, j + 1)
            i = j + 1
        elif c == "$" and (m := _DOLLAR.match(sql, i)):
            tag = m.group(0)
            end = sql.find(tag, m.end())
            if end < 0:
                raise unterminated(f"dollar quote {tag}", i)
            add("string", i, end + len(tag))
            i = end + len(tag)
        elif c == "$" and (m := _PARAM.match(sql, i)):
            add("op", i, m.end())
            i = m.end()
        elif m := _WORD.match(sql, i):
            add("word", i, m.end())
            i = m.end()
        elif m := _NUMBER.match(sql, i):
            add("number", i, m.end())
            i = m.end()
        else:
            size = next((len(op) for op in _OPS if sql.startswith(op, i)), 1)
            add("op", i, i + size)
            i += size
    return out


def _body_block(words: list[str]) -> bool:
    """A statement whose body holds ``;`` between BEGIN and END (triggers, BEGIN ATOMIC)."""
    head = [w for w in words[:8] if w not in ("OR", "REPLACE", "TEMP", "TEMPORARY")]
    return len(head) > 1 and head[0] == "CREATE" and head[1] in ("TRIGGER", "FUNCTION", "PROCEDURE")


def split(sql: str) -> list[Statement]:
    """The statements of ``sql`` in order; empty statements (``;;``) are dropped."""
    statements: list[Statement] = []
    comments: list[Token] = []
    current: list[Token] = []
    depth = block = 0

    def close(end: int) -> None:
        nonlocal current, comments, depth, block
        if current:
            first = current[0]
            statements.append(
                Statement(
                    tokens=current,
                    text=sql[first.offset : end].strip(),
                    line=first.line,
                    col=first.col,
                    leading_comments=comments,
                )
            )
            comments = []
        current, depth, block = [], 0, 0

    last_line = 0  # the line of the last token that was not a comment
    for tok in tokenize(sql):
        if tok.kind == "comment":
            if not current and tok.line != last_line:  # on a line of its own, above
                comments.append(tok)
            continue
        last_line = tok.line
        if tok.kind == "op" and tok.text == ";" and depth == 0 and block <= 0:
            close(tok.offset)
            continue
        if tok.kind == "op" and tok.text == ")":
            depth = max(depth - 1, 0)
        current.append(Token(tok.kind, tok.text, tok.line, tok.col, tok.offset, depth))
        if tok.kind == "op" and tok.text == "(":
            depth += 1
        if _body_block([t.upper for t in current[:8]]):
            if tok.upper in ("BEGIN", "CASE"):
                block += 1
            elif tok.upper == "END":
                block -= 1
    close(len(sql))
    return statements
