"""``opsbook lint``: runbook format v1 and the documentation standards, as findings.

Codes (documented in docs/runbook-format.md, "Lint"):

- OB001 parse error (every one the parser can locate), OB002 runbook id used by two files
- OB101 no steps, OB102 no prerequisites, OB103 no permissions, OB104 automated step without
  an expect block, OB105 no troubleshooting and no on_failure, OB106 high-risk change without a
  prior approval step, OB107 review overdue, OB108 owner/last_reviewed/review_interval missing,
  OB109 step without instruction prose, OB110 manual step with neither instruction nor checklist
- OB111 info word that looks like a typo of a block type, OB112 executable block nested in a
  list or quote (never runs), OB113 checklist in a step with an executable block (not attested)
- OB114 a schedule that fires more than once a day on a procedure with manual steps
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Protocol

from opsbook.durations import parse_duration
from opsbook.errors import OpsbookError
from opsbook.runbooks import _markdown
from opsbook.runbooks._frontmatter import has_front_matter, key_line, split
from opsbook.runbooks.catalogue import INDEX_NAMES
from opsbook.runbooks.model import DOC_HEADINGS, EXECUTABLE_INFO, Procedure, Runbook, StepKind
from opsbook.runbooks.parser import check_file

AUTOMATED = (StepKind.SH, StepKind.HTTP, StepKind.SQL, StepKind.PROMQL, StepKind.ACTION)
#: Fence languages that are documentation even though they are close to a block type.
DOC_LANGUAGES = frozenset(
    (
        "console",
        "shell",
        "shell-session",
        "sh-session",
        "shellsession",
        "zsh",
        "ksh",
        "csh",
        "tcsh",
        "fish",
        "ash",
        "dash",
        "powershell",
        "pwsh",
        "ps1",
        "bat",
        "cmd",
        "psql",
        "mysql",
        "pgsql",
        "plsql",
        "tsql",
        "sqlite",
        "graphql",
        "html",
        "htm",
        "xml",
        "yaml",
        "yml",
        "json",
        "jsonc",
        "json5",
        "toml",
        "ini",
        "conf",
        "text",
        "txt",
        "plaintext",
        "log",
        "diff",
        "patch",
        "md",
        "markdown",
        "python",
        "py",
        "go",
        "js",
        "ts",
        "rust",
        "rb",
        "ruby",
        "java",
        "c",
        "cpp",
        "hcl",
        "tf",
        "dockerfile",
        "make",
        "nginx",
        "cel",
        "logql",
        "ssh-config",
    )
)


class _Add(Protocol):
    def __call__(
        self, line: int, code: str, message: str, severity: str = "warning", col: int = 1
    ) -> None: ...


@dataclass(frozen=True)
class Finding:
    path: Path
    line: int
    col: int
    code: str
    message: str
    severity: str  # "error" | "warning"


def format_finding(finding: Finding) -> str:
    """``FILE:LINE:COL: CODE message``."""
    f = finding
    return f"{f.path}:{f.line}:{f.col}: {f.code} {f.message}"


def lint_paths(paths: Sequence[Path], *, today: date) -> list[Finding]:
    """Lint files and directories (walked for ``*.md``; index files without front matter are
    skipped). Every file is checked even when others fail to parse, and every format error a
    file's parse can locate is reported (OB001 each), not only the first."""
    findings: list[Finding] = []
    ids: dict[str, Path] = {}
    for path in _files(paths):
        try:
            rb, errors = check_file(path)
        except OpsbookError as exc:  # not found, unreadable
            findings.append(_parse_error(path, exc))
            continue
        if rb is None:
            findings.extend(_parse_error(path, exc) for exc in errors)
            continue
        if rb.id in ids and ids[rb.id] != path:
            findings.append(
                Finding(
                    path,
                    key_line(rb.source, "id"),
                    1,
                    "OB002",
                    f"runbook id {rb.id!r} is also used by {ids[rb.id]}",
                    "error",
                )
            )
        ids.setdefault(rb.id, path)
        findings.extend(lint_runbook(rb, today=today))
    return sorted(findings, key=lambda f: (str(f.path), f.line, f.col, f.code))


def _parse_error(path: Path, exc: OpsbookError) -> Finding:
    """OB001 at the error's location, its fix in the message."""
    loc = exc.location
    message = exc.message + (f" (fix: {exc.hint})" if exc.hint else "")
    line, col = (loc.line or 1, loc.col or 1) if loc else (1, 1)
    return Finding(path, line, col, "OB001", message, "error")


def _files(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if not p.is_dir():
            out.append(p)
            continue
        for f in sorted(p.rglob("*.md")):
            rel = f.relative_to(p).parts
            if any(part.startswith(".") for part in rel) or not f.is_file():
                continue
            if f.name.lower() in INDEX_NAMES and not has_front_matter(_head(f)):
                continue
            out.append(f)
    return list(dict.fromkeys(out))


def _head(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return fh.readline()
    except OSError:
        return ""


def lint_runbook(rb: Runbook, *, today: date) -> list[Finding]:
    """The documentation-standard findings of one parsed runbook."""
    out: list[Finding] = []

    def add(line: int, code: str, message: str, severity: str = "warning", col: int = 1) -> None:
        out.append(Finding(rb.path, line, col, code, message, severity))

    _review(rb, today, add)
    for proc in rb.procedures:
        _procedure(proc, add)
        _schedule(proc, add, rb.source)
    _fences(rb, add)
    return out


def _review(rb: Runbook, today: date, add: _Add) -> None:
    meta = rb.meta
    missing = [k for k in ("owner", "last_reviewed", "review_interval") if not getattr(meta, k)]
    if missing:
        add(1, "OB108", f"front matter has no {', '.join(missing)} (review cadence and owner)")
    if meta.last_reviewed and meta.review_interval:
        due = date.fromisoformat(meta.last_reviewed) + timedelta(
            seconds=parse_duration(meta.review_interval)
        )
        if today > due:
            add(
                key_line(rb.source, "last_reviewed"),
                "OB107",
                f"review overdue: last reviewed {meta.last_reviewed}, due every "
                f"{meta.review_interval}, so by {due.isoformat()}",
            )


def _procedure(proc: Procedure, add: _Add) -> None:
    where = proc.meta_line or proc.line
    if not proc.steps:
        add(proc.line, "OB101", f"procedure {proc.id!r} has no steps (### headings)", "error")
    if not proc.prerequisites:
        add(where, "OB102", f"procedure {proc.id!r} lists no prerequisites")
    if not proc.permissions:
        add(where, "OB103", f"procedure {proc.id!r} lists no permissions")
    has_on_failure = any(s.options.on_failure.action != "stop" for s in proc.steps)
    if proc.steps and not proc.troubleshooting and not has_on_failure:
        add(
            proc.line,
            "OB105",
            f"procedure {proc.id!r} has no Troubleshooting/Common issues section and no "
            "step with on_failure",
        )
    approved = False
    first_change = True
    for step in proc.steps:
        if step.kind is StepKind.APPROVAL:
            approved = True
        if step.changes_state and not approved:
            high_proc = proc.risk == "high" and first_change
            if high_proc or step.options.risk == "high":
                why = "procedure" if high_proc else "step"
                add(
                    step.line,
                    "OB106",
                    f"step {step.id!r} changes state in a risk: high {why} with no approval "
                    "step before it",
                    "error",
                )
        if step.changes_state:
            first_change = False
        if step.kind in AUTOMATED and not step.expectations:
            line = step.block.line if step.block else step.line
            add(line, "OB104", f"step {step.id!r} has no expect block documenting its result")
        if step.kind is StepKind.MANUAL:
            if not step.instruction and not step.checklist:
                add(
                    step.line,
                    "OB110",
                    f"manual step {step.id!r} has neither instructions nor a checklist",
                    "error",
                )
        else:
            if not step.instruction:
                add(step.line, "OB109", f"step {step.id!r} has no instruction prose")
            if step.checklist:
                add(
                    step.checklist[0].line,
                    "OB113",
                    f"step {step.id!r} runs a block, so its checklist is never attested; "
                    "move the checklist to its own step",
                )


def _schedule(proc: Procedure, add: _Add, source: str) -> None:
    """OB114: every scheduled run would park at a manual step, more often than daily."""
    manual = [s.id for s in proc.steps if s.kind is StepKind.MANUAL]
    if not proc.schedule or not manual:
        return
    from croniter import croniter  # noqa: PLC0415 - deferred: only runbooks with a schedule

    it = croniter(proc.schedule, datetime(2026, 1, 5, tzinfo=UTC))  # a Monday
    times = [it.get_next(datetime) for _ in range(200)]
    gap = min(b - a for a, b in pairwise(times))
    if gap >= timedelta(days=1):
        return  # the scheduler skips a due time while the previous run waits
    minutes = int(gap.total_seconds() // 60)
    every = f"every {minutes} min" if minutes < 60 else f"every {minutes / 60:g} h"
    start = proc.meta_line or proc.line
    lines = source.split("\n")
    at = next(
        (i for i in range(start, len(lines) + 1) if lines[i - 1].strip().startswith("schedule:")),
        start,
    )
    add(
        at,
        "OB114",
        f"procedure {proc.id!r} is scheduled {every} ({proc.schedule}) but has manual "
        f"step(s) {', '.join(manual)}: every run would wait for a person; make the steps "
        "automatic (expect blocks), move them to an unscheduled procedure, or schedule it "
        "at most daily",
        "error",
    )


def _fences(rb: Runbook, add: _Add) -> None:
    """Blocks inside procedure steps that were probably meant to run but never will."""
    lines = rb.source.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    fm = split(lines)
    skip = fm.end_line if fm else 0
    masked = "\n" * skip + "\n".join(lines[skip:])
    _, sections = _markdown.sections(_markdown.blocks(masked))
    for sec in sections:
        for block in sec.intro:
            if block.fence is not None and block.fence.info.split()[:1] == ["yaml"]:
                _typo(block.fence, add)
        if not any(_markdown.is_procedure(b.fence) for b in sec.intro):
            continue
        for sub in sec.subs:
            if sub.heading.title.strip().lower() in DOC_HEADINGS:
                continue
            for block in sub.blocks:
                if block.fence is not None:
                    _typo(block.fence, add)
                for fence in block.nested_fences:
                    _typo(fence, add)
                    _nested(fence, add)


def _typo(fence: _markdown.Fence, add: _Add) -> None:
    words = fence.info.split()
    guess = typo_of(words) if words else None
    if guess:
        add(
            fence.line,
            "OB111",
            f"{' '.join(words[:2])!r} looks like a typo of {guess!r}; the block is treated as "
            "an example and never runs",
        )


def _nested(fence: _markdown.Fence, add: _Add) -> None:
    words = fence.info.split()
    if words and words[0] in EXECUTABLE_INFO and "ignore=true" not in fence.info.replace(" ", ""):
        add(
            fence.line,
            "OB112",
            f"the {words[0]} block is inside a list or quote, so it never runs; move it to the "
            "top level (no indent) or use `console` for an example",
        )


def typo_of(words: list[str]) -> str | None:
    """The block type an info string probably meant, when its first word is a near miss."""
    word = words[0]
    if word in EXECUTABLE_INFO or word == "expect":
        return None
    if word == "yaml":
        second = words[1].lower() if len(words) > 1 else ""
        if second and second != "procedure" and _distance(second, "procedure") <= 2:
            return "yaml procedure"
        return None
    lower = word.lower()
    for known in (*EXECUTABLE_INFO, "expect"):
        if lower == known:
            return known
    if lower in DOC_LANGUAGES:
        return None
    for known in (*EXECUTABLE_INFO, "expect"):
        if _distance(lower, known) <= (1 if len(known) <= 4 else 2):
            return known
    return None


def _distance(a: str, b: str) -> int:
    """Edit distance with adjacent transpositions (optimal string alignment)."""
    if abs(len(a) - len(b)) > 2:
        return 3
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]
