"""Runbook format v1: Markdown + YAML front matter + executable fenced blocks → :class:`Runbook`.

See docs/runbook-format.md. :func:`parse_file` and :func:`parse_text` stop at the first error,
raised as :class:`~opsbook.errors.RunbookFormatError` with the file, line and column and a hint.
:func:`check_file` (``opsbook lint``) goes on past an error to the next block (front-matter
key, procedure block, parameter, fenced block, step, procedure) and answers them all.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from opsbook.errors import (
    ExpressionError,
    Location,
    NotFoundError,
    RunbookFormatError,
    WorkspaceError,
)
from opsbook.runbooks import _bodies, _frontmatter, _markdown, _procmeta
from opsbook.runbooks._collect import Errors
from opsbook.runbooks._steps import Ctx, build_step
from opsbook.runbooks._values import github_slug
from opsbook.runbooks.model import DOC_HEADINGS, DocSection, Procedure, Runbook, Step


def parse_file(path: Path) -> Runbook:
    """Read and parse one runbook file."""
    text, digest = _read(path)
    return _parse(text, path=path, content_hash=digest, errors=Errors(keep_going=False))


def check_file(path: Path) -> tuple[Runbook | None, list[RunbookFormatError]]:
    """Parse one file, collecting every format error that can be located: the runbook (None
    when there was any) and the errors in file order. A file that cannot be read, is not
    UTF-8, or whose front matter is missing, unclosed or not a YAML mapping answers that one
    error; a problem reading it (not found, permissions) raises."""
    errors = Errors(keep_going=True)
    runbook: Runbook | None = None
    try:
        text, digest = _read(path)
        runbook = _parse(text, path=path, content_hash=digest, errors=errors)
    except RunbookFormatError as exc:  # the rest of the file cannot be read
        errors.found.append(exc)
    found = errors.sorted_unique()
    return (None, found) if found else (runbook, [])


def _read(path: Path) -> tuple[str, str]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"no runbook file {path}", hint="check the path") from None
    except OSError as exc:
        raise WorkspaceError(
            f"cannot read {path}: {exc.strerror or exc}",
            hint="check the file's permissions",
        ) from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise RunbookFormatError(
            "the file is not valid UTF-8",
            location=Location(str(path), line, 1),
            hint="save the runbook as UTF-8",
        ) from None
    return text, hashlib.sha256(data).hexdigest()


def parse_text(text: str, *, path: Path) -> Runbook:
    """Parse runbook text; ``path`` is used for locations and stored on the runbook."""
    digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
    return _parse(text, path=path, content_hash=digest, errors=Errors(keep_going=False))


def _compile_cel(expr: str, location: Location) -> None:
    from opsbook.expressions import compile_expression  # noqa: PLC0415 - deferred CEL import

    compile_expression(expr, location=location)


def _parse(text: str, *, path: Path, content_hash: str, errors: Errors) -> Runbook:
    where = str(path)
    normal = text.replace("\r\n", "\n").replace("\r", "\n")
    lines = normal.split("\n")
    meta, fm_end = _frontmatter.parse_meta(lines, path=where, errors=errors)
    masked = "\n" * fm_end + "\n".join(lines[fm_end:])
    ctx = Ctx(where, lines, _compile_cel, errors)
    outside, sections = _markdown.sections(_markdown.blocks(masked))
    for b in outside:
        if _markdown.is_procedure(b.fence):
            errors.add(
                RunbookFormatError(
                    "a procedure block must be under a ## heading",
                    location=Location(where, b.line, 1),
                    hint="put a '## Procedure name' heading above the ```yaml procedure block",
                )
            )
    procedures: list[Procedure] = []
    docs: list[DocSection] = []
    for sec in sections:
        try:
            proc = _procedure(sec, ctx)
        except RunbookFormatError as exc:
            errors.add(exc)
            continue  # reported; the next procedure is still checked
        if proc is None:
            body = _markdown.source_of(sec.all_blocks(), lines)
            docs.append(DocSection(sec.heading.title, body, sec.heading.line))
            continue
        twin = next((p for p in procedures if p.id == proc.id), None)
        if twin is not None:
            errors.add(
                RunbookFormatError(
                    f"procedure id {proc.id!r} is used twice (first at line {twin.line})",
                    location=Location(where, proc.line, 1),
                    hint="rename one heading, or give one procedure an 'id:' in its procedure "
                    "block",
                )
            )
            continue
        procedures.append(proc)
    return Runbook(
        meta=meta,
        path=path,
        content_hash=content_hash,
        source=text,
        procedures=tuple(procedures),
        doc_sections=tuple(docs),
    )


def _procedure(sec: _markdown.Section, ctx: Ctx) -> Procedure | None:
    errors = ctx.errors
    metas = [b for b in sec.intro if _markdown.is_procedure(b.fence)]
    for sub in sec.subs:
        for b in sub.blocks:
            if _markdown.is_procedure(b.fence):
                errors.add(
                    RunbookFormatError(
                        "a procedure block must come right under its ## heading, before the steps",
                        location=Location(ctx.path, b.line, 1),
                        hint="move the ```yaml procedure block up, directly under the ## heading",
                    )
                )
    if not metas:
        return None
    if len(metas) > 1:
        errors.add(
            RunbookFormatError(
                f"a second procedure block in {sec.heading.title!r} (the first is at line "
                f"{metas[0].line})",
                location=Location(ctx.path, metas[1].line, 1),
                hint="keep one ```yaml procedure block per ## section",
            )
        )
    fence = metas[0].fence
    assert fence is not None
    pm = errors.guard(
        functools.partial(_procmeta.parse, fence.content, where=ctx.where(fence), errors=errors),
        _procmeta.EMPTY,
    )
    proc_id = pm.id or github_slug(sec.heading.title)
    if not proc_id:
        errors.add(
            RunbookFormatError(
                f"procedure heading {sec.heading.title!r} gives no id",
                location=Location(ctx.path, sec.heading.line, 1),
                hint="write a heading with words in it, or add 'id: my-procedure' to its block",
            )
        )
    steps: list[Step] = []
    doc_sections: list[DocSection] = []
    gotos: list[_bodies.GotoRef] = []
    for sub in sec.subs:
        title = sub.heading.title
        if title.strip().lower() in DOC_HEADINGS:
            body = _markdown.source_of(sub.blocks, ctx.lines)
            doc_sections.append(DocSection(title, body, sub.heading.line))
            continue
        try:
            step, step_gotos = build_step(sub, ctx)
        except ExpressionError as exc:  # defensive: every CEL error is converted on the way
            errors.add(
                RunbookFormatError(
                    exc.message,
                    location=exc.location or Location(ctx.path, sub.heading.line, 1),
                    hint=exc.hint,
                )
            )
            continue
        twin = next((s for s in steps if s.id == step.id), None)
        if twin is not None:
            errors.add(
                RunbookFormatError(
                    f"step id {step.id!r} is used twice in procedure {proc_id!r} "
                    f"(lines {twin.line} and {step.line})",
                    location=Location(ctx.path, step.line, 1),
                    hint="rename one heading, or give one block a name= attribute",
                )
            )
        steps.append(step)
        gotos.extend(step_gotos)
    ids = [s.id for s in steps]
    for g in gotos:
        if g.target not in ids:
            errors.add(
                RunbookFormatError(
                    f"goto target {g.target!r} is not a step of procedure {proc_id!r}",
                    location=g.location,
                    hint=f"steps: {', '.join(ids) or '(none)'}",
                )
            )
    description = _markdown.source_of([b for b in sec.intro if b is not metas[0]], ctx.lines)
    return Procedure(
        id=proc_id,
        title=sec.heading.title,
        line=sec.heading.line,
        steps=tuple(steps),
        when_to_use=pm.when_to_use,
        schedule=pm.schedule,
        permissions=pm.permissions,
        prerequisites=pm.prerequisites,
        environments=pm.environments,
        risk=pm.risk,
        params=pm.params,
        description=description,
        doc_sections=tuple(doc_sections),
        meta_line=fence.line,
    )
