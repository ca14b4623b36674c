"""The ``local`` platform's operations inside the supervisor: status, restart, scale, deploy,
switch, rollback, history. Fault injection is above this (:mod:`.chaos_ops`), the record of
active faults below it (:mod:`.fault_book`), the command table in :mod:`.commands`."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any

from opsbook.errors import ConflictError, NotFoundError, OpsbookError, UsageError
from opsbook.sandbox.config import MAX_REPLICAS, check_service
from opsbook.sandbox.fault_book import clear_process_faults, end_bad_deploy, list_faults
from opsbook.sandbox.host import Host
from opsbook.sandbox.procs import Replica, sample_memory, wait_answering
from opsbook.sandbox.releases import release_of
from opsbook.sandbox.units import Revision, Unit

START_TIMEOUT = 20.0
READY_TIMEOUT = 10.0
VERSION_RE = re.compile(r"^[0-9A-Za-z][0-9A-Za-z.+_-]{0,39}$")


def unit_of(sup: Host, args: dict[str, Any]) -> Unit:
    return sup.units[check_service(args.get("service"))]


async def all_answering(replicas: list[Replica], *, healthy: bool, timeout: float) -> bool:
    results = await asyncio.gather(
        *(wait_answering(r, timeout=timeout, healthy=healthy) for r in replicas)
    )
    return all(results)


def status(sup: Host) -> dict[str, Any]:
    net = sup.network
    for replica in sup.all_replicas():
        sample_memory(replica)
    return {
        "phase": sup.phase,
        "supervisor": {
            "pid": __import__("os").getpid(),
            "control_port": sup.control_port,
            "uptime": round(time.time() - sup.started_at, 1),
        },
        "gateway": f"http://127.0.0.1:{sup.config.gateway_port}",
        "payment_network": None
        if net is None
        else {**net.view(), "url": f"https://127.0.0.1:{net.port}"},
        "data_dir": sup.config.data_dir,
        "database": _safe_url(sup.config.database_url),
        "services": [u.view() for u in sup.units.values()],
        "faults": list_faults(sup),
    }


def _safe_url(url: str) -> str:
    return re.sub(r"//([^:/@]+):[^@]*@", r"//\1:***@", url)


async def start_set(sup: Host, unit: Unit, rev: Revision, count: int) -> list[Replica]:
    """Start ``count`` replicas of ``rev`` and wait until they answer (or fail, cleaning up)."""
    new = await sup.start_replicas(unit, rev, count)
    if not await all_answering(new, healthy=False, timeout=START_TIMEOUT):
        await sup.stop_all(new)
        raise OpsbookError(
            f"{unit.name} revision {rev.revision} ({rev.version}) did not start within "
            f"{START_TIMEOUT:g}s; its last log lines:\n" + sup.log_tail(unit.name),
            hint=f"read {sup.logs / (unit.name + '.log')}",
        )
    return new


async def restart(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    unit = unit_of(sup, args)
    actor = str(args.get("actor") or "operator")
    async with unit.lock:
        if unit.desired == 0:
            raise ConflictError(
                f"{unit.name} is scaled to 0 replicas: nothing to restart",
                hint=f"scale it up: platform.scale {{service: {unit.name}, replicas: 1}}",
            )
        cleared = clear_process_faults(sup, unit.name, actor=actor, reason="restart")
        old = list(unit.active)
        old_ready = any(r.alive and r.ready for r in old)
        new = await start_set(sup, unit, unit.current, unit.desired)
        healthy = await all_answering(new, healthy=True, timeout=READY_TIMEOUT)
        if not healthy and old_ready:
            await sup.stop_all(new)
            raise OpsbookError(
                f"the restarted replicas of {unit.name} did not become healthy within "
                f"{READY_TIMEOUT:g}s; the old ones keep serving:\n" + sup.log_tail(unit.name),
                hint="look at the health checks and logs before restarting again",
            )
        unit.active = new
        unit.route()
        unit.restarts += 1
        unit.event("Normal", f"restarted by {actor}: {', '.join(r.name for r in new)}")
        await sup.stop_all(old)
        sup.save()
    return {
        **brief(unit),
        "restarted": [r.name for r in new],
        "healthy": healthy,
        "cleared_faults": cleared,
    }


async def scale(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    unit = unit_of(sup, args)
    raw = args.get("replicas")
    try:
        count = int(str(raw))
    except ValueError:
        count = -1
    if not 0 <= count <= MAX_REPLICAS:
        raise UsageError(
            f"replicas must be a whole number from 0 to {MAX_REPLICAS}, not {raw!r}",
            field="replicas",
        )
    async with unit.lock:
        alive = [r for r in unit.active if r.alive]
        before = len(alive)
        if count > len(alive):
            alive += await start_set(sup, unit, unit.current, count - len(alive))
            unit.active = alive
        elif count < len(alive):
            unit.active, victims = alive[:count], alive[count:]
            unit.route()
            await sup.stop_all(victims)
        else:
            unit.active = alive
        unit.desired = count
        unit.current.replicas = count
        unit.route()
        unit.event("Normal", f"scaled from {before} to {count} replica(s)")
        sup.save()
    return {**brief(unit), "previous_replicas": before}


def switch_sets(unit: Unit) -> None:
    """Blue-green: the standby set takes the traffic in one assignment, the old one stands by."""
    old_rev, new_rev = unit.current, unit.standby_revision
    assert new_rev is not None
    unit.active, unit.standby = unit.standby, unit.active
    new_rev.status, old_rev.status = "active", "standby"
    unit.desired = len(unit.active)
    unit.weight, unit.rollout = 0, None
    unit.route()
    unit.event(
        "Normal",
        f"traffic switched from revision {old_rev.revision} "
        f"({old_rev.version}) to {new_rev.revision} ({new_rev.version})",
    )


async def retire_standby(sup: Host, unit: Unit) -> None:
    if unit.retire is not None and unit.retire is not asyncio.current_task():
        unit.retire.cancel()
    unit.retire = None
    unit.weight = 0
    unit.route()
    if unit.standby:
        await sup.stop_all(unit.standby)
        unit.standby = []
    rev = unit.standby_revision
    if rev is not None:
        rev.status = "superseded"


async def deploy(
    sup: Host, args: dict[str, Any], *, bug: bool = False, cause: str = ""
) -> dict[str, Any]:
    unit = unit_of(sup, args)
    version = str(args.get("version") or "")
    if not VERSION_RE.match(version):
        raise UsageError(f"version must look like 1.5.0, not {version!r}", field="version")
    if not bug:
        release_of(unit.name, version)  # an unknown version: refused before anything starts
    strategy = str(args.get("strategy") or "blue-green")
    if strategy not in ("blue-green", "canary"):
        raise UsageError(
            f"strategy must be blue-green or canary here, not {strategy!r}",
            field="strategy",
            hint="a rolling update is its own operation: rolling {service, version}",
        )
    switch = strategy == "blue-green" and str(args.get("switch", True)).lower() not in (
        "false",
        "0",
        "no",
    )
    actor = str(args.get("actor") or "operator")
    async with unit.lock:
        refuse_overlap(unit, version)
        await retire_standby(sup, unit)
        rev = Revision(
            max(r.revision for r in unit.revisions) + 1,
            version,
            bug,
            max(unit.desired, 1),
            time.time(),
            actor,
            cause or f"deploy {version}",
            "staged",
            strategy,
        )
        unit.revisions.append(rev)
        unit.rollout = {
            "version": version,
            "revision": rev.revision,
            "strategy": strategy,
            "by": actor,
            "since": time.time(),
        }
        green = await sup.start_replicas(unit, rev, rev.replicas)
        if not await all_answering(green, healthy=True, timeout=START_TIMEOUT):
            why = next((r.last_health for r in green if r.last_health), "")
            tail = why or sup.log_tail(unit.name)
            await sup.stop_all(green)
            rev.status, unit.rollout = "failed", None
            sup.save()
            raise OpsbookError(
                f"revision {rev.revision} ({version}) of {unit.name} did not become healthy"
                f"{'' if why else f' within {START_TIMEOUT:g}s'}; traffic stays on revision "
                f"{unit.current.revision}:\n{tail}",
                hint="apply the migration first: deployment-procedures#database-migration"
                if why
                else None,
            )
        unit.standby = green
        unit.event(
            "Normal",
            f"revision {rev.revision} ({version}) ready beside revision {unit.current.revision}",
        )
        if switch:
            switch_sets(unit)
        sup.save()
    return {
        **brief(unit),
        "deployed_revision": rev.revision,
        "switched": switch,
        "strategy": strategy,
    }


def refuse_overlap(unit: Unit, version: str) -> None:
    """One deployment of a service at a time: a second is refused, naming the first."""
    held = unit.rollout
    if held is None:
        return
    raise ConflictError(
        f"{unit.name} is already being deployed: {held['version']} ({held['strategy']}) by "
        f"{held['by']} since {time.strftime('%H:%M:%S', time.gmtime(held['since']))}Z; "
        f"{version} is refused",
        hint=f"promote or abort that one first (platform.promote / platform.abort "
        f"{{service: {unit.name}}})",
    )


async def switch_traffic(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    unit = unit_of(sup, args)
    async with unit.lock:
        if not any(r.alive for r in unit.standby) or unit.standby_revision is None:
            raise ConflictError(
                f"{unit.name} has no standby release to switch to",
                hint="deploy one first: platform.deploy {service, version, switch: false}",
            )
        switch_sets(unit)
        sup.save()
    return brief(unit)


def _target(unit: Unit, revision: Any) -> Revision:
    current = unit.current
    if revision in (None, "", 0, "0"):
        earlier = [
            r
            for r in unit.revisions
            if r.revision < current.revision and r.status not in ("failed", "aborted")
        ]
        if not earlier:
            raise ConflictError(
                f"{unit.name} has no earlier revision to roll back to",
                hint="see the history: opsbook sandbox status --json",
            )
        return earlier[-1]
    try:
        number = int(str(revision))
    except ValueError:
        raise UsageError(f"revision must be a number, not {revision!r}", field="revision") from None
    target = unit.revision(number)
    if target is None or target.status in ("failed", "aborted"):
        known = ", ".join(
            str(r.revision) for r in unit.revisions if r.status not in ("failed", "aborted")
        )
        raise NotFoundError(f"{unit.name} has no revision {number}", hint=f"revisions: {known}")
    if target.revision == current.revision:
        raise ConflictError(f"{unit.name} already runs revision {number}")
    return target


async def rollback(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    unit = unit_of(sup, args)
    actor = str(args.get("actor") or "operator")
    async with unit.lock:
        before = unit.current
        target = _target(unit, args.get("revision"))
        unit.rollout = None
        standby = unit.standby_revision
        if (
            standby is not None
            and standby.revision == target.revision
            and any(r.alive for r in unit.standby)
        ):
            switch_sets(unit)
        else:
            await retire_standby(sup, unit)
            rev = Revision(
                max(r.revision for r in unit.revisions) + 1,
                target.version,
                target.bug,
                max(unit.desired, 1),
                time.time(),
                actor,
                f"rollback to {target.revision}",
                "staged",
            )
            unit.revisions.append(rev)
            unit.standby = await start_set(sup, unit, rev, rev.replicas)
            await all_answering(unit.standby, healthy=True, timeout=READY_TIMEOUT)
            switch_sets(unit)
        await retire_standby(sup, unit)
        unit.event(
            "Normal",
            f"rolled back by {actor} from revision {before.revision} to "
            f"{target.revision} ({target.version})",
        )
        sup.save()
    cleared = [] if unit.current.bug else end_bad_deploy(sup, unit.name, actor=actor)
    return {
        **brief(unit),
        "rolled_back_from": before.revision,
        "rolled_back_to": target.revision,
        "cleared_faults": cleared,
    }


def history(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    unit = unit_of(sup, args)
    return {"service": unit.name, "revisions": [r.view() for r in unit.revisions]}


def brief(unit: Unit) -> dict[str, Any]:
    view = unit.view()
    return {
        "service": unit.name,
        **{
            k: view[k]
            for k in (
                "state",
                "replicas",
                "ready",
                "available",
                "version",
                "revision",
                "restarts",
                "standby",
            )
        },
    }
