"""Read models of the catalogue for the REST API and the console: runbook summaries and
search, procedure details (the run form is generated from them), quick reference cards."""

from __future__ import annotations

from typing import Any

from opsbook.executions.context import AppContext
from opsbook.runbooks.model import Procedure, Runbook
from opsbook.users.access import Principal, require


def runbook_summary(rb: Runbook) -> dict[str, Any]:
    return {
        "id": rb.id,
        "title": rb.meta.title,
        "purpose": rb.meta.purpose,
        "owner": rb.meta.owner,
        "tags": list(rb.meta.tags),
        "services": list(rb.meta.services),
        "file": rb.path.name,
        "last_reviewed": rb.meta.last_reviewed,
        "review_interval": rb.meta.review_interval,
        "procedures": [
            {
                "id": p.id,
                "ref": f"{rb.id}#{p.id}",
                "title": p.title,
                "risk": p.risk,
                "when_to_use": p.when_to_use,
                "schedule": p.schedule,
                "steps": len(p.steps),
            }
            for p in rb.procedures
        ],
    }


def search_runbooks(
    *, ctx: AppContext, principal: Principal, q: str | None = None, tag: str | None = None
) -> list[dict[str, Any]]:
    require(db=ctx.db, principal=principal, permission="runbooks:read", subject="runbooks")
    words = [w for w in (q or "").lower().split() if w]
    out = []
    for rb in ctx.catalogue().runbooks:
        if tag and tag not in rb.meta.tags:
            continue
        if words:
            text = " ".join(
                [rb.id, rb.meta.title, rb.meta.purpose, *rb.meta.tags, *rb.meta.use_cases]
                + [f"{p.id} {p.title} {p.description}" for p in rb.procedures]
            ).lower()
            if not all(w in text for w in words):
                continue
        out.append(runbook_summary(rb))
    return out


def procedure_detail(rb: Runbook, p: Procedure) -> dict[str, Any]:
    return {
        "id": p.id,
        "ref": f"{rb.id}#{p.id}",
        "title": p.title,
        "description": p.description,
        "risk": p.risk,
        "when_to_use": p.when_to_use,
        "schedule": p.schedule,
        "permissions": list(p.permissions),
        "prerequisites": list(p.prerequisites),
        "environments": list(p.environments),
        "params": [
            {
                "name": x.name,
                "type": x.type,
                "required": x.required,
                "default": x.default,
                "choices": list(x.choices),
                "min": x.min,
                "max": x.max,
                "pattern": x.pattern,
                "description": x.description,
            }
            for x in p.params
            if x.type != "secret"
        ],
        "steps": [
            {
                "id": s.id,
                "title": s.title,
                "kind": str(s.kind),
                "line": s.line,
                "checklist": [c.text for c in s.checklist],
                "approval": (
                    {"quorum": s.approval.quorum, "roles": list(s.approval.roles)}
                    if s.approval
                    else None
                ),
            }
            for s in p.steps
        ],
    }


def quick_reference(*, ctx: AppContext, principal: Principal, environment: str) -> dict[str, Any]:
    """Contacts and escalation, the environment's critical information, common commands."""
    from opsbook import yamlsafe  # noqa: PLC0415 - refuses YAML aliases (issue 16 §3)
    from opsbook.errors import ValidationError  # noqa: PLC0415
    from opsbook.workspace import load_environment  # noqa: PLC0415

    require(db=ctx.db, principal=principal, permission="runbooks:read", subject="reference")
    env = load_environment(ctx.workspace, environment)
    contacts: Any = {}
    if ctx.workspace.contacts_path.is_file():
        path = ctx.workspace.contacts_path
        try:
            contacts = yamlsafe.load_file(path, what="the contacts file", kind="contacts.yaml").data
        except ValidationError as exc:  # bad YAML, aliases: the page still shows the rest
            line = exc.location.line if exc.location else 0
            contacts = {"problem": f"contacts.yaml:{line}: {exc.message}; fix: {exc.hint}"}
        contacts = contacts or {}
    return {
        "environment": env.name,
        "environments": ctx.workspace.environment_names(),
        "info": {k: v for k, v in env.data.items() if k not in ("services", "commands")},
        "services": env.services,
        "contacts": contacts if isinstance(contacts, dict) else {},
        "commands": common_commands(env.name, env.data),
    }


def common_commands(name: str, data: Any) -> list[dict[str, str]]:
    listed = data.get("commands") if isinstance(data, dict) else None
    if isinstance(listed, list):
        return [
            {"title": str(c.get("title", "")), "command": str(c.get("command", ""))}
            for c in listed
            if isinstance(c, dict)
        ]
    ns = str(data.get("namespace", "")) if isinstance(data, dict) else ""
    out = [
        {
            "title": "Morning health check",
            "command": f"opsbook run system-monitoring#morning-health-check --env {name}",
        },
        {"title": "What waits for people", "command": "opsbook executions list --state waiting"},
        {"title": "Verify the audit trail", "command": "opsbook audit verify"},
    ]
    if isinstance(data, dict) and data.get("platform") == "kubernetes":
        release = str(data.get("helm_release", ""))
        out += [
            {"title": "Check all services", "command": f"kubectl get pods -n {ns}"},
            {
                "title": "Recent logs of a service",
                "command": f"kubectl logs -n {ns} deploy/SERVICE --since=15m",
            },
            {"title": "Release status", "command": f"helm status {release} -n {ns}"},
            {"title": "Release history", "command": f"helm history {release} -n {ns}"},
        ]
    else:
        out += [
            {"title": "Sandbox status", "command": "opsbook sandbox status"},
            {"title": "Start the sandbox", "command": "opsbook sandbox up"},
        ]
    return out
