"""The runbook catalogue: every runbook of a workspace's ``runbooks/`` directory, by id.

``RUNBOOK#PROCEDURE`` references name a runbook by its id (or its file stem, e.g.
``01_system_monitoring``) and a procedure by its id.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from opsbook.errors import Location, NotFoundError, RunbookFormatError, WorkspaceError
from opsbook.runbooks._frontmatter import has_front_matter, key_line
from opsbook.runbooks.model import Procedure, Runbook

#: Index files a runbooks directory may hold without front matter (skipped silently).
INDEX_NAMES = ("readme.md", "index.md")


@dataclass(frozen=True)
class Catalogue:
    runbooks: tuple[Runbook, ...]  # sorted by file name

    def __iter__(self) -> Iterator[Runbook]:
        return iter(self.runbooks)

    def get(self, runbook_id: str) -> Runbook:
        """A runbook by id, or by file stem (``01_system_monitoring``)."""
        for rb in self.runbooks:
            if rb.id == runbook_id:
                return rb
        for rb in self.runbooks:
            if rb.path.stem == runbook_id:
                return rb
        names = [rb.id for rb in self.runbooks]
        close = difflib.get_close_matches(
            runbook_id, names + [rb.path.stem for rb in self.runbooks], n=3, cutoff=0.5
        )
        if close:
            hint = f"did you mean: {', '.join(dict.fromkeys(close))}?"
        elif names:
            hint = f"runbooks: {', '.join(names)}"
        else:
            hint = "the runbooks directory is empty; `opsbook init` writes the banking runbooks"
        raise NotFoundError(f"no runbook {runbook_id!r}", hint=hint)

    def resolve(self, ref: str) -> tuple[Runbook, Procedure]:
        """``RUNBOOK#PROCEDURE`` (or ``RUNBOOK`` when it has exactly one procedure)."""
        rb_id, sep, proc_id = ref.strip().partition("#")
        rb = self.get(rb_id)
        refs = [f"{rb.id}#{p.id}" for p in rb.procedures]
        if not sep or not proc_id:
            if len(rb.procedures) == 1:
                return rb, rb.procedures[0]
            raise NotFoundError(
                f"runbook {rb.id!r} has {len(rb.procedures) or 'no'} procedures; name one",
                hint=f"procedures: {', '.join(refs)}" if refs else "add a ## procedure section",
            )
        proc = rb.procedure(proc_id)
        if proc is not None:
            return rb, proc
        ids = [p.id for p in rb.procedures]
        close = difflib.get_close_matches(proc_id, ids, n=3, cutoff=0.5)
        hint = (
            f"did you mean: {', '.join(f'{rb.id}#{c}' for c in close)}?"
            if close
            else f"procedures: {', '.join(refs) or '(none)'}"
        )
        raise NotFoundError(f"runbook {rb.id!r} has no procedure {proc_id!r}", hint=hint)

    def refs(self) -> list[str]:
        """Every ``RUNBOOK#PROCEDURE`` in the catalogue."""
        return [f"{rb.id}#{p.id}" for rb in self.runbooks for p in rb.procedures]


def runbook_files(directory: Path) -> list[Path]:
    """The runbook files of a directory (not recursive), sorted by name; index files without
    front matter (README.md, index.md) are left out."""
    files = []
    for path in sorted(directory.glob("*.md"), key=lambda p: p.name):
        if not path.is_file():
            continue
        if path.name.lower() in INDEX_NAMES and not has_front_matter(_head(path)):
            continue
        files.append(path)
    return files


def load_catalogue(runbooks_dir: Path) -> Catalogue:
    """Parse every runbook of ``runbooks_dir``. The first bad file raises its error."""
    if not runbooks_dir.is_dir():
        raise WorkspaceError(
            f"no runbooks directory at {runbooks_dir}",
            hint="create it, or run `opsbook init` to write a workspace with the banking runbooks",
        )
    from opsbook.runbooks.parser import parse_file  # noqa: PLC0415

    runbooks: list[Runbook] = []
    for path in runbook_files(runbooks_dir):
        rb = parse_file(path)
        twin = next((r for r in runbooks if r.id == rb.id), None)
        if twin is not None:
            raise RunbookFormatError(
                f"runbook id {rb.id!r} is used by both {twin.path.name} and {path.name}",
                location=Location(str(path), key_line(rb.source, "id"), 1),
                hint="give each runbook its own id in its front matter",
            )
        runbooks.append(rb)
    return Catalogue(tuple(runbooks))


def _head(path: Path) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return fh.readline()
    except OSError:
        return ""


_ID_LINE = re.compile(r"^id\s*:\s*[\"']?([^\"'#\s]+)")


def _front_matter_id(path: Path) -> str | None:
    """The ``id:`` of a runbook's front matter, read without parsing the file."""
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            if fh.readline().strip() != "---":
                return None
            for _ in range(200):
                line = fh.readline()
                if not line or line.strip() == "---":
                    return None
                m = _ID_LINE.match(line)
                if m:
                    return m.group(1)
    except OSError:
        return None
    return None


def resolve_in(
    runbooks_dir: Path, ref: str, *, cache_dir: Path | None = None
) -> tuple[Runbook, Procedure]:
    """``RUNBOOK#PROCEDURE`` parsing only the runbook it names, so running one procedure is
    quick and a broken unrelated runbook does not stop it. Anything unclear (no match, an id
    used twice) falls back to the whole catalogue for its complete error message."""
    rb_id = ref.strip().partition("#")[0]
    if runbooks_dir.is_dir() and rb_id:
        files = runbook_files(runbooks_dir)
        by_id = [f for f in files if _front_matter_id(f) == rb_id]
        matches = by_id or [f for f in files if f.stem == rb_id]
        if len(matches) == 1:
            from opsbook.runbooks.cache import parse_cached  # noqa: PLC0415

            rb = parse_cached(matches[0], cache_dir=cache_dir)
            if rb.id == rb_id or (not by_id and matches[0].stem == rb_id):
                return Catalogue((rb,)).resolve(ref)
    return load_catalogue(runbooks_dir).resolve(ref)
