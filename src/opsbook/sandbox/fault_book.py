"""The record of active sandbox faults: list them, write each change to ``faults.json`` and
``chaos.jsonl``, and end the ones a platform operation ends (a restart ends process faults, a
rollback ends a bad deploy). Below both :mod:`.ops` and :mod:`.chaos_ops`."""

from __future__ import annotations

import time
from typing import Any

from opsbook.sandbox.faults import FAULTS, ActiveFault, append_chaos_log, write_faults
from opsbook.sandbox.host import Host


def list_faults(sup: Host) -> list[dict[str, Any]]:
    now = time.time()
    out = []
    for f in sup.faults:
        if f.expired(now):
            continue
        spec = FAULTS[f.fault]
        out.append(
            {
                **f.as_dict(),
                "ended_by": spec.ended_by,
                "symptom": spec.symptom,
                "remaining": None if f.until is None else round(f.until - now, 1),
            }
        )
    return out


def log_change(sup: Host, action: str, fault: ActiveFault, actor: str, **extra: Any) -> None:
    entry = {
        "action": action,
        "fault": fault.fault,
        "id": fault.id,
        "service": fault.service,
        "target": fault.service or FAULTS[fault.fault].target,
        "actor": actor,
        **extra,
    }
    append_chaos_log(sup.data_dir, entry)
    sup.log(
        "warning" if action.endswith("injected") else "info",
        action,
        **{k: v for k, v in entry.items() if k != "action"},
    )


def publish(sup: Host) -> None:
    write_faults(sup.data_dir, sup.faults)
    sup.save()


def clear_process_faults(sup: Host, service: str, *, actor: str, reason: str) -> list[str]:
    """A restart ends the faults that live in the processes (crash, hang, memory-leak)."""
    ended = [
        f for f in sup.faults if f.service == service and FAULTS[f.fault].ended_by == "restart"
    ]
    if ended:
        sup.faults = [f for f in sup.faults if f not in ended]
        publish(sup)
        for f in ended:
            log_change(sup, "sandbox.fault.cleared", f, actor, reason=reason)
    return [f.fault for f in ended]


def end_bad_deploy(sup: Host, service: str, *, actor: str) -> list[str]:
    ended = [f for f in sup.faults if f.service == service and f.fault == "bad-deploy"]
    if ended:
        sup.faults = [f for f in sup.faults if f not in ended]
        publish(sup)
        for f in ended:
            log_change(sup, "sandbox.fault.cleared", f, actor, reason="rollback")
    return [f.fault for f in ended]
