"""``opsbook init DIR``: write the banking workspace from the templates shipped in the package.

The templates live in ``opsbook/workspace/templates/`` (package data). Files whose name would be
hidden are stored without the dot (``gitignore``) and written with it (``.gitignore``), so
packaging tools never drop them.

Nothing is overwritten silently: a directory that is already a workspace is refused unless
``force``; in any other directory, template files that already exist are refused unless
``force``. An existing ``.gitignore`` is never replaced, only given the ``.opsbook/`` line.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path, PurePosixPath

from opsbook.errors import ValidationError, WorkspaceError
from opsbook.workspace._workspace import MARKER

#: Template names written under another name (hidden files).
RENAMED = {"gitignore": ".gitignore"}
_AUDIT_DIR = ".opsbook-audit"  # the audit key and witness (opsbook.audit); never committed
STATE_DIR = ".opsbook"
_IGNORE_LINE = ".opsbook/"
_SKIP = ("__pycache__",)


def template_files() -> list[tuple[PurePosixPath, bytes]]:
    """Every template as (path relative to the workspace, content), sorted by path."""
    root = files("opsbook.workspace").joinpath("templates")
    if not root.is_dir():
        raise WorkspaceError(
            "the workspace templates are missing from the opsbook installation",
            hint="reinstall opsbook (pip install --force-reinstall opsbook)",
        )
    found = [(_target_name(rel), node.read_bytes()) for rel, node in _walk(root, PurePosixPath())]
    return sorted(found, key=lambda item: str(item[0]))


def _walk(node: Traversable, rel: PurePosixPath) -> Iterator[tuple[PurePosixPath, Traversable]]:
    for child in node.iterdir():
        if child.name in _SKIP or child.name.endswith((".pyc", "~")):
            continue
        if child.is_dir():
            yield from _walk(child, rel / child.name)
        else:
            yield rel / child.name, child


def _target_name(rel: PurePosixPath) -> PurePosixPath:
    return rel.with_name(RENAMED.get(rel.name, rel.name))


def init_workspace(*, target: Path, force: bool = False) -> list[Path]:
    """Write the banking workspace into ``target`` (created if missing) and its ``.opsbook/``.

    Returns the files written, in path order. Raises :class:`WorkspaceError` when ``target``
    is a file, is already a workspace, or holds files a template would replace — unless
    ``force``, which rewrites the template files and leaves every other file alone.
    """
    templates = template_files()
    if target.exists() and not target.is_dir():
        raise WorkspaceError(
            f"{target} exists and is not a directory",
            hint="choose a new directory name for the workspace",
        )
    if not force:
        _refuse_overwrite(target, templates)
    written: list[Path] = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for rel, content in templates:
            path = target.joinpath(*rel.parts)
            if rel.name == ".gitignore" and path.is_file():
                if _merge_gitignore(path):
                    written.append(path)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
            written.append(path)
        (target / STATE_DIR).mkdir(exist_ok=True, mode=0o700)
    except OSError as exc:
        where = exc.filename or target
        raise WorkspaceError(
            f"cannot write the workspace: {where}: {exc.strerror or exc}",
            hint="check that you may write to the directory, or choose another one",
        ) from exc
    return written


def _refuse_overwrite(target: Path, templates: list[tuple[PurePosixPath, bytes]]) -> None:
    if not target.is_dir():
        return
    if (target / MARKER).exists():
        raise WorkspaceError(
            f"{target} is already an opsbook workspace ({MARKER} exists)",
            hint="use it as it is, choose another directory, or pass --force to rewrite "
            "the template files (your other files are kept)",
        )
    clashes = [
        str(rel)
        for rel, _ in templates
        if rel.name != ".gitignore" and target.joinpath(*rel.parts).exists()
    ]
    if clashes:
        shown = ", ".join(clashes[:5]) + (
            f" and {len(clashes) - 5} more" if len(clashes) > 5 else ""
        )
        raise WorkspaceError(
            f"{target} already has files the workspace would replace: {shown}",
            hint="move them away, choose another directory, or pass --force to overwrite them",
        )


def _merge_gitignore(path: Path) -> bool:
    """Add the state directory and the audit key/witness directory to an existing .gitignore;
    True when the file changed."""
    text = path.read_text(encoding="utf-8")
    lines = {line.strip() for line in text.splitlines()}
    missing = [
        f"{comment}\n{entry}/\n"
        for comment, entry in (
            ("# opsbook state", _IGNORE_LINE.rstrip("/")),
            ("# opsbook audit signing key and witness", _AUDIT_DIR),
        )
        if not lines & {entry, entry + "/", "/" + entry, "/" + entry + "/"}
    ]
    if not missing:
        return False
    prefix = "" if not text or text.endswith("\n") else "\n"
    path.write_text(text + prefix + "".join(missing), encoding="utf-8")
    return True


def check_roles(roles: Sequence[str]) -> tuple[str, ...]:
    """``roles`` without duplicates, or a ValidationError naming the unknown one."""
    from opsbook.users.roles import EXTRA_ROLES, ROLES  # noqa: PLC0415 - a table, no imports

    known = (*ROLES, *EXTRA_ROLES)
    for role in roles:
        if role not in known:
            raise ValidationError(
                f"unknown role {role!r}",
                field="--role",
                hint=f"roles: {', '.join(known)}",
            )
    return tuple(dict.fromkeys(roles))


def set_local_roles(*, target: Path, user: str, roles: Sequence[str]) -> tuple[str, ...]:
    """Give ``user`` the workspace's default roles plus ``roles`` under ``[users]`` in
    ``target``'s opsbook.toml (replacing a line of theirs); returns the roles they now hold."""
    import tomllib  # noqa: PLC0415

    path = target / MARKER
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text)
    default = [str(r) for r in data.get("workspace", {}).get("default_roles", ["operator"])]
    held = tuple(dict.fromkeys([*default, *check_roles(roles)]))
    line = f"{json.dumps(user)} = {json.dumps(list(held))}  # set by opsbook init --role"
    lines = text.split("\n")
    try:
        start = next(i for i, x in enumerate(lines) if x.strip() == "[users]")
    except StopIteration:
        lines += ["", "[users]"]
        start = len(lines) - 1
    end = next(
        (i for i in range(start + 1, len(lines)) if re.match(r"\s*\[", lines[i])), len(lines)
    )
    mine = re.compile(rf"\s*({re.escape(json.dumps(user))}|{re.escape(user)})\s*=")
    lines = [x for i, x in enumerate(lines) if not (start < i < end and mine.match(x))]
    end = next(
        (i for i in range(start + 1, len(lines)) if re.match(r"\s*\[", lines[i])), len(lines)
    )
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    lines.insert(end, line)
    path.write_text("\n".join(lines), encoding="utf-8")
    return held
