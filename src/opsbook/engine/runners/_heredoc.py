"""Here-documents for the shell quoting scan (see :mod:`.shell_quoting`): where their bodies
start and end, and the values that would end them early."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from opsbook.engine.runners._placeholders import PH, PLACEHOLDER
from opsbook.errors import ExpressionError

_BREAK = " \t\n;&|<>()"
HINT = (
    "write {{ … }} where a plain word goes (it is quoted for you), or assign it first — "
    'X={{ params.x }} — and use "$X" there'
)


def refuse(where: str, hint: str = HINT) -> ExpressionError:
    return ExpressionError(
        f"a template value in this sh block sits {where}, where it cannot be quoted safely",
        hint=hint,
    )


def escaped(text: str, pos: int) -> bool:
    """Whether the character at ``pos`` is preceded by an odd number of backslashes."""
    count = 0
    while pos - count - 1 >= 0 and text[pos - count - 1] == "\\":
        count += 1
    return count % 2 == 1


class Frame:
    __slots__ = ("depth", "kind", "start")

    def __init__(self, kind: str, start: int) -> None:
        self.kind = kind
        self.start = start  # index just after the opening token
        self.depth = 0


class HeredocScan:
    """The here-document half of the shell scan; :class:`.shell_quoting._ShellFiller` is the
    rest. Shared state is declared here."""

    t: str
    i: int
    out: list[str]
    values: Sequence[Any]
    stack: list[Frame]
    word_start: bool
    uncertain: bool
    pending: list[tuple[str, bool, bool]]  # delimiter, <<-, quoted
    # The unquoted here-document being read: delimiter, <<-, its frame's depth, and where the
    # current line starts in the output and in the text.
    heredoc: tuple[str, bool, int, int, int] | None

    def emit(self, text: str) -> None:
        raise NotImplementedError

    def value_at(self, i: int) -> tuple[str, int]:
        raise NotImplementedError

    def heredoc_start(self) -> None:
        t, n = self.t, len(self.t)
        j = self.i + 2
        strip = t.startswith("-", j)
        j += 1 if strip else 0
        while j < n and t[j] in " \t":
            j += 1
        delim: list[str] = []
        quoted = False
        while j < n and t[j] not in _BREAK:
            ch = t[j]
            if ch == PH:
                raise refuse("in a here-document terminator", "write the terminator literally")
            if ch in "'\"":
                quoted = True
                close = t.find(ch, j + 1)
                close = n if close < 0 else close
                if PH in t[j + 1 : close]:
                    raise refuse("in a here-document terminator", "write the terminator literally")
                delim.append(t[j + 1 : close])
                j = close + 1
            elif ch == "\\":
                quoted = True
                delim.append(t[j + 1 : j + 2])
                j += 2
            else:
                delim.append(ch)
                j += 1
        if delim:
            self.pending.append(("".join(delim), strip, quoted))
            if self.heredoc is not None:
                self.uncertain = True  # a here-document inside a here-document's $(…)
        self.emit(t[self.i : j])
        self.word_start = False

    def next_heredoc(self) -> None:
        """Start the body of the next pending here-document (the scan is at a line start)."""
        while self.pending:
            delim, strip, quoted = self.pending.pop(0)
            if quoted:
                self.literal_body(delim, strip)
                continue
            self.stack.append(Frame("hd", self.i))
            self.heredoc = (delim, strip, len(self.stack) - 1, len(self.out), self.i)
            self.at_terminator()  # an empty body
            return

    def is_terminator(self, line: str, delim: str, strip: bool) -> bool:
        line = line.lstrip("\t") if strip else line
        if line != delim and line.startswith(delim):
            # bash also ends a here-document inside $(…) at a line like `EOF)`: stop trusting
            # the context of later values.
            self.uncertain = True
        return line == delim

    def at_terminator(self) -> None:
        """At a line start inside an unquoted here-document: end it if this line ends it."""
        assert self.heredoc is not None
        delim, strip, depth, _, _ = self.heredoc
        t = self.t
        end = t.find("\n", self.i)
        end = len(t) if end < 0 else end
        self.heredoc = (delim, strip, depth, len(self.out), self.i)
        if not self.is_terminator(t[self.i : end], delim, strip):
            return
        self.emit(t[self.i : min(end + 1, len(t))])
        del self.stack[depth:]
        self.heredoc = None
        self.word_start = True
        if self.pending:
            self.next_heredoc()

    def heredoc_newline(self) -> None:
        self.check_heredoc_line()
        self.emit("\n")
        self.at_terminator()

    def check_heredoc_line(self) -> None:
        assert self.heredoc is not None
        delim, strip, _, out_start, text_start = self.heredoc
        if PH in self.t[text_start : self.i]:  # only lines that hold a value
            self.check_line("".join(self.out[out_start:]), delim, strip)

    @staticmethod
    def check_line(text: str, delim: str, strip: bool) -> None:
        """Refuse output lines (holding a value) that a shell could take for the terminator."""
        if delim not in text:
            return
        for line in text.split("\n"):
            if (line.lstrip("\t") if strip else line).startswith(delim):
                raise refuse(
                    f"in a here-document and would end it early (a line starting {delim!r})",
                    "choose a here-document terminator the value cannot contain",
                )

    def literal_body(self, delim: str, strip: bool) -> None:
        """A quoted here-document (<<'EOF'): the body is text; values go in verbatim."""
        t, n = self.t, len(self.t)
        while self.i < n:
            end = t.find("\n", self.i)
            end = n if end < 0 else end
            line = t[self.i : end]
            if self.is_terminator(line, delim, strip):
                self.emit(t[self.i : min(end + 1, n)])
                break
            if PH in line:
                line = PLACEHOLDER.sub(lambda m: self.value_at(self.i + m.start())[0], line)
                self.check_line(line, delim, strip)
            self.out.append(line + ("\n" if end < n else ""))
            self.i = min(end + 1, n)
