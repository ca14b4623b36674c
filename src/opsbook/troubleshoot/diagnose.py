"""`opsbook diagnose`: what is wrong, and what to run (issue 12).

Gathers the facts in parallel (:mod:`opsbook.troubleshoot.gather`), ranks causes by transparent
rules (:mod:`opsbook.troubleshoot.rules`), and answers with the hypotheses, their evidence and
the fixing procedure of each; stores the diagnosis (audited) and writes a diagnostic bundle.
A service, an alert or an incident narrows the focus; the whole environment is always read, so
a cause elsewhere (the payment network, the database, the disk) is still found.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import secrets
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.errors import NotFoundError, UsageError
from opsbook.troubleshoot.gather import Context, gather_all
from opsbook.troubleshoot.model import Diagnosis
from opsbook.troubleshoot.rules import rank

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.workspace import Workspace


def _services(workspace: Workspace, environment: str) -> list[str]:
    from opsbook.platforms.base import service_names  # noqa: PLC0415
    from opsbook.workspace import load_environment  # noqa: PLC0415

    return service_names(load_environment(workspace, environment).data)


def resolve_target(
    *,
    workspace: Workspace,
    environment: str,
    db: Database | None,
    service: str | None,
    alert: str | None,
    incident: str | None,
) -> dict[str, str | None]:
    """The service to focus on, from the arguments; unknown names → the closest ones, exit 2."""
    names = _services(workspace, environment)
    if service is not None and service not in names:
        close = difflib.get_close_matches(service, names, n=3)
        raise UsageError(
            f"no service {service!r} in environment {environment}",
            field="service",
            hint=(f"did you mean {', '.join(close)}? " if close else "")
            + f"services: {', '.join(names)}",
        )
    target: dict[str, str | None] = {"service": service, "alert": alert, "incident": incident}
    if alert is not None:
        if db is None:
            raise UsageError("--alert needs the workspace database", field="alert")
        from opsbook.monitoring.alerts import get_alert  # noqa: PLC0415

        try:
            row = get_alert(db, alert)
        except NotFoundError:
            known = [
                str(r["fingerprint"])
                for r in db.query("SELECT fingerprint FROM mon_alerts ORDER BY id DESC LIMIT 200")
            ]
            close = difflib.get_close_matches(alert, known, n=3)
            raise UsageError(
                f"no alert {alert!r}",
                field="alert",
                hint=(f"did you mean {', '.join(close)}? " if close else "")
                + "list them with `opsbook alerts list --all`",
            ) from None
        labels = row.get("labels")
        labels = json.loads(labels) if isinstance(labels, str) else labels or {}
        target["alert"] = str(row.get("fingerprint") or alert)
        if not service and labels.get("service") in names:
            target["service"] = str(labels["service"])
    if incident is not None:
        if db is None:
            raise UsageError("--incident needs the workspace database", field="incident")
        from opsbook.incidents.service import get  # noqa: PLC0415

        try:
            inc = get(db=db, ref=incident)
        except NotFoundError:
            known = [
                f"INC-{r['id']}"
                for r in db.query("SELECT id FROM incidents ORDER BY id DESC LIMIT 200")
            ]
            close = difflib.get_close_matches(incident.upper(), known, n=3)
            raise UsageError(
                f"no incident {incident!r}",
                field="incident",
                hint=(f"did you mean {', '.join(close)}? " if close else "")
                + "list them with `opsbook incidents list`",
            ) from None
        target["incident"] = inc.ref
        if not target["service"]:
            target["service"] = next((s for s in inc.services if s in names), None)
    return target


async def diagnose_async(
    *,
    workspace: Workspace,
    environment: str,
    service: str | None = None,
    alert: str | None = None,
    incident: str | None = None,
    db: Database | None = None,
    bundle_dir: Path | None = None,
    write_bundle: bool = True,
    save: bool = True,
    actor: str,
) -> Diagnosis:
    from opsbook.workspace import load_environment  # noqa: PLC0415

    started = time.perf_counter()
    when = datetime.now(UTC)
    target = resolve_target(
        workspace=workspace,
        environment=environment,
        db=db,
        service=service,
        alert=alert,
        incident=incident,
    )
    env = load_environment(workspace, environment)
    cx = Context(workspace=workspace, environment=env, db=db)
    facts, sources = await gather_all(cx)
    names = _services(workspace, environment)
    hypotheses = rank(facts, services=names, focus=target["service"])
    if db is not None:  # known errors whose symptoms match rank first (issue 12)
        from opsbook.troubleshoot.known_errors import with_known_errors  # noqa: PLC0415

        hypotheses = with_known_errors(db=db, hypotheses=hypotheses, facts=facts)
    diagnosis = Diagnosis(
        id=f"dg-{secrets.token_hex(6)}",
        environment=env.name,
        target=target,
        started_at=when.isoformat(timespec="seconds").replace("+00:00", "Z"),
        took_ms=0.0,
        hypotheses=hypotheses,
        sources=sources,
        facts=facts,
    )
    diagnosis.took_ms = (time.perf_counter() - started) * 1000
    if write_bundle:
        diagnosis.bundle = str(await asyncio.to_thread(_bundle, workspace, diagnosis, bundle_dir))
    if save and db is not None:
        from opsbook.troubleshoot.store import save as save_diagnosis  # noqa: PLC0415

        save_diagnosis(db, diagnosis=diagnosis.to_dict(), actor=actor)
    return diagnosis


def _bundle(workspace: Workspace, diagnosis: Diagnosis, bundle_dir: Path | None) -> Path:
    from opsbook.config import Settings  # noqa: PLC0415
    from opsbook.executions.local import secrets_for  # noqa: PLC0415
    from opsbook.troubleshoot.bundle import write_bundle  # noqa: PLC0415

    _, redactor = secrets_for(workspace, Settings.from_env())
    where = bundle_dir or workspace.state_dir / "diagnoses"
    return write_bundle(
        where / f"{diagnosis.id}.tar", diagnosis=diagnosis.to_dict(), redact=redactor.redact
    )


def diagnose(**kwargs: Any) -> Diagnosis:
    """:func:`diagnose_async` from synchronous code (the CLI)."""
    return asyncio.run(diagnose_async(**kwargs))
