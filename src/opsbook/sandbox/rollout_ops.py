"""Progressive delivery inside the supervisor: the canary's traffic weight, promotion (the old
set kept for a delay, for an instant rollback), abort (all traffic back on the old version, the
canary stopped), the rolling update, and the per-slot request counters an analysis reads.

Blue-green and the canary's first step are :func:`opsbook.sandbox.ops.deploy` (the new set
starts beside the old one with no traffic)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from opsbook.errors import ConflictError, OpsbookError, UsageError
from opsbook.sandbox.host import Host
from opsbook.sandbox.ops import (
    READY_TIMEOUT,
    VERSION_RE,
    all_answering,
    brief,
    refuse_overlap,
    retire_standby,
    start_set,
    switch_sets,
    unit_of,
)
from opsbook.sandbox.procs import Replica
from opsbook.sandbox.proxy import http_request
from opsbook.sandbox.releases import release_of
from opsbook.sandbox.units import Revision, Unit

DEFAULT_KEEP_OLD = 300.0  # seconds the old set stays up after a promotion
_PLAIN_ROUTES = ("/health", "/metrics", "/version")


def _canary(unit: Unit) -> Revision:
    rev = unit.standby_revision
    if rev is None or rev.status != "staged" or not any(r.alive for r in unit.standby):
        raise ConflictError(
            f"{unit.name} has no release in progress beside the running one",
            hint=f"start one: platform.deploy {{service: {unit.name}, version: …, "
            "strategy: canary}",
        )
    return rev


def _number(args: dict[str, Any], name: str, low: float, high: float, default: float) -> float:
    raw = args.get(name, default)
    try:
        value = float(str(raw))
    except ValueError:
        value = low - 1
    if not low <= value <= high:
        raise UsageError(
            f"{name} must be a number from {low:g} to {high:g}, not {raw!r}", field=name
        )
    return value


async def set_weight(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    """Send ``weight`` % of the service's new connections to the release in progress."""
    unit = unit_of(sup, args)
    weight = int(_number(args, "weight", 0, 100, -1))
    async with unit.lock:
        rev = _canary(unit)
        before, unit.weight = unit.weight, weight
        unit.route()
        unit.event("Normal", f"traffic to revision {rev.revision} ({rev.version}): {weight}%")
        sup.save()
    return {**brief(unit), "weight": weight, "previous_weight": before, "canary": rev.view()}


async def _retire_later(sup: Host, unit: Unit, rev: Revision, delay: float) -> None:
    await asyncio.sleep(delay)
    async with unit.lock:
        old = unit.standby_revision
        if old is not None and old.revision == rev.revision and old.status == "standby":
            await retire_standby(sup, unit)
            unit.event("Normal", f"revision {rev.revision} ({rev.version}) scaled down")
            sup.save()


def _schedule_retire(sup: Host, unit: Unit, keep_old_for: float) -> None:
    old = unit.standby_revision
    if old is None or old.status != "standby":
        return
    if unit.retire is not None:
        unit.retire.cancel()
    unit.retire = asyncio.get_running_loop().create_task(
        _retire_later(sup, unit, old, keep_old_for)
    )


async def promote(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    """All traffic to the release in progress; the old set stays up ``keep_old_for`` seconds."""
    unit = unit_of(sup, args)
    keep = _number(args, "keep_old_for", 0, 86400, DEFAULT_KEEP_OLD)
    actor = str(args.get("actor") or "operator")
    async with unit.lock:
        rev = _canary(unit)
        if not await all_answering(
            [r for r in unit.standby if r.alive], healthy=True, timeout=READY_TIMEOUT
        ):
            raise OpsbookError(
                f"revision {rev.revision} ({rev.version}) of {unit.name} is not healthy: not "
                "promoted; traffic stays where it is",
                hint="abort it: platform.abort {service: " + unit.name + "}",
            )
        old = unit.current
        switch_sets(unit)
        unit.event("Normal", f"promoted by {actor}; revision {old.revision} kept {keep:g}s")
        _schedule_retire(sup, unit, keep)
        sup.save()
    return {
        **brief(unit),
        "promoted": rev.revision,
        "old_revision": old.revision,
        "keep_old_for": keep,
    }


async def abort(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    """All traffic back on the running version at once, then the release in progress stops."""
    unit = unit_of(sup, args)
    actor = str(args.get("actor") or "operator")
    reason = str(args.get("reason") or "aborted")
    async with unit.lock:
        rev = _canary(unit)
        weight, unit.weight = unit.weight, 0
        unit.route()  # first the traffic: in-flight requests on the canary still finish
        stopped = [r.name for r in unit.standby]
        await sup.stop_all(unit.standby)
        unit.standby, unit.rollout = [], None
        rev.status = "aborted"
        unit.event(
            "Warning",
            f"revision {rev.revision} ({rev.version}) aborted by {actor} at {weight}%: {reason}",
        )
        sup.save()
    return {
        **brief(unit),
        "aborted": rev.revision,
        "weight_was": weight,
        "stopped": stopped,
        "reason": reason,
    }


async def rolling(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    """Replace the replicas one at a time: start one of the new version, wait until it is
    healthy, take it into the balancer, take one old replica out and stop it gracefully."""
    unit = unit_of(sup, args)
    version = str(args.get("version") or "")
    if not VERSION_RE.match(version):
        raise UsageError(f"version must look like 1.5.0, not {version!r}", field="version")
    release_of(unit.name, version)
    actor = str(args.get("actor") or "operator")
    async with unit.lock:
        refuse_overlap(unit, version)
        await retire_standby(sup, unit)
        old_rev = unit.current
        rev = Revision(
            max(r.revision for r in unit.revisions) + 1,
            version,
            False,
            max(unit.desired, 1),
            time.time(),
            actor,
            f"rolling update to {version}",
            "staged",
            "rolling",
        )
        unit.revisions.append(rev)
        unit.rollout = {
            "version": version,
            "revision": rev.revision,
            "strategy": "rolling",
            "by": actor,
            "since": time.time(),
        }
        started: list[Replica] = []
        try:
            for _ in range(rev.replicas):
                new = await start_set(sup, unit, rev, 1)
                if not await all_answering(new, healthy=True, timeout=READY_TIMEOUT):
                    await sup.stop_all(new)
                    why = next((r.last_health for r in new if r.last_health), "")
                    raise OpsbookError(
                        f"a replica of {unit.name} {version} did not become healthy; the "
                        f"rolling update stopped:\n{why or sup.log_tail(unit.name)}"
                    )
                started += new
                old = [r for r in unit.active if r.revision == old_rev.revision]
                unit.active = [*[r for r in unit.active if r not in old[:1]], *new]
                unit.route()
                await sup.stop_all(old[:1])
        except OpsbookError:
            # back to the old version: the replicas already replaced come back, the new go
            missing = rev.replicas - sum(
                1 for r in unit.active if r.revision == old_rev.revision and r.alive
            )
            if missing > 0:
                unit.active += await start_set(sup, unit, old_rev, missing)
            unit.active = [r for r in unit.active if r not in started]
            unit.route()
            await sup.stop_all(started)
            rev.status, unit.rollout = "failed", None
            sup.save()
            raise
        old_rev.status, rev.status = "superseded", "active"
        unit.desired = len(unit.active)
        unit.rollout = None
        unit.event("Normal", f"rolled {unit.name} from {old_rev.version} to {version}")
        sup.save()
    return {
        **brief(unit),
        "deployed_revision": rev.revision,
        "strategy": "rolling",
        "replaced": rev.replicas,
    }


# -- the counters an analysis reads -----------------------------------------------------------


def _empty() -> dict[str, Any]:
    return {
        "requests": 0,
        "errors": 0,
        "latency": {"buckets": [], "count": 0, "sum": 0.0},
        "payments": {"succeeded": 0, "failed": 0},
        "replicas": 0,
    }


def _add(into: dict[str, Any], text: str) -> None:
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = sample.labels
            if labels.get("route") in _PLAIN_ROUTES:
                continue
            if sample.name == "http_requests_total":
                into["requests"] += int(sample.value)
                if labels.get("status", "").startswith("5"):
                    into["errors"] += int(sample.value)
            elif sample.name == "http_request_duration_seconds_bucket":
                le = float(labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
            elif sample.name == "http_request_duration_seconds_count":
                into["latency"]["count"] += int(sample.value)
            elif sample.name == "http_request_duration_seconds_sum":
                into["latency"]["sum"] += sample.value
            elif sample.name == "bank_payments_total":
                status = labels.get("status", "")
                if status in ("succeeded", "failed"):
                    into["payments"][status] += int(sample.value)
    merged = dict(into["latency"].pop("_raw", {}))
    for le, count in buckets.items():
        merged[le] = merged.get(le, 0.0) + count
    into["latency"]["_raw"] = merged
    into["replicas"] += 1


async def _slot(replicas: list[Replica]) -> dict[str, Any]:
    out = _empty()

    async def scrape(replica: Replica) -> str | None:
        try:
            status, body = await http_request(replica.port, "/metrics", timeout=2.0)
        except (OSError, TimeoutError):
            return None
        return body.decode(errors="replace") if status == 200 else None

    for text in await asyncio.gather(*(scrape(r) for r in replicas if r.alive)):
        if text is not None:
            _add(out, text)
    raw = out["latency"].pop("_raw", {})
    out["latency"]["buckets"] = [
        ["+Inf" if le == float("inf") else le, int(n)] for le, n in sorted(raw.items())
    ]
    return out


async def slot_metrics(sup: Host, args: dict[str, Any]) -> dict[str, Any]:
    """Cumulative API request counters (requests, 5xx, latency histogram, payments) of the
    active set and of the standby set (a canary, or the old set after a promotion)."""
    unit = unit_of(sup, args)
    active, standby = list(unit.active), list(unit.standby)
    standby_rev = unit.standby_revision
    slots = await asyncio.gather(_slot(active), _slot(standby))
    return {
        "service": unit.name,
        "at": time.time(),
        "weight": unit.weight,
        "active": {**slots[0], "version": unit.current.version, "revision": unit.current.revision},
        "standby": None
        if standby_rev is None or not standby
        else {
            **slots[1],
            "version": standby_rev.version,
            "revision": standby_rev.revision,
            "status": standby_rev.status,
        },
    }
