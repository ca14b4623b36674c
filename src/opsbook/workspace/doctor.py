"""``opsbook doctor``: is this workspace ready to run procedures on an environment?

Barman's ``check`` model: a list of named checks, each OK, WARNING or FAILED with what to do
about it; the command fails (exit 1) when any check failed. Warnings never fail it.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Literal

from opsbook.errors import OpsbookError
from opsbook.workspace.doctor_channels import channel_checks
from opsbook.workspace.doctor_files import file_mode_checks
from opsbook.workspace.doctor_tools import tool_spec, tools_and_access

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.workspace import Workspace

Status = Literal["ok", "warning", "failed"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str
    hint: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail, "hint": self.hint}


def run_checks(*, workspace: Workspace, settings: Settings, env_name: str) -> list[Check]:
    """Every check, in order; none raises."""
    checks = [_runbooks(workspace), *_database(workspace, settings)]
    checks.extend(Check(*c) for c in file_mode_checks(workspace=workspace, settings=settings))
    checks.extend(_environment(workspace, env_name))
    checks.extend(Check(n, s, d, h) for n, s, d, h in channel_checks(workspace))
    return checks


def _runbooks(ws: Workspace) -> Check:
    from opsbook.runbooks.lint import lint_paths  # noqa: PLC0415

    findings = lint_paths([ws.runbooks_dir], today=date.today())
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        first = errors[0]
        return Check(
            "runbooks",
            "failed",
            f"{len(errors)} error(s), first: {first.path.name}:{first.line}: {first.message}",
            "opsbook lint shows every finding",
        )
    warnings = len(findings)
    if warnings:
        return Check("runbooks", "warning", f"{warnings} warning(s)", "opsbook lint")
    return Check("runbooks", "ok", f"lint clean ({ws.runbooks_dir})")


def _database(ws: Workspace, settings: Settings) -> list[Check]:
    from opsbook import audit  # noqa: PLC0415
    from opsbook.db import open_database  # noqa: PLC0415

    try:
        ws.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = open_database(settings.database_url_for(ws.state_dir))
    except OpsbookError as exc:
        return [Check("database", "failed", exc.message, exc.hint or "")]
    try:
        out = [Check("database", "ok", f"{db.dialect}, schema up to date")]
        report = audit.verify(db=db)
        if report.ok:
            out.append(Check("audit chain", "ok", f"{report.checked} records verify"))
        else:
            out.append(
                Check(
                    "audit chain",
                    "failed",
                    f"record {report.first_bad_id}: {report.problem}",
                    "opsbook audit verify; treat it as a security incident",
                )
            )
        return out
    finally:
        db.close()


def _environment(ws: Workspace, env_name: str) -> list[Check]:
    from opsbook.workspace import load_environment  # noqa: PLC0415

    try:
        env = load_environment(ws, env_name)
    except OpsbookError as exc:
        return [Check(f"environment {env_name}", "failed", exc.message, exc.hint or "")]
    out = [Check(f"environment {env.name}", "ok", f"{env.path.name}, platform {env.platform}")]
    tools = [str(t) for t in env.data.get("required_tools", []) or []]
    missing = [t for t in (tool_spec(x)[0] for x in tools) if shutil.which(t) is None]
    if missing:
        out.append(
            Check(
                "tools",
                "failed",
                f"not on PATH: {', '.join(missing)}",
                "install them (see the runbooks index, Tools and access)",
            )
        )
    elif tools:
        out.append(Check("tools", "ok", ", ".join(tools)))
    # versions of the tools found, cluster access, monitoring reachable (Tools and access)
    out.extend(
        Check(n, s, d, h)
        for n, s, d, h in tools_and_access(env)
        if not (n.startswith("tool ") and d == "not found on PATH")
    )
    if env.data.get("key_vault"):
        out.append(_key_vault(env.data["key_vault"]))
    if env.platform == "local":
        out.append(_sandbox(ws, env.name))
    return out


def _key_vault(setting: object) -> Check:
    """The environment's Azure Key Vault answers and lets this identity read secrets."""
    from opsbook.engine.keyvault import AzureKeyVaultProvider, key_vault_check  # noqa: PLC0415

    # load_environment refused a setting that is not a vault name or URL
    return Check(*key_vault_check(AzureKeyVaultProvider(str(setting))))


def _sandbox(ws: Workspace, env_name: str) -> Check:
    from opsbook.sandbox.lifecycle import status  # noqa: PLC0415

    try:
        st = status(workspace=ws, env_name=env_name)
    except OpsbookError as exc:
        return Check("sandbox", "warning", exc.message, exc.hint or "opsbook sandbox up")
    services = st.get("services", []) if isinstance(st, dict) else []
    down = [
        str(s.get("name"))
        for s in services
        if isinstance(s, dict) and str(s.get("state", "running")) != "running"
    ]
    if down:
        return Check(
            "sandbox",
            "warning",
            f"up, but not running: {', '.join(down)}",
            "opsbook sandbox status; a fault may be injected (opsbook sandbox chaos list)",
        )
    return Check("sandbox", "ok", f"up, {len(services)} services running")
