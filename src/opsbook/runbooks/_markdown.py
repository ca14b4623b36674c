"""CommonMark → a flat list of top-level blocks with 1-based lines, grouped into sections.

Only this module knows markdown-it's tokens.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

_TASK = ("[ ] ", "[x] ", "[X] ")


@dataclass(frozen=True)
class Task:
    text: str
    line: int
    done: bool


@dataclass(frozen=True)
class Fence:
    info: str
    content: str
    line: int  # line of the opening fence
    end: int  # last line of the block


def is_procedure(fence: Fence | None) -> bool:
    """Whether a fence is a ```` ```yaml procedure ```` block."""
    return fence is not None and fence.info.split()[:2] == ["yaml", "procedure"]


@dataclass(frozen=True)
class Block:
    """One top-level Markdown block (a heading, a fence, a list, a paragraph, …)."""

    kind: str  # heading | fence | list | other
    line: int  # first line (1-based)
    end: int  # last line (1-based, inclusive)
    level: int = 0  # heading level
    title: str = ""  # heading: the plain text
    fence: Fence | None = None
    tasks: tuple[Task, ...] = ()  # checklist items anywhere inside
    only_tasks: bool = False  # a list whose every item is a checklist item
    nested_fences: tuple[Fence, ...] = ()  # fences inside lists or quotes


@dataclass
class Sub:
    """A ``###`` subsection: its heading and the blocks under it."""

    heading: Block
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Section:
    """A ``##`` section: its heading, the blocks before the first ``###``, the subsections."""

    heading: Block
    intro: list[Block] = field(default_factory=list)
    subs: list[Sub] = field(default_factory=list)

    def all_blocks(self) -> list[Block]:
        out = list(self.intro)
        for sub in self.subs:
            out.append(sub.heading)
            out.extend(sub.blocks)
        return out


def blocks(text: str) -> list[Block]:
    from markdown_it import MarkdownIt  # noqa: PLC0415 - deferred: not on CLI start-up

    tokens = MarkdownIt("commonmark").parse(text)
    out: list[Block] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok.level != 0 or tok.nesting == -1 or tok.map is None:
            i += 1
            continue
        start, stop = tok.map[0] + 1, tok.map[1]
        if tok.nesting == 0:
            if tok.type == "fence":
                fence = Fence(tok.info, tok.content, start, max(stop, start))
                out.append(Block("fence", start, max(stop, start), fence=fence))
            else:
                out.append(Block("other", start, max(stop, start)))
            i += 1
            continue
        j = _close(tokens, i)
        inner = tokens[i + 1 : j]
        if tok.type == "heading_open":
            level = int(tok.tag[1:]) if tok.tag[1:].isdigit() else 6
            out.append(Block("heading", start, start, level=level, title=_plain(inner)))
        else:
            tasks, only = _tasks(inner) if tok.type.endswith("list_open") else ((), False)
            nested = tuple(
                Fence(t.info, t.content, t.map[0] + 1, t.map[1])
                for t in inner
                if t.type == "fence" and t.map
            )
            kind = "list" if tok.type.endswith("list_open") else "other"
            out.append(
                Block(
                    kind,
                    start,
                    max(stop, start),
                    tasks=tasks,
                    only_tasks=only,
                    nested_fences=nested,
                )
            )
        i = j + 1
    return out


def _close(tokens: list[Any], i: int) -> int:
    depth = 0
    for j in range(i, len(tokens)):
        depth += tokens[j].nesting
        if depth == 0:
            return j
    return len(tokens) - 1


def _plain(inline_tokens: list[Any]) -> str:
    parts: list[str] = []
    for tok in inline_tokens:
        for child in tok.children or ():
            if child.type in ("text", "code_inline"):
                parts.append(child.content)
            elif child.type in ("softbreak", "hardbreak"):
                parts.append(" ")
    return "".join(parts).strip()


def _tasks(inner: list[Any]) -> tuple[tuple[Task, ...], bool]:
    """Checklist items among the list items (any depth) and whether every item is one."""
    tasks: list[Task] = []
    items = 0
    for k, tok in enumerate(inner):
        if tok.type != "list_item_open":
            continue
        items += 1
        inline = next(
            (t for t in inner[k + 1 : k + 3] if t.type == "inline"),
            None,
        )
        if inline is None or not tok.map:
            continue
        content = inline.content
        text = " ".join(content[4:].split())
        if content[:4] in _TASK and text:
            tasks.append(Task(text, tok.map[0] + 1, content[1] in "xX"))
    return tuple(tasks), bool(items) and len(tasks) == items


def sections(items: list[Block]) -> tuple[list[Block], list[Section]]:
    """Group blocks under ``##`` and ``###`` headings. Blocks outside any ``##`` section (the
    title, an introduction, anything after a ``#`` heading) are returned first."""
    outside: list[Block] = []
    secs: list[Section] = []
    current: Section | None = None
    for b in items:
        if b.kind == "heading" and b.level <= 2:
            current = Section(b) if b.level == 2 else None
            if current is not None:
                secs.append(current)
            else:
                outside.append(b)
            continue
        if current is None:
            outside.append(b)
        elif b.kind == "heading" and b.level == 3:
            current.subs.append(Sub(b))
        elif current.subs:
            current.subs[-1].blocks.append(b)
        else:
            current.intro.append(b)
    return outside, secs


def source_of(blocks_: list[Block], lines: list[str]) -> str:
    """The Markdown text of some blocks, as written, separated by blank lines."""
    chunks = ["\n".join(lines[b.line - 1 : b.end]).strip("\n") for b in blocks_]
    return "\n\n".join(c for c in chunks if c.strip())
