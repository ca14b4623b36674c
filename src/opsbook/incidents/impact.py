"""Customer impact from the sandbox's ``/metrics``: payments succeeded and failed per affected
service during the incident (declared → resolved).

Prometheus counters only say "how many so far", so the window needs a reading at each end:
declaring arms a ``snapshot_start`` timer and resolving a ``snapshot_end`` timer (rows in
``incident_timers``, due at once). Whoever runs first takes them — the ``opsbook serve``
background loop (in a worker thread, off the event loop) or the CLI command that declared or
resolved — by reading each affected service's ``metrics_url`` (``bank_payments_total`` by
status), then claiming the timer and writing an ``impact.snapshot`` timeline event in one
transaction (so a snapshot is recorded once). The post-incident review subtracts the two; when
it cannot, it says why (not the sandbox, unreachable, no reading, counters reset).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from opsbook.errors import OpsbookError
from opsbook.incidents._events import add_event
from opsbook.incidents.model import Incident, TimelineEntry, fmt_ts

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.workspace import Workspace

KINDS = ("snapshot_start", "snapshot_end")
TIMEOUT = 2.0
ACTOR = "system:impact"


@dataclass(frozen=True)
class Source:
    environment: str
    urls: dict[str, str]  # affected service -> metrics URL
    why_not: str | None = None  # set when there is nothing to read


def source_for(workspace: Workspace, services: tuple[str, ...]) -> Source:
    """The default environment's metrics URLs for ``services``, when it is the sandbox."""
    from opsbook.workspace import load_environment  # noqa: PLC0415

    name = workspace.default_environment
    try:
        env = load_environment(workspace, name)
    except OpsbookError as exc:
        return Source(name, {}, f"the environment {name} could not be read ({exc.message})")
    if "sandbox" not in env.data and env.name != "sandbox":
        return Source(name, {}, f"the environment ({name}) is not the sandbox")
    if not services:
        return Source(name, {}, "the incident names no affected service")
    known = {str(s.get("name")): str(s.get("metrics_url") or "") for s in env.services}
    urls = {s: known[s] for s in services if known.get(s)}
    if not urls:
        return Source(name, {}, f"the sandbox gives no metrics_url for {', '.join(services)}")
    return Source(name, urls)


def read_payments(urls: dict[str, str], *, timeout: float = TIMEOUT) -> dict[str, Any]:
    """``{service: {"succeeded": n, "failed": n}}`` or ``{service: {"error": why}}``."""
    import httpx  # noqa: PLC0415
    from prometheus_client.parser import text_string_to_metric_families  # noqa: PLC0415

    out: dict[str, Any] = {}
    with httpx.Client(timeout=timeout, trust_env=False) as client:
        for service, url in urls.items():
            try:
                reply = client.get(url)
                reply.raise_for_status()
                counts = {"succeeded": 0.0, "failed": 0.0}
                seen = False
                for fam in text_string_to_metric_families(reply.text):
                    for s in fam.samples:
                        status = str(s.labels.get("status", ""))
                        if s.name == "bank_payments_total" and status in counts:
                            counts[status] += s.value
                            seen = True
                out[service] = {**counts, "seen": seen}
            except httpx.HTTPStatusError as exc:
                out[service] = {"error": f"HTTP {exc.response.status_code}"}
            except (httpx.HTTPError, ValueError) as exc:
                out[service] = {"error": short_error(f"{type(exc).__name__}: {exc}")}
    return out


_HTTP_STATUS = re.compile(r"\b([1-5]\d\d) [A-Z][A-Za-z ]+'? for url")


def short_error(text: str) -> str:
    """One short line for why a reading failed (also for readings stored with httpx's raw,
    two-line message): ``HTTP 503``, ``connection refused``, else its first line."""
    status = _HTTP_STATUS.search(text)
    if status:
        return f"HTTP {status.group(1)}"
    if "connection refused" in text.lower():
        return "connection refused"
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    kind, _, rest = first.partition(": ")
    return (first if rest.strip() else kind.strip())[:200]


def _due(db: Database, incident_id: int | None) -> list[dict[str, Any]]:
    sql = "SELECT * FROM incident_timers WHERE state = 'pending' AND kind IN (?, ?) AND due_at <= ?"
    args: list[Any] = [*KINDS, fmt_ts(datetime.now(UTC))]
    if incident_id is not None:
        sql += " AND incident_id = ?"
        args.append(incident_id)
    return db.query(sql + " ORDER BY due_at, id LIMIT 100", args)


def _plan(
    db: Database, workspace: Workspace, timer: dict[str, Any], sources: dict[Any, Source]
) -> tuple[int, Source] | None:
    row = db.one("SELECT * FROM incidents WHERE id = ?", (timer["incident_id"],))
    if row is None:
        return None
    inc = Incident.from_row(row)
    if inc.services not in sources:
        sources[inc.services] = source_for(workspace, inc.services)
    return inc.id, sources[inc.services]


def _record(
    db: Database, timer: dict[str, Any], incident_id: int, src: Source, counts: Any, owner: str
) -> bool:
    point = "start" if timer["kind"] == "snapshot_start" else "end"
    ts = fmt_ts(datetime.now(UTC))
    with db.transaction():
        if not db.execute(
            "UPDATE incident_timers SET state = 'fired', fired_by = ?, fired_at = ?"
            " WHERE id = ? AND state = 'pending'",
            (owner, ts, timer["id"]),
        ):
            return False  # another process took it
        add_event(
            db=db,
            incident_id=incident_id,
            actor=ACTOR,
            kind="impact.snapshot",
            ts=ts,
            payload={
                "point": point,
                "environment": src.environment,
                "payments": counts,
                "why_not": src.why_not,
            },
        )
    return True


def take_due(
    *, db: Database, workspace: Workspace, owner: str, incident_id: int | None = None
) -> int:
    """Take the due snapshots (all, or one incident's) in this thread; returns how many."""
    done = 0
    read: dict[tuple[tuple[str, str], ...], Any] = {}  # one reading per set of URLs in a batch
    sources: dict[Any, Source] = {}
    for timer in _due(db, incident_id):
        plan = _plan(db, workspace, timer, sources)
        if plan is not None:
            key = tuple(sorted(plan[1].urls.items()))
            if key not in read:
                read[key] = read_payments(plan[1].urls) if plan[1].urls else {}
            done += _record(db, timer, plan[0], plan[1], read[key], owner)
    return done


async def take_due_async(*, db: Database, workspace: Workspace, owner: str) -> int:
    """The same for the serve loop: the database on the loop's thread (one connection, one
    thread), the HTTP reads in a worker thread."""
    import asyncio  # noqa: PLC0415

    done = 0
    read: dict[tuple[tuple[str, str], ...], Any] = {}
    sources: dict[Any, Source] = {}
    for timer in _due(db, None):
        plan = _plan(db, workspace, timer, sources)
        if plan is not None:
            urls = plan[1].urls
            key = tuple(sorted(urls.items()))
            if key not in read:
                read[key] = await asyncio.to_thread(read_payments, urls) if urls else {}
            done += _record(db, timer, plan[0], plan[1], read[key], owner)
        await asyncio.sleep(0)
    return done


def _fmt(n: float) -> str:
    return f"{n:,.0f}"


def impact_lines(
    *, inc: Incident, events: list[TimelineEntry], workspace: Workspace | None = None
) -> list[str]:
    """The review's "customers and payments affected" lines, or why they are missing. An
    open incident without an end reading is measured up to now (when ``workspace`` is given)."""
    shots = [e.payload for e in events if e.kind == "impact.snapshot"]
    starts = [s for s in shots if s.get("point") == "start"]
    ends = [s for s in shots if s.get("point") == "end"]
    head = "- Customers and payments affected"
    if not starts:
        return [
            f"{head}: not measured — no sandbox metrics reading was taken at declaration"
            " (`opsbook serve` was not running and the incident was not declared from the"
            " CLI). Fill in from the platform's metrics."
        ]
    start = starts[0]
    if start.get("why_not"):
        return [f"{head}: not measured — {start['why_not']}. Fill in from the platform's metrics."]
    until = "resolved"
    if ends:
        end = ends[-1]
    elif workspace is not None and inc.is_open:
        src = source_for(workspace, inc.services)
        end = {"payments": read_payments(src.urls) if src.urls else {}}
        until = "now (still open)"
    else:
        return [
            f"{head}: not measured — no sandbox metrics reading at resolution."
            " Fill in from the platform's metrics."
        ]
    lines = [f"- Payments during the incident (sandbox `/metrics`, declared → {until}):"]
    for service, before in sorted(start.get("payments", {}).items()):
        after = end.get("payments", {}).get(service, {})
        if not before.get("seen", True) and not after.get("seen", True):
            continue  # not a payment service (no bank_payments_total samples)
        if "error" in before or "error" in after:
            why = short_error(str(before.get("error") or after.get("error")))
            lines.append(f"  - {service}: not measured: metrics unreachable ({why})")
            continue
        ok = after["succeeded"] - before["succeeded"]
        bad = after["failed"] - before["failed"]
        if ok < 0 or bad < 0:
            lines.append(f"  - {service}: not measured — the service restarted (counters reset)")
            continue
        total = ok + bad
        share = f" ({bad / total:.1%} of {_fmt(total)})" if total else ""
        lines.append(f"  - {service}: {_fmt(bad)} failed{share}, {_fmt(ok)} succeeded")
    if len(lines) == 1:
        lines.append("  - no affected service has payment metrics")
    return lines
