"""The workspace kept in git, through the git command line (argv lists, never a shell).

opsbook does not version runbooks itself: a published runbook version is a git commit of the
runbook file plus an annotated tag ``runbook/<id>/v<N>``, and the version numbers are read back
from those tags. Commits use the repository's configured identity; when git has none (a fresh
machine, a container) they fall back to ``opsbook <opsbook@localhost>`` as committer, and the
people involved are named in the commit message's trailers either way.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from opsbook.errors import ConflictError, WorkspaceError

#: ``runbook/<id>/v<N>``: the tag of a published version.
TAG_RE = re.compile(r"^runbook/(?P<id>[^/]+)/v(?P<n>[1-9][0-9]*)$")
_TIMEOUT = 60.0


def tag_name(runbook_id: str, version: int) -> str:
    return f"runbook/{runbook_id}/v{version}"


@dataclass(frozen=True)
class GitResult:
    returncode: int
    stdout: str
    stderr: str


def _git_binary() -> str:
    found = shutil.which("git")
    if found is None:
        raise WorkspaceError(
            "git is not installed: runbook changes are published as git commits and tags",
            hint="install git (Debian: apt-get install git) and try again",
        )
    return found


def git(
    root: Path,
    *args: str,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    input_text: str | None = None,
) -> GitResult:
    """Run ``git -C root ARGS`` (argv, no shell); raise WorkspaceError on failure if ``check``."""
    import os  # noqa: PLC0415

    full_env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", **(env or {})}
    try:
        proc = subprocess.run(
            [_git_binary(), "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=_TIMEOUT,
            env=full_env,
            input=input_text,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise WorkspaceError(
            f"git {' '.join(args[:2])} did not finish in {_TIMEOUT:g}s", hint="check the repository"
        ) from exc
    out = GitResult(proc.returncode, proc.stdout, proc.stderr)
    if check and proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise WorkspaceError(
            f"git {' '.join(args[:2])} failed: {detail[-1] if detail else proc.returncode}",
            hint=f"check the git repository at {root}",
        )
    return out


def is_repository(root: Path) -> bool:
    res = git(root, "rev-parse", "--is-inside-work-tree", check=False)
    return res.returncode == 0 and res.stdout.strip() == "true"


def ensure_repository(root: Path) -> bool:
    """``git init`` ``root`` unless it is inside a work tree already; True when it initialised."""
    if is_repository(root):
        return False
    git(root, "init", "-q")
    return True


def toplevel(root: Path) -> Path:
    return Path(git(root, "rev-parse", "--show-toplevel").stdout.strip())


def relative_to_top(root: Path, path: Path) -> str:
    """``path`` as git names it (POSIX, relative to the top level of the work tree)."""
    return path.resolve().relative_to(toplevel(root).resolve()).as_posix()


def _identity_args(root: Path) -> list[str]:
    """``-c user.name=… -c user.email=…`` only for what git has no value for."""
    extra: list[str] = []
    if not git(root, "config", "user.name", check=False).stdout.strip():
        extra += ["-c", "user.name=opsbook"]
    if not git(root, "config", "user.email", check=False).stdout.strip():
        extra += ["-c", "user.email=opsbook@localhost"]
    return extra


def versions(root: Path, runbook_id: str) -> list[int]:
    """Published versions of a runbook, from its tags, ascending."""
    res = git(root, "tag", "--list", f"runbook/{runbook_id}/v*", check=False)
    found: list[int] = []
    for line in res.stdout.splitlines():
        m = TAG_RE.match(line.strip())
        if m and m.group("id") == runbook_id:
            found.append(int(m.group("n")))
    return sorted(found)


def tag_exists(root: Path, tag: str) -> bool:
    return git(root, "rev-parse", "-q", "--verify", f"refs/tags/{tag}", check=False).returncode == 0


def file_at(root: Path, rev: str, relpath: str) -> str:
    """The text of ``relpath`` at ``rev`` (a tag or commit)."""
    res = git(root, "show", f"{rev}:{relpath}", check=False)
    if res.returncode != 0:
        raise ConflictError(
            f"{relpath} is not in {rev}",
            hint="list the published versions with `opsbook changes list --published`",
        )
    return res.stdout


def publish_file(
    root: Path,
    *,
    relpath: str,
    runbook_id: str,
    version: int,
    message: str,
    trailers: Sequence[tuple[str, str]],
) -> tuple[str, str]:
    """Commit ``relpath`` alone (whatever else is staged stays staged) and tag the commit
    ``runbook/<id>/v<version>``; returns (commit, tag). A file already committed as it is
    (nothing to commit) is tagged at HEAD. ``relpath`` is relative to the top level (the
    workspace may be a directory inside a larger repository). The repository's hooks run."""
    root = toplevel(root)
    tag = tag_name(runbook_id, version)
    if tag_exists(root, tag):
        raise ConflictError(
            f"tag {tag} exists already",
            hint="another publication took this version number; run publish again",
        )
    ident = _identity_args(root)
    body = message + "\n\n" + "\n".join(f"{k}: {v}" for k, v in trailers) + "\n"
    git(root, "add", "--", relpath)
    has_head = git(root, "rev-parse", "-q", "--verify", "HEAD", check=False).returncode == 0
    changed = (
        not has_head
        or git(root, "diff", "--cached", "--quiet", "HEAD", "--", relpath, check=False).returncode
        != 0
    )
    if changed:
        git(root, *ident, "commit", "-q", "-F", "-", "--", relpath, input_text=body)
    commit = git(root, "rev-parse", "HEAD").stdout.strip()
    git(root, *ident, "tag", "-a", tag, "-F", "-", commit, input_text=body)
    return commit, tag
