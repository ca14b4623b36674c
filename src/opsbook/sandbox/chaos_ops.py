"""Fault injection, inside the supervisor: apply a fault and end it (clear, expiry), using the
platform operations of :mod:`.ops` (a bad deploy deploys, ending a crash restarts); each change
is recorded through :mod:`.fault_book`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
import uuid
from typing import Any

from opsbook.backup import faults as backup_faults
from opsbook.errors import ConflictError, UsageError
from opsbook.sandbox import security_faults
from opsbook.sandbox.fault_book import log_change, publish
from opsbook.sandbox.faults import (
    BACKUP_FAULTS,
    ActiveFault,
    check_request,
    get_spec,
    parse_duration,
    read_faults,
    write_faults,
)
from opsbook.sandbox.host import Host
from opsbook.sandbox.ops import deploy, restart, rollback
from opsbook.sandbox.proxy import http_request
from opsbook.sandbox.security_faults import SECURITY_FAULTS
from opsbook.sandbox.tls import NORMAL_DAYS, ensure_certificate, issue_certificate

BALLAST = "ballast.img"
ATTACK_SOURCES = ("203.0.113.7", "203.0.113.42", "198.51.100.23", "192.0.2.191")
ATTACK_USERS = ("alice", "admin", "bob", "root", "carol", "test", "operator", "dave")


async def reset_faults(sup: Host) -> None:
    """At boot: end what a previous run left behind (faults file, ballast, a short cert)."""

    leftovers = read_faults(sup.data_dir)
    for leftover in leftovers:
        log_change(sup, "sandbox.fault.cleared", leftover, "supervisor", reason="sandbox restarted")
    sup.faults = []
    write_faults(sup.data_dir, [])
    (sup.data_dir / BALLAST).unlink(missing_ok=True)
    await security_faults.reset(sup, leftovers)
    await backup_faults.reset(sup, leftovers)
    if any(f.fault == "cert-expiring" for f in leftovers):
        await asyncio.to_thread(issue_certificate, sup.data_dir, days=NORMAL_DAYS)
    await asyncio.to_thread(ensure_certificate, sup.data_dir)


async def inject(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    name = str(args.get("fault") or "")
    spec, service = check_request(name, args.get("service") or None)
    duration = parse_duration(args.get("duration"))
    if duration is not None and spec.name in ("crash", "bad-deploy"):
        raise UsageError(
            f"{spec.name} takes no --duration: it lasts until "
            f"{'a restart' if spec.name == 'crash' else 'a rollback'}",
            field="duration",
        )
    actor = str(args.get("actor") or "operator")
    async with sup.chaos_lock:
        for f in sup.faults:
            if (
                f.fault == name
                and not f.expired()
                and (f.service is None or service is None or f.service == service)
            ):
                raise ConflictError(
                    f"{name} is already active on {f.service or spec.target} (id {f.id})",
                    hint=f"clear it first: opsbook sandbox chaos clear {name}",
                )
        now = time.time()
        fault = ActiveFault(
            id=uuid.uuid4().hex[:8],
            fault=name,
            service=service,
            injected_at=now,
            until=now + duration if duration else None,
            by=actor,
            params=dict(spec.params),
        )
        extra: dict[str, Any] = {}
        shown: dict[str, Any] = {}  # what the caller sees beside the fault (what was damaged)
        if name == "crash":
            assert service is not None
            unit = sup.units[service]
            if not any(r.alive for r in unit.active):
                raise ConflictError(
                    f"{service} has no running replica to crash",
                    hint="restart it first: platform.restart",
                )
            sup.faults.append(fault)
            publish(sup)
            await _crash(sup, service)
        elif name == "bad-deploy":
            assert service is not None

            current = sup.units[service].current
            result = await deploy(
                sup,
                {"service": service, "version": _next(current.version), "actor": actor},
                bug=True,
                cause=f"release {_next(current.version)}",
            )
            extra = {"revision": result["revision"], "previous_revision": current.revision}
            fault = ActiveFault(**{**fault.__dict__, "params": {**fault.params, **extra}})
            sup.faults.append(fault)
            publish(sup)
        elif name in BACKUP_FAULTS:  # applied first: an impossible one leaves no record
            extra = shown = await backup_faults.apply(sup, fault)
            sup.faults.append(fault)
            publish(sup)
        else:
            sup.faults.append(fault)
            publish(sup)
            await _apply(sup, fault)
        log_change(sup, "sandbox.fault.injected", fault, actor, duration=duration, **extra)
    return {
        **fault.as_dict(),
        "ended_by": spec.ended_by,
        "symptom": spec.symptom,
        "description": spec.description,
        **shown,
    }


def _next(version: str) -> str:
    parts = version.split(".")
    if len(parts) == 3 and parts[2].isdigit():
        return f"{parts[0]}.{parts[1]}.{int(parts[2]) + 1}"
    return f"{version}.1"


async def _crash(sup: Host, service: str) -> None:
    for replica in [r for r in sup.units[service].active if r.alive]:
        proc = replica.process
        if proc is None:
            continue
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGUSR2)
        try:
            await asyncio.wait_for(proc.wait(), 2.0)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    await asyncio.sleep(0)  # let the exit watchers record the crash


async def _apply(sup: Host, fault: ActiveFault) -> None:
    if fault.fault == "disk-full":
        ballast = sup.data_dir / BALLAST
        used = sum(p.stat().st_size for p in sup.data_dir.rglob("*") if p.is_file())
        with ballast.open("wb") as f:
            f.truncate(max(sup.config.disk_quota_bytes - used, 0) + 16 * 2**20)  # sparse
    elif fault.fault == "cert-expiring":
        await asyncio.to_thread(
            issue_certificate, sup.data_dir, days=int(fault.params.get("days", 5))
        )
        await sup.restart_network()
    elif fault.fault == "suspicious-logins":
        sup.attacker = asyncio.create_task(_attack(sup, float(fault.params["per_second"])))
    elif fault.fault in SECURITY_FAULTS:
        await security_faults.apply(sup, fault)


async def _undo(sup: Host, fault: ActiveFault, actor: str) -> None:
    if fault.fault == "disk-full":
        (sup.data_dir / BALLAST).unlink(missing_ok=True)
    elif fault.fault == "cert-expiring":
        await asyncio.to_thread(issue_certificate, sup.data_dir, days=NORMAL_DAYS)
        await sup.restart_network()
    elif fault.fault == "suspicious-logins" and sup.attacker is not None:
        sup.attacker.cancel()
        sup.attacker = None
    elif fault.fault in SECURITY_FAULTS:
        await security_faults.undo(sup, fault)
    elif fault.fault in BACKUP_FAULTS:  # a corrupted backup stays corrupted
        await backup_faults.undo(sup, fault)
    elif fault.fault == "crash" and fault.service:
        if sup.units[fault.service].state != "running":
            await restart(sup, {"service": fault.service, "actor": actor})
    elif fault.fault == "bad-deploy" and fault.service:
        unit = sup.units[fault.service]
        if unit.current.bug:
            previous = int(fault.params.get("previous_revision", 0)) or None
            await rollback(sup, {"service": fault.service, "revision": previous, "actor": actor})


async def end_faults(
    sup: Host,
    *,
    fault: str | None,
    service: str | None,
    actor: str,
    reason: str,
    wide: bool = False,
) -> list[dict[str, Any]]:
    """End the active faults that match (``wide``: a fault on every service also matches a
    named service), undoing their effects; each is logged as cleared with ``reason``."""
    async with sup.chaos_lock:
        chosen = [
            f
            for f in sup.faults
            if (fault is None or f.fault == fault)
            and (service is None or f.service == service or (wide and f.service is None))
        ]
        sup.faults = [f for f in sup.faults if f not in chosen]
        publish(sup)
        for f in chosen:
            await _undo(sup, f, actor)
            log_change(sup, "sandbox.fault.cleared", f, actor, reason=reason)
    return [f.as_dict() for f in chosen]


async def clear(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    name = args.get("fault") or None
    if name:
        get_spec(str(name))
    ended = await end_faults(
        sup,
        fault=str(name) if name else None,
        service=args.get("service") or None,
        actor=str(args.get("actor") or "operator"),
        reason=str(args.get("reason") or "cleared"),
    )
    return {"cleared": ended}


async def expiry_loop(sup: Host) -> None:
    while True:
        await asyncio.sleep(0.25)
        for fault in [f for f in sup.faults if f.expired()]:
            async with sup.chaos_lock:
                if fault not in sup.faults:
                    continue
                sup.faults = [f for f in sup.faults if f is not fault]
                publish(sup)
                await _undo(sup, fault, "supervisor")
                log_change(sup, "sandbox.fault.expired", fault, "supervisor", reason="duration")


async def _attack(sup: Host, per_second: float) -> None:
    """Credential stuffing against the account service, through its public port."""
    port = sup.units["account"].port
    i = 0
    while True:
        i += 1
        body = json.dumps(
            {"username": ATTACK_USERS[i % len(ATTACK_USERS)], "password": f"Summer{2020 + i % 6}!"}
        ).encode()
        headers = {
            "Content-Type": "application/json",
            "X-Forwarded-For": ATTACK_SOURCES[i % len(ATTACK_SOURCES)],
            "User-Agent": "python-requests/2.31.0",
        }
        with contextlib.suppress(OSError, TimeoutError):
            await http_request(
                port, "/login", method="POST", body=body, headers=headers, timeout=2.0
            )
        await asyncio.sleep(1 / per_second)
