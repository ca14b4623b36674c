"""Runbook metrics (issue 15): per runbook and per procedure over a window of time.

Every number is a SQL aggregate over the ``executions``, ``step_runs``, ``events``,
``incidents``/``incident_executions`` and ``runbook_feedback`` tables — no Python loop over
rows — so that ``opsbook runbooks stats`` stays under a second over 100,000 executions
(benchmarks/bench_runbook_stats.py). Definitions (docs/lifecycle.md says the same):

- **opened**: the times a person opened the runbook (its console page, the API's getRunbook,
  ``opsbook runbooks show``) or one of its procedures (its run form, getProcedure, ``show
  RUNBOOK#PROCEDURE``) in the window (``runbook_opens``); a runbook's figure includes its
  procedures'.
- **runs**: executions started in the window (``created_at``), dry runs excluded; child runs
  (``on_failure: run``, ``decide``) count for the procedure they ran.
- **success rate**: succeeded / finished, where finished = succeeded + failed + aborted.
- **duration**: start to finish of the runs that succeeded or failed (time waiting for a person
  included); median, and p90 by nearest rank.
- **steps that fail or are skipped most**: step runs in the state ``failed`` or ``skipped``.
- **manual deviations**: manual steps attested with a note, aborted runs, and failures the run
  went on past (a failed step followed by another step of the same run: ``on_failure:
  continue`` or ``goto``).
- **incidents**: non-drill incidents resolved in the window that ran the procedure
  (``incident_executions``); the share is of all non-drill incidents resolved in the window;
  time to resolution is detection to resolution, median.
- **feedback**: ratings given on the window's runs (count, mean, how many 1–2).
"""

# ruff: noqa: S608 - SQL is built from constant fragments and fixed column names; every value is bound
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from opsbook.db import Database
from opsbook.errors import UsageError

DEFAULT_SINCE = "90d"
TOP_STEPS = 5
_FINISHED = ("succeeded", "failed", "aborted")


def parse_since(text: str) -> timedelta:
    """``90d``, ``12h``, ``2w`` (or any :func:`opsbook.durations.parse_duration` text)."""
    from opsbook.durations import parse_duration  # noqa: PLC0415

    raw = text.strip()
    try:
        if raw.endswith("w") and raw[:-1].isdigit():
            seconds = int(raw[:-1]) * 7 * 86400.0
        else:
            seconds = parse_duration(raw)
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise UsageError(f"{text!r} is not a duration", field="--since", hint="e.g. 90d, 4w, 12h")
    return timedelta(seconds=seconds)


def iso(dt: datetime) -> str:
    """The schema's timestamp text (``2026-11-26T23:40:00.000000Z``): sorts as time."""
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class StepCount:
    step: str
    failed: int
    skipped: int

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "failed": self.failed, "skipped": self.skipped}


@dataclass(frozen=True)
class Feedback:
    count: int = 0
    mean: float | None = None
    low: int = 0  # ratings of 1 or 2

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "low": self.low}


@dataclass(frozen=True)
class Stats:
    """The numbers of one procedure (or of a whole runbook: ``procedure`` is None)."""

    runbook: str
    procedure: str | None
    title: str | None = None
    runs: int = 0
    finished: int = 0
    succeeded: int = 0
    failed: int = 0
    aborted: int = 0
    duration_median: float | None = None
    duration_p90: float | None = None
    steps: tuple[StepCount, ...] = ()
    attested_with_note: int = 0
    failures_passed: int = 0
    incidents: int = 0
    incident_share: float | None = None
    ttr_median: float | None = None
    feedback: Feedback = field(default_factory=Feedback)
    in_catalogue: bool = True
    opened: int = 0

    @property
    def ref(self) -> str:
        return f"{self.runbook}#{self.procedure}" if self.procedure else self.runbook

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.finished if self.finished else None

    @property
    def deviations(self) -> int:
        return self.attested_with_note + self.aborted + self.failures_passed

    def to_dict(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "runbook": self.runbook,
            "procedure": self.procedure,
            "title": self.title,
            "in_catalogue": self.in_catalogue,
            "opened": self.opened,
            "runs": self.runs,
            "finished": self.finished,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "aborted": self.aborted,
            "success_rate": self.success_rate,
            "duration_s": {"median": self.duration_median, "p90": self.duration_p90},
            "steps": [s.to_dict() for s in self.steps],
            "deviations": {
                "total": self.deviations,
                "attested_with_note": self.attested_with_note,
                "aborted": self.aborted,
                "failures_passed": self.failures_passed,
            },
            "incidents": {
                "resolved": self.incidents,
                "share": self.incident_share,
                "ttr_median_s": self.ttr_median,
            },
            "feedback": self.feedback.to_dict(),
        }


@dataclass(frozen=True)
class RunbookStats:
    total: Stats
    procedures: tuple[Stats, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**self.total.to_dict(), "procedures": [p.to_dict() for p in self.procedures]}


@dataclass(frozen=True)
class StatsReport:
    since: datetime
    until: datetime
    generated: datetime
    resolved_incidents: int
    runbooks: tuple[RunbookStats, ...]
    opened: str = "console pages, API reads and `opsbook runbooks show`"

    def procedures(self) -> list[Stats]:
        return [p for rb in self.runbooks for p in rb.procedures]

    def to_dict(self) -> dict[str, Any]:
        return {
            "since": iso(self.since),
            "until": iso(self.until),
            "generated": iso(self.generated),
            "opened": self.opened,
            "resolved_incidents": self.resolved_incidents,
            "runbooks": [rb.to_dict() for rb in self.runbooks],
        }


# --- SQL ---------------------------------------------------------------------------------


def seconds_between(db: Database, start: str, end: str) -> str:
    """SQL for the seconds from timestamp column ``start`` to ``end`` (ISO text)."""
    if db.dialect == "postgresql":
        return f"EXTRACT(EPOCH FROM (CAST({end} AS timestamptz) - CAST({start} AS timestamptz)))"
    return f"((julianday({end}) - julianday({start})) * 86400.0)"


_WINDOW = "e.dry_run = 0 AND e.created_at >= ? AND e.created_at < ?"


def _percentiles(db: Database, inner: str, keys: Sequence[str], params: Sequence[Any]) -> str:
    """SQL: median and p90 (nearest rank) of ``v`` per ``keys`` over the rows of ``inner``."""
    k = ", ".join(keys)
    return (
        f"WITH d AS ({inner}), r AS (SELECT {k}, v,"
        f" ROW_NUMBER() OVER (PARTITION BY {k} ORDER BY v) AS rn,"
        f" COUNT(*) OVER (PARTITION BY {k}) AS n FROM d)"
        f" SELECT {k},"
        " AVG(CASE WHEN rn = (n + 1) / 2 OR rn = (n + 2) / 2 THEN v END) AS median,"
        " MAX(CASE WHEN rn = (9 * n + 9) / 10 THEN v END) AS p90"
        f" FROM r GROUP BY {k}"
    )


def _keyed(rows: Iterable[Mapping[str, Any]], keys: Sequence[str]) -> dict[tuple[Any, ...], Any]:
    return {tuple(r[k] for k in keys): r for r in rows}


def _round(v: Any, digits: int = 3) -> float | None:
    return None if v is None else round(float(v), digits)


@dataclass
class _Acc:
    counts: dict[tuple[Any, ...], Any]
    durations: dict[tuple[Any, ...], Any]
    steps: dict[tuple[Any, ...], list[StepCount]]
    notes: dict[tuple[Any, ...], Any]
    passed: dict[tuple[Any, ...], Any]
    incidents: dict[tuple[Any, ...], Any]
    ttr: dict[tuple[Any, ...], Any]
    feedback: dict[tuple[Any, ...], Any]
    opens: dict[tuple[Any, ...], int] = field(default_factory=dict)


_PROC = ("runbook_id", "procedure_id")


def _aggregate(db: Database, window: tuple[str, str], runbook: str | None) -> tuple[_Acc, _Acc]:
    """Every aggregate per procedure, and per runbook: the runbook's sums are added up from
    its procedures' rows (a few dozen), its distinct incidents come from SQL; a runbook's
    duration percentiles are not computed (its procedures' durations are not comparable)."""
    keys = _PROC
    cols = "e.runbook_id, e.procedure_id"
    only = " AND e.runbook_id = ?" if runbook else ""
    p: tuple[Any, ...] = (*window, runbook) if runbook else window
    succ = "SUM(CASE WHEN e.state = '{}' THEN 1 ELSE 0 END)"
    counts = db.query(
        f"SELECT {cols}, COUNT(*) AS runs,"
        f" {succ.format('succeeded')} AS succeeded, {succ.format('failed')} AS failed,"
        f" {succ.format('aborted')} AS aborted,"
        " SUM(CASE WHEN e.state IN ('succeeded', 'failed', 'aborted') THEN 1 ELSE 0 END)"
        f" AS finished FROM executions e WHERE {_WINDOW}{only} GROUP BY {cols}",
        p,
    )
    secs = seconds_between(db, "e.created_at", "e.finished_at")
    inner = (
        f"SELECT {cols}, {secs} AS v FROM executions e WHERE {_WINDOW}{only}"
        " AND e.finished_at IS NOT NULL AND e.state IN ('succeeded', 'failed')"
    )
    durations = db.query(_percentiles(db, inner, keys, p), p)
    step_rows = db.query(
        f"SELECT {cols}, s.step_id,"
        " SUM(CASE WHEN s.state = 'failed' THEN 1 ELSE 0 END) AS failed,"
        " SUM(CASE WHEN s.state = 'skipped' THEN 1 ELSE 0 END) AS skipped,"
        " SUM(CASE WHEN s.state = 'failed' AND EXISTS (SELECT 1 FROM step_runs t"
        " WHERE t.execution_id = s.execution_id AND t.seq > s.seq) THEN 1 ELSE 0 END) AS passed"
        f" FROM step_runs s JOIN executions e ON e.id = s.execution_id WHERE {_WINDOW}{only}"
        f" AND s.state IN ('failed', 'skipped') GROUP BY {cols}, s.step_id",
        p,
    )
    notes = db.query(
        f"SELECT {cols}, COUNT(*) AS n FROM events v JOIN executions e ON e.id = v.execution_id"
        f" WHERE v.action = 'execution.step.attested' AND v.ts >= ? AND {_WINDOW}{only}"
        f" AND v.payload NOT LIKE ? GROUP BY {cols}",
        (window[0], *p, '%"note":null%'),  # bound: a literal % would be a placeholder to psycopg
    )
    feedback = db.query(
        f"SELECT {cols}, COUNT(*) AS n, SUM(f.rating) AS total,"
        " SUM(CASE WHEN f.rating <= 2 THEN 1 ELSE 0 END) AS low"
        f" FROM runbook_feedback f JOIN executions e ON e.id = f.execution_id"
        f" WHERE {_WINDOW}{only} GROUP BY {cols}",
        p,
    )
    opens = db.query(
        "SELECT o.runbook_id, o.procedure_id, COUNT(*) AS n FROM runbook_opens o"
        " WHERE o.opened_at >= ? AND o.opened_at < ?"
        + (" AND o.runbook_id = ?" if runbook else "")
        + " GROUP BY o.runbook_id, o.procedure_id",
        p,
    )
    proc = _Acc(
        counts=_keyed(counts, keys),
        durations=_keyed(durations, keys),
        steps={},
        notes=_keyed(notes, keys),
        passed={},
        incidents={},
        ttr={},
        feedback=_keyed(feedback, keys),
    )
    rb = _Acc(
        counts={}, durations={}, steps={}, notes={}, passed={}, incidents={}, ttr={}, feedback={}
    )
    for r in opens:
        n = int(r["n"])
        rb.opens[(r["runbook_id"],)] = rb.opens.get((r["runbook_id"],), 0) + n
        if r["procedure_id"] is not None:
            proc.opens[(r["runbook_id"], r["procedure_id"])] = n
    # Runbook sums from the procedure rows (one row per procedure, not per run).
    for src, dst in (
        (proc.counts, rb.counts),
        (proc.notes, rb.notes),
        (proc.feedback, rb.feedback),
    ):
        for (rid, _), row in src.items():
            acc = dst.setdefault((rid,), {})
            for k, v in row.items():
                if k not in keys:
                    acc[k] = (acc.get(k) or 0) + (v or 0)
    for r in step_rows:  # one row per failing/skipped step, not per run
        key = (r["runbook_id"], r["procedure_id"])
        sc = StepCount(str(r["step_id"]), int(r["failed"]), int(r["skipped"]))
        proc.steps.setdefault(key, []).append(sc)
        proc.passed[key] = proc.passed.get(key, 0) + int(r["passed"])
        rb.steps.setdefault((key[0],), []).append(
            StepCount(f"{key[1]}/{sc.step}", sc.failed, sc.skipped)
        )
        rb.passed[(key[0],)] = rb.passed.get((key[0],), 0) + int(r["passed"])
    for acc in (proc, rb):
        for lst in acc.steps.values():
            lst.sort(key=lambda s: (-(s.failed + s.skipped), s.step))
            del lst[TOP_STEPS:]
    resolved = (
        "i.drill = 0 AND i.resolved_at IS NOT NULL AND i.resolved_at >= ? AND i.resolved_at < ?"
    )
    for acc, ks in ((proc, keys), (rb, ("runbook_id",))):
        kcols = ", ".join(f"e.{k}" for k in ks)
        links = (
            f"SELECT DISTINCT {kcols}, i.id AS incident,"
            f" {seconds_between(db, 'i.detected_at', 'i.resolved_at')} AS v"
            " FROM incident_executions x JOIN incidents i ON i.id = x.incident_id"
            f" JOIN executions e ON e.id = x.execution_id WHERE {resolved}{only}"
        )
        acc.incidents = _keyed(
            db.query(
                f"SELECT {', '.join(ks)}, COUNT(*) AS n FROM ({links}) l GROUP BY {', '.join(ks)}",
                p,
            ),
            ks,
        )
        acc.ttr = _keyed(db.query(_percentiles(db, links, ks, p), p), ks)
    return proc, rb


def _stats(
    acc: _Acc, key: tuple[Any, ...], *, total_incidents: int, title: str | None, known: bool
) -> Stats:
    c = acc.counts.get(key) or {}
    d = acc.durations.get(key) or {}
    inc = int((acc.incidents.get(key) or {}).get("n") or 0)
    fb = acc.feedback.get(key)
    return Stats(
        runbook=str(key[0]),
        procedure=str(key[1]) if len(key) > 1 else None,
        title=title,
        runs=int(c.get("runs") or 0),
        finished=int(c.get("finished") or 0),
        succeeded=int(c.get("succeeded") or 0),
        failed=int(c.get("failed") or 0),
        aborted=int(c.get("aborted") or 0),
        duration_median=_round(d.get("median")),
        duration_p90=_round(d.get("p90")),
        steps=tuple(acc.steps.get(key, ())),
        attested_with_note=int((acc.notes.get(key) or {}).get("n") or 0),
        failures_passed=int(acc.passed.get(key, 0)),
        incidents=inc,
        incident_share=inc / total_incidents if total_incidents else None,
        ttr_median=_round((acc.ttr.get(key) or {}).get("median")),
        feedback=Feedback(
            count=int(fb["n"]),
            mean=round(int(fb["total"]) / int(fb["n"]), 2),
            low=int(fb["low"] or 0),
        )
        if fb and fb.get("n")
        else Feedback(),
        in_catalogue=known,
        opened=acc.opens.get(key, 0),
    )


def runbook_stats(
    db: Database,
    *,
    catalogue: Any | None,
    since: datetime,
    until: datetime | None = None,
    ref: str | None = None,
    now: datetime | None = None,
) -> StatsReport:
    """The metrics of every runbook (or of ``ref``: ``RUNBOOK`` or ``RUNBOOK#PROCEDURE``)
    for runs started in ``[since, until)``. Procedures of the catalogue with no runs are
    listed with zeros; runbooks that have runs but are no longer in the catalogue are listed
    with ``in_catalogue`` false (not when ``ref`` is given). An unknown ``ref`` raises
    :class:`~opsbook.errors.NotFoundError` with the closest names."""
    generated = now or datetime.now(UTC)
    end = until or generated
    rb_only: str | None = None
    proc_only: str | None = None
    if ref:
        if catalogue is None:
            raise UsageError("a runbook reference needs the catalogue", field="ref")
        rb_only, _, proc_only = ref.partition("#")
        if proc_only:
            catalogue.resolve(ref)  # NotFoundError naming the closest procedures
        else:
            catalogue.get(rb_only)  # NotFoundError naming the closest runbooks
        proc_only = proc_only or None
    window = (iso(since), iso(end))
    total_incidents = int(
        (
            db.one(
                "SELECT COUNT(*) AS n FROM incidents i WHERE i.drill = 0 AND i.resolved_at"
                " IS NOT NULL AND i.resolved_at >= ? AND i.resolved_at < ?",
                window,
            )
            or {}
        ).get("n")
        or 0
    )
    per_proc, per_rb = _aggregate(db, window, rb_only)
    known: dict[str, tuple[str | None, list[tuple[str, str | None]]]] = {}
    for rb in catalogue.runbooks if catalogue is not None else ():
        if rb_only and rb.id != rb_only:
            continue
        known[rb.id] = (rb.meta.title, [(p.id, p.title) for p in rb.procedures])
    seen: dict[str, list[tuple[str, str | None]]] = {}
    for rb_id, proc_id in per_proc.counts:
        if rb_id not in known:
            seen.setdefault(str(rb_id), []).append((str(proc_id), None))
    out: list[RunbookStats] = []
    for rb_id, (title, procs) in [
        *known.items(),
        *((k, (None, sorted(v))) for k, v in sorted(seen.items())),
    ]:
        in_cat = rb_id in known
        extra = [
            (str(pid), None)
            for (rid, pid) in per_proc.counts
            if rid == rb_id and in_cat and pid not in {p for p, _ in procs}
        ]
        rows = tuple(
            _stats(
                per_proc,
                (rb_id, pid),
                total_incidents=total_incidents,
                title=ptitle,
                known=in_cat and (pid, ptitle) not in extra,
            )
            for pid, ptitle in [*procs, *sorted(extra)]
            if not proc_only or pid == proc_only
        )
        total = _stats(per_rb, (rb_id,), total_incidents=total_incidents, title=title, known=in_cat)
        out.append(RunbookStats(total=total, procedures=rows))
    return StatsReport(
        since=since,
        until=end,
        generated=generated,
        resolved_incidents=total_incidents,
        runbooks=tuple(out),
    )


def window_since(text: str, *, now: datetime | None = None) -> tuple[datetime, datetime]:
    """``(now - since, now)`` for ``--since``."""
    end = now or datetime.now(UTC)
    return end - parse_since(text), end
