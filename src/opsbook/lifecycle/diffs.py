"""A readable diff between two texts of a runbook: the unified diff of the Markdown and a
summary of what changed in the parsed model (procedures and steps added, removed or changed,
and how), so a reviewer sees "step `restart` now runs a different command" before the lines.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from opsbook.runbooks.model import Procedure, Runbook, Step


@dataclass(frozen=True)
class RunbookDiff:
    old_label: str
    new_label: str
    unified: str
    summary: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.old_label,
            "to": self.new_label,
            "summary": list(self.summary),
            "unified": self.unified,
        }


def _parse(text: str, label: str) -> Runbook | None:
    from opsbook.errors import OpsbookError  # noqa: PLC0415
    from opsbook.runbooks.parser import parse_text  # noqa: PLC0415

    try:
        return parse_text(text, path=Path(label))
    except OpsbookError:
        return None


def _step_fields(step: Step) -> dict[str, Any]:
    o = step.options
    return {
        "title": step.title,
        "kind": str(step.kind),
        "command": step.block.body.strip() if step.block else "",
        "expectations": [e.expr for e in step.expectations],
        "checklist": [c.text for c in step.checklist],
        "instruction": step.instruction.strip(),
        "timeout": o.timeout,
        "retries": o.retries,
        "when": o.when,
        "on_failure": (o.on_failure.action, o.on_failure.target),
        "risk": o.risk,
        "approval": (
            (step.approval.quorum, step.approval.roles) if step.approval is not None else None
        ),
    }


def _proc_fields(proc: Procedure) -> dict[str, Any]:
    return {
        "title": proc.title,
        "risk": proc.risk,
        "permissions": list(proc.permissions),
        "environments": list(proc.environments),
        "schedule": proc.schedule,
        "when_to_use": proc.when_to_use,
        "params": [(p.name, p.type, p.required, p.default) for p in proc.params],
        "prerequisites": list(proc.prerequisites),
    }


def _changed_keys(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    return [k for k in old if old[k] != new.get(k)]


def summarise(old: Runbook | None, new: Runbook | None) -> list[str]:
    """One line per procedure or step added, removed or changed (and what changed)."""
    if old is None and new is None:
        return []
    if old is None:
        assert new is not None
        return [f"new runbook {new.id}: {len(new.procedures)} procedure(s)"]
    if new is None:
        return ["the new text does not parse as a runbook"]
    out: list[str] = []
    meta_changes = [
        k
        for k in ("title", "owner", "review_interval", "last_reviewed", "tags", "services")
        if getattr(old.meta, k) != getattr(new.meta, k)
    ]
    if meta_changes:
        out.append("front matter: " + ", ".join(meta_changes) + " changed")
    old_p = {p.id: p for p in old.procedures}
    new_p = {p.id: p for p in new.procedures}
    for pid, added in new_p.items():
        if pid not in old_p:
            out.append(f"procedure {pid} added ({len(added.steps)} steps)")
    for pid in old_p:
        if pid not in new_p:
            out.append(f"procedure {pid} removed")
    for pid, op in old_p.items():
        np_ = new_p.get(pid)
        if np_ is None:
            continue
        changed = _changed_keys(_proc_fields(op), _proc_fields(np_))
        if changed:
            out.append(f"procedure {pid}: {', '.join(changed)} changed")
        old_s = {s.id: s for s in op.steps}
        new_s = {s.id: s for s in np_.steps}
        for sid, new_step in new_s.items():
            if sid not in old_s:
                out.append(f"procedure {pid}: step {sid} added ({new_step.kind})")
        for sid in old_s:
            if sid not in new_s:
                out.append(f"procedure {pid}: step {sid} removed")
        for sid, ostep in old_s.items():
            nstep = new_s.get(sid)
            if nstep is None:
                continue
            what = _changed_keys(_step_fields(ostep), _step_fields(nstep))
            if what:
                out.append(f"procedure {pid}: step {sid}: {', '.join(what)} changed")
        common = [s for s in old_s if s in new_s]
        if [s for s in np_.steps if s.id in old_s] and common != [
            s.id for s in np_.steps if s.id in old_s
        ]:
            out.append(f"procedure {pid}: steps reordered")
    return out


def diff_texts(old_text: str, new_text: str, *, old_label: str, new_label: str) -> RunbookDiff:
    unified = "".join(
        difflib.unified_diff(
            old_text.splitlines(keepends=True),
            new_text.splitlines(keepends=True),
            fromfile=old_label,
            tofile=new_label,
        )
    )
    old_rb = _parse(old_text, old_label) if old_text else None
    new_rb = _parse(new_text, new_label)
    return RunbookDiff(old_label, new_label, unified, tuple(summarise(old_rb, new_rb)))


def _version_arg(text: str | None) -> int | None:
    from opsbook.errors import ValidationError  # noqa: PLC0415

    if text is None:
        return None
    t = text.strip().lower().lstrip("v")
    if not t.isdigit() or int(t) < 1:
        raise ValidationError(
            f"{text!r} is not a version", field="version", hint="v1, v2, … as `changes list` shows"
        )
    return int(t)


def published_diff(
    *,
    db: Any,
    workspace: Any,
    runbook: str,
    from_version: str | None = None,
    to_version: str | None = None,
) -> RunbookDiff:
    """The diff between two published versions of a runbook, read from their git tags:
    ``to`` defaults to the newest, ``from`` to the one before it (nothing before v1); ``to``
    may be ``working`` for the file as it is now."""
    from opsbook.errors import NotFoundError  # noqa: PLC0415
    from opsbook.lifecycle import gitrepo  # noqa: PLC0415
    from opsbook.lifecycle.changes import publications  # noqa: PLC0415

    pubs = publications(db=db, runbook_id=runbook)
    if not pubs:
        from opsbook.errors import OpsbookError  # noqa: PLC0415
        from opsbook.runbooks.catalogue import load_catalogue  # noqa: PLC0415

        try:
            rb_id = load_catalogue(workspace.runbooks_dir).get(runbook).id
        except OpsbookError:
            rb_id = runbook
        pubs = publications(db=db, runbook_id=rb_id)
    if not pubs:
        raise NotFoundError(
            f"runbook {runbook} has no published version",
            hint="publish one with `opsbook changes propose … / publish`",
        )
    by_version = {p.version: p for p in pubs}

    def pick(v: int) -> Any:
        if v not in by_version:
            raise NotFoundError(
                f"{pubs[0].runbook_id} has no published v{v}",
                hint="published: " + ", ".join(f"v{p.version}" for p in pubs),
            )
        return by_version[v]

    root = workspace.root
    if to_version is not None and to_version.strip().lower() == "working":
        newest = pubs[-1]
        path = gitrepo.toplevel(root) / newest.path
        new_text = path.read_text(encoding="utf-8") if path.is_file() else ""
        new_label = f"{newest.path} (working)"
        to_v = newest.version + 1
    else:
        to_v = _version_arg(to_version) or pubs[-1].version
        to_pub = pick(to_v)
        new_text = gitrepo.file_at(root, to_pub.git_tag, to_pub.path)
        new_label = to_pub.git_tag
    from_v = _version_arg(from_version)
    if from_v is None:
        earlier = [p for p in pubs if p.version < to_v]
        from_pub = earlier[-1] if earlier else None
    else:
        from_pub = pick(from_v)
    if from_pub is None:
        old_text, old_label = "", "(nothing published before)"
    else:
        old_text = gitrepo.file_at(root, from_pub.git_tag, from_pub.path)
        old_label = from_pub.git_tag
    return diff_texts(old_text, new_text, old_label=old_label, new_label=new_label)


def change_diff(*, db: Any, workspace: Any, change: Any) -> RunbookDiff:
    """What a proposal changes: from the published version it was proposed against (nothing
    for a first publication) to the proposed text."""
    from opsbook.lifecycle import gitrepo  # noqa: PLC0415
    from opsbook.lifecycle.changes import publications  # noqa: PLC0415

    base = None
    if change.base_version is not None:
        base = next(
            (
                p
                for p in publications(db=db, runbook_id=change.runbook_id)
                if p.version == change.base_version
            ),
            None,
        )
    if base is None:
        old_text, old_label = "", "(nothing published)"
    else:
        old_text = gitrepo.file_at(workspace.root, base.git_tag, base.path)
        old_label = base.git_tag
    return diff_texts(
        old_text, change.content, old_label=old_label, new_label=f"change {change.id}"
    )
