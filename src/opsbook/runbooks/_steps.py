"""One ``###`` step: its instruction, its executable block, expectations and checklist."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from opsbook.errors import Location, RunbookFormatError
from opsbook.runbooks import _attrs, _bodies, _yaml
from opsbook.runbooks._collect import Errors
from opsbook.runbooks._markdown import Block as MdBlock
from opsbook.runbooks._markdown import Fence, Sub, source_of
from opsbook.runbooks._values import github_slug, parse_bool
from opsbook.runbooks.model import (
    EXECUTABLE_INFO,
    ApprovalSpec,
    Block,
    ChecklistItem,
    DecideRule,
    Expectation,
    Step,
    StepKind,
)

_INDENT = re.compile(r"[ \t]*")
_NONE: tuple[Expectation, ...] = ()


@dataclass(frozen=True)
class Ctx:
    path: str
    lines: list[str]
    compile_cel: _bodies.CompileCel
    errors: Errors

    def line_text(self, line: int) -> str:
        return self.lines[line - 1] if 0 < line <= len(self.lines) else ""

    def where(self, fence: Fence) -> _yaml.Where:
        """Where a fence's content starts in the file."""
        indent = len(_INDENT.match(self.line_text(fence.line)).group(0))  # type: ignore[union-attr]
        return _yaml.Where(self.path, fence.line + 1, min(indent, 3))


@dataclass(frozen=True)
class Classified:
    role: str  # exec | expect | procedure | example
    info: _attrs.Info
    attrs: tuple[_attrs.Attr, ...] = ()


def classify(fence: Fence, ctx: Ctx) -> Classified:
    """What a fence is: an executable block, an expect block, a procedure block or an example."""
    info = _attrs.split_info(fence.info, ctx.line_text(fence.line))
    if info.word == "yaml" and info.words[:1] == ("procedure",):
        return Classified("procedure", info)
    if info.word == "expect":
        if info.words or info.attr_text:
            raise RunbookFormatError(
                "expect blocks take no attributes",
                location=Location(ctx.path, fence.line, info.col),
                hint="write the fence as ```expect and put the attributes on the block it checks",
            )
        return Classified("expect", info)
    if info.word not in EXECUTABLE_INFO:
        return Classified("example", info)
    attrs = tuple(_attrs.parse_attrs(info, path=ctx.path, line=fence.line))
    ignore = next((a for a in attrs if a.key == "ignore"), None)
    if ignore is not None:
        try:
            ignored = parse_bool(ignore.value)
        except ValueError:
            raise RunbookFormatError(
                f"ignore={ignore.value!r} is not true or false",
                location=Location(ctx.path, fence.line, ignore.vcol),
                hint="write ignore=true to keep the block as an example",
            ) from None
        if ignored:
            return Classified("example", info, attrs)
    if info.words:
        raise RunbookFormatError(
            f"unexpected {info.words[0]!r} after {info.word!r} in the info string",
            location=Location(ctx.path, fence.line, info.col + len(info.word) + 1),
            hint=f"put attributes in braces: ```{info.word} {{name=my-step timeout=30s}}",
        )
    return Classified("exec", info, attrs)


def build_step(sub: Sub, ctx: Ctx) -> tuple[Step, list[_bodies.GotoRef]]:
    """The step of a ``###`` subsection. Each fenced block is checked on its own: a problem
    goes to ``ctx.errors`` and the step's other blocks are still checked."""
    heading = sub.heading
    errors = ctx.errors
    exec_fence: Fence | None = None
    exec_cls: Classified | None = None
    broken = False  # an executable block whose info string did not parse (already reported)
    expects: list[Fence] = []
    prose: list[MdBlock] = []
    checklist: list[ChecklistItem] = []
    for b in sub.blocks:
        if b.kind == "fence" and b.fence is not None:
            cls = errors.guard(functools.partial(classify, b.fence, ctx), None)
            if cls is None:
                broken = True
                continue
            if cls.role == "procedure":
                errors.add(
                    RunbookFormatError(
                        "a procedure block must come right under its ## heading, before the steps",
                        location=Location(ctx.path, b.line, 1),
                        hint="move the ```yaml procedure block up, directly under the ## heading",
                    )
                )
                continue
            if cls.role == "exec":
                if exec_fence is not None:
                    errors.add(
                        RunbookFormatError(
                            f"step {heading.title!r} has a second executable block (the first "
                            f"is at line {exec_fence.line})",
                            location=Location(ctx.path, b.line, 1),
                            hint="split it into two ### steps, one block each (or mark the "
                            "second {ignore=true} if it is an example)",
                        )
                    )
                    continue
                exec_fence, exec_cls = b.fence, cls
                continue
            if cls.role == "expect":
                if exec_fence is None or exec_cls is None:
                    if broken:  # its block is already reported; still check the assertions
                        expects.append(b.fence)
                        continue
                    errors.add(
                        RunbookFormatError(
                            "an expect block needs an executable block before it in the step",
                            location=Location(ctx.path, b.line, 1),
                            hint="put the expect block after the sh/http/sql/promql/action "
                            "block whose result it checks",
                        )
                    )
                    continue
                if EXECUTABLE_INFO[exec_cls.info.word] in (StepKind.APPROVAL, StepKind.DECIDE):
                    errors.add(
                        RunbookFormatError(
                            f"{_article(exec_cls.info.word)} {exec_cls.info.word} block has no "
                            "result for expect to check",
                            location=Location(ctx.path, b.line, 1),
                            hint="remove the expect block",
                        )
                    )
                    continue
                expects.append(b.fence)
                continue
        if b.kind == "list" and b.tasks:
            checklist.extend(ChecklistItem(t.text, t.line) for t in b.tasks)
            if b.only_tasks:
                continue
        prose.append(b)
    if exec_fence is None and expects:  # only when collecting: the block was broken
        for e in expects:
            errors.guard(functools.partial(_expectations, e, ctx), _NONE)
        expects = []
    return _step(heading, exec_fence, exec_cls, expects, prose, checklist, ctx)


def _expectations(fence: Fence, ctx: Ctx) -> tuple[Expectation, ...]:
    return _bodies.expectations(fence.content, where=ctx.where(fence), compile_cel=ctx.compile_cel)


def _step(
    heading: MdBlock,
    fence: Fence | None,
    cls: Classified | None,
    expects: list[Fence],
    prose: list[MdBlock],
    checklist: list[ChecklistItem],
    ctx: Ctx,
) -> tuple[Step, list[_bodies.GotoRef]]:
    errors = ctx.errors
    instruction = source_of(prose, ctx.lines)
    step_id = github_slug(heading.title)
    if fence is None or cls is None:
        errors.guard(functools.partial(_need_id, step_id, heading, ctx), None)
        step = Step(
            id=step_id,
            title=heading.title,
            kind=StepKind.MANUAL,
            line=heading.line,
            instruction=instruction,
            checklist=tuple(checklist),
        )
        return step, []
    word = cls.info.word
    kind = EXECUTABLE_INFO[word]
    attrs = list(cls.attrs)
    name = next((a.value for a in attrs if a.key == "name"), None)
    options = _attrs.build_options(
        attrs,
        kind=str(kind),
        interpreter="bash" if word == "bash" else None,
        path=ctx.path,
        line=fence.line,
        compile_cel=ctx.compile_cel,
        errors=errors,
    )
    step_id = name or step_id
    errors.guard(functools.partial(_need_id, step_id, heading, ctx), None)
    where = ctx.where(fence)
    content = fence.content
    gotos: list[_bodies.GotoRef] = []
    extra: dict[str, Any] = {}
    if not content.strip() and kind is not StepKind.APPROVAL:
        errors.add(
            RunbookFormatError(
                f"the {word} block is empty",
                location=Location(ctx.path, fence.line, 1),
                hint=f"write what the {word} block should run, or remove it",
            )
        )
    else:
        errors.guard(functools.partial(_body, kind, content, where, ctx, extra, gotos), None)
    of = options.on_failure
    if of.action == "goto" and of.target:
        attr = next(a for a in attrs if a.key == "on_failure")
        gotos.append(_bodies.GotoRef(of.target, Location(ctx.path, fence.line, attr.vcol)))
    expectations: list[Expectation] = []
    for e in expects:
        expectations.extend(errors.guard(functools.partial(_expectations, e, ctx), _NONE))
    step = Step(
        id=step_id,
        title=heading.title,
        kind=kind,
        line=heading.line,
        instruction=instruction,
        block=Block(
            info=word,
            body=content,
            attrs={a.key: a.value for a in attrs},
            line=fence.line,
        ),
        options=options,
        expectations=tuple(expectations),
        checklist=tuple(checklist),
        **extra,
    )
    return step, gotos


def _body(
    kind: StepKind,
    content: str,
    where: _yaml.Where,
    ctx: Ctx,
    extra: dict[str, Any],
    gotos: list[_bodies.GotoRef],
) -> None:
    """Check the block's body; its parsed parts go into ``extra`` and ``gotos``."""
    if kind is StepKind.HTTP:
        _bodies.http_request_line(content, where=where)
    elif kind is StepKind.ACTION:
        extra["action_name"], extra["action_args"] = _bodies.action(content, where=where)
    elif kind is StepKind.APPROVAL:
        approval: ApprovalSpec = _bodies.approval(content, where=where)
        extra["approval"] = approval
    elif kind is StepKind.DECIDE:
        rules: tuple[DecideRule, ...]
        rules, found = _bodies.decide(content, where=where, compile_cel=ctx.compile_cel)
        extra["decide"] = rules
        gotos.extend(found)


def _need_id(step_id: str, heading: MdBlock, ctx: Ctx) -> None:
    if not step_id:
        raise RunbookFormatError(
            f"step heading {heading.title!r} gives no id",
            location=Location(ctx.path, heading.line, 1),
            hint="write a heading with words in it, or give the block a name= attribute",
        )


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"
