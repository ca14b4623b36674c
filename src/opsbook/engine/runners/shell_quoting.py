"""Putting template values into a shell script so that a value can never add a command.

Templating renders every ``{{ … }}`` of an ``sh``/``bash`` block to a placeholder
(``NUL index NUL``); :func:`fill_shell` then reads the rendered script the way the shell will
(quotes, ``$(…)``, comments, here-documents) and replaces each placeholder with the value
escaped for the place it sits in:

==================================  ============================================================
where the value sits                what is inserted
==================================  ============================================================
a plain word (also inside ``$(…)``)  ``shlex.quote(value)``
inside ``"…"``                       the value with ``$ ` " \\`` backslash-escaped
inside ``'…'``                       the value with each ``'`` written ``'\\''``
a ``# comment``                      the value with line breaks turned into spaces
a here-document body                 as in ``"…"`` (``<<EOF``, whose ``$(…)`` are followed) or
                                     verbatim (``<<'EOF'``); a value that would put a line starting
                                     with the terminator in the body is refused
backticks, ``${…}``, ``$((…))``,     only values made of letters, digits and ``@%+=:,./-`` (only
``((…))``, ``$'…'``                  digits in arithmetic); anything else is refused
right after ``$`` or ``\\``          refused
==================================  ============================================================

Refused means an :class:`~opsbook.errors.ExpressionError` before anything runs. What this cannot
protect is a script that runs a value through a second parser on purpose: ``eval``, ``sh -c``,
``ssh host CMD``, or bash arithmetic (``[[ $a -eq {{ x }} ]]``, ``let``) — don't do that with
untrusted values (``type: integer`` parameters are safe there).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence
from typing import Any

from opsbook.engine.runners._heredoc import Frame, HeredocScan, escaped, refuse
from opsbook.engine.runners._placeholders import PH, PLACEHOLDER, text_of
from opsbook.errors import ExpressionError

_WORD_SAFE = re.compile(r"[\w@%+=:,./-]*", re.ASCII)
_INTEGER = re.compile(r"-?[0-9]+")
_DQ_SPECIAL = re.compile(r'([$`"\\])')
_HEREDOC_SPECIAL = re.compile(r"([$`\\])")
# Runs of characters that need no attention, per frame kind.
_PLAIN = {
    "top": re.compile(r"[^\\'\"`$#()<\n \t;&|>\x00]+"),
    "subst": re.compile(r"[^\\'\"`$#()<\n \t;&|>\x00]+"),
    "sq": re.compile(r"[^'\x00]+"),
    "dq": re.compile(r'[^\\"$`\x00]+'),
    "bt": re.compile(r"[^\\`\x00]+"),
    "dsq": re.compile(r"[^\\'\x00]+"),
    "param": re.compile(r"[^\\}'\"$`\x00]+"),
    "arith": re.compile(r"[^\\()$`'\"\x00]+"),
    "hd": re.compile(r"[^\\$`\x00\n]+"),  # an unquoted here-document body
}


class _ShellFiller(HeredocScan):
    def __init__(self, text: str, values: Sequence[Any]) -> None:
        self.t = text
        self.values = values
        self.out: list[str] = []
        self.i = 0
        self.stack = [Frame("top", 0)]
        self.word_start = True
        self.pending: list[tuple[str, bool, bool]] = []  # here-docs: delimiter, <<-, quoted
        # The unquoted here-document being read: delimiter, <<-, its frame's depth, and where
        # the current line starts in the output and in the text.
        self.heredoc: tuple[str, bool, int, int, int] | None = None
        self.uncertain = False

    # -- values ---------------------------------------------------------------------------

    def value_at(self, i: int) -> tuple[str, int]:
        match = PLACEHOLDER.match(self.t, i)
        if match is None or int(match.group(1)) >= len(self.values):
            raise ExpressionError(
                "the block contains a NUL character",
                hint="remove the NUL (\\0) character from the block",
            )
        text = text_of(self.values[int(match.group(1))])
        if PH in text:
            raise ExpressionError(
                "a template value contains a NUL character (or the output of a macro or "
                "{% set %} block, which cannot be quoted)",
                hint="pass plain values; use {% set x = … %} rather than a {% set %} block",
            )
        return text, match.end()

    def placeholder(self, frame: Frame) -> None:
        value, end = self.value_at(self.i)
        kind = "uncertain" if self.uncertain else frame.kind
        after_dollar = kind not in ("sq", "dsq") and self.i > 0 and self.t[self.i - 1] == "$"
        if after_dollar and not escaped(self.t, self.i - 1):
            raise refuse("right after `$`")
        if kind in ("top", "subst"):
            self.out.append(shlex.quote(value))
        elif kind == "dq":
            self.out.append(_DQ_SPECIAL.sub(r"\\\1", value))
        elif kind == "sq":
            self.out.append(value.replace("'", "'\\''"))
        elif kind == "hd":
            self.out.append(_HEREDOC_SPECIAL.sub(r"\\\1", value))
        elif kind == "arith":
            if not _INTEGER.fullmatch(value):
                raise refuse("in arithmetic ($((…)) or ((…)))", "only whole numbers go there")
            self.out.append(value)
        else:
            if frame.kind == "param" and not self.t[frame.start : self.i].strip("#!"):
                raise refuse("in the name position of ${…}")
            if not _WORD_SAFE.fullmatch(value):
                where = {
                    "bt": "inside backticks (use $(…) instead)",
                    "param": "inside ${…}",
                    "dsq": "inside $'…'",
                }.get(kind, "after a construct this check does not follow (such as `case` in $(…))")
                raise refuse(where)
            self.out.append(value)
        self.i = end
        self.word_start = False

    # -- the scan -------------------------------------------------------------------------

    def run(self) -> str:
        t = self.t
        n = len(t)
        while self.i < n:
            frame = self.stack[-1]
            if self.heredoc is not None:
                if t[self.i] == "\n":
                    self.heredoc_newline()
                    continue
                eol = t.find("\n", self.i)
                plain = _PLAIN[frame.kind].match(t, self.i, n if eol < 0 else eol)
            else:
                plain = _PLAIN[frame.kind].match(t, self.i)
            if plain is not None:
                chunk = plain.group()
                if frame.kind in ("top", "subst"):
                    self.note_word(chunk)
                self.out.append(chunk)
                self.i = plain.end()
                continue
            c = t[self.i]
            if c == PH:
                self.placeholder(frame)
            elif c == "\\" and frame.kind != "sq":
                if t[self.i + 1 : self.i + 2] == PH:
                    raise refuse("right after a backslash")
                if self.heredoc is not None and t[self.i + 1 : self.i + 2] == "\n":
                    self.uncertain = True  # a continued line inside a here-document
                    self.emit("\\")
                    continue
                self.emit(t[self.i : self.i + 2])
                self.word_start = False
            else:
                getattr(self, f"in_{frame.kind}", self.in_top)(frame, c)
        if self.heredoc is not None:
            self.check_heredoc_line()
        return "".join(self.out)

    def emit(self, text: str) -> None:
        self.out.append(text)
        self.i += len(text)

    def push(self, kind: str, token: str) -> None:
        self.emit(token)
        self.stack.append(Frame(kind, self.i))
        self.word_start = kind == "subst"  # a command starts right after $(

    def pop(self, token: str) -> None:
        self.emit(token)
        if len(self.stack) > 1:
            self.stack.pop()
        self.word_start = False

    def note_word(self, chunk: str) -> None:
        if self.word_start and chunk == "case" and any(f.kind == "subst" for f in self.stack):
            # `case` patterns end in an unbalanced `)`, which this scan cannot tell from the
            # end of the $(…): stop trusting the context of later values.
            self.uncertain = True
        self.word_start = False

    def expansion(self, c: str) -> bool:
        """``$(``, ``$((``, ``${`` and backticks, in unquoted text and in ``"…"``."""
        t, i = self.t, self.i
        if c == "`":
            self.push("bt", "`")
        elif t.startswith("$((", i):
            self.push("arith", "$((")
        elif t.startswith("$(", i):
            self.push("subst", "$(")
        elif t.startswith("${", i):
            self.push("param", "${")
        else:
            return False
        return True

    def in_top(self, frame: Frame, c: str) -> None:  # also $(…)
        t, i = self.t, self.i
        if c == "'":
            self.push("sq", "'")
        elif c == '"':
            self.push("dq", '"')
        elif self.expansion(c):
            pass
        elif c == "$":
            if t.startswith("$'", i):
                self.push("dsq", "$'")
            elif t.startswith('$"', i):
                self.push("dq", '$"')
            else:
                self.emit("$")
                self.word_start = False
        elif c == "#":
            if self.word_start:
                self.comment()
            else:
                self.emit("#")
        elif c == "(":
            if self.word_start and t.startswith("((", i):
                self.push("arith", "((")
            else:
                frame.depth += 1
                self.emit("(")
                self.word_start = True
        elif c == ")":
            if frame.kind == "subst" and frame.depth == 0:
                self.pop(")")
            else:
                frame.depth = max(0, frame.depth - 1)
                self.emit(")")
                self.word_start = True
        elif c == "<" and t.startswith("<<", i) and not t.startswith("<<<", i):
            self.heredoc_start()
        elif c == "\n":
            self.emit("\n")
            self.word_start = True
            if self.pending:
                self.next_heredoc()
        else:  # blanks and operators
            self.emit(c)
            self.word_start = True

    in_subst = in_top

    def in_sq(self, frame: Frame, c: str) -> None:
        self.pop("'")

    def in_dsq(self, frame: Frame, c: str) -> None:
        self.pop("'")

    def in_bt(self, frame: Frame, c: str) -> None:
        self.pop("`")

    def in_dq(self, frame: Frame, c: str) -> None:
        if c == '"':
            self.pop('"')
        elif not self.expansion(c):
            self.emit(c)  # a `$` that starts nothing

    def in_hd(self, frame: Frame, c: str) -> None:
        if not self.expansion(c):
            self.emit(c)  # a `$` that starts nothing

    def in_param(self, frame: Frame, c: str) -> None:
        if c == "}":
            self.pop("}")
        elif c == "'":
            if len(self.stack) > 1 and self.stack[-2].kind == "dq":
                self.uncertain = True  # shells disagree on quotes in "${x:-'…'}"
                self.emit("'")
            else:
                self.push("sq", "'")
        elif c == '"':
            self.push("dq", '"')
        elif not self.expansion(c):
            self.emit(c)

    def in_arith(self, frame: Frame, c: str) -> None:
        if c == "(":
            frame.depth += 1
            self.emit("(")
        elif c == ")":
            if frame.depth:
                frame.depth -= 1
                self.emit(")")
            elif self.t.startswith("))", self.i):
                self.pop("))")
            else:
                self.uncertain = True
                self.pop(")")
        elif c == '"':
            self.push("dq", '"')
        elif c == "'":
            self.push("sq", "'")
        elif not self.expansion(c):
            self.emit(c)

    # -- comments and here-documents ------------------------------------------------------

    def comment(self) -> None:
        t = self.t
        end = t.find("\n", self.i)
        end = len(t) if end < 0 else end
        while self.i < end:
            ph = t.find(PH, self.i, end)
            if ph < 0:
                self.emit(t[self.i : end])
                break
            self.emit(t[self.i : ph])
            value, after = self.value_at(ph)
            self.out.append(value.replace("\r", " ").replace("\n", " "))
            self.i = after


def fill_shell(text: str, values: Sequence[Any]) -> str:
    """Replace the placeholders of a rendered ``sh`` block with their values, each escaped for
    the shell context it sits in (see the module docstring)."""
    if PH not in text:
        return text
    return _ShellFiller(text, values).run()
