"""The monthly runbook report (issue 15): a calendar month's runbook metrics, the worst
procedures, the feedback comments, overdue reviews, accuracy signals and training — as data,
Markdown and one self-contained HTML page (inline SVG charts, no script)."""

# ruff: noqa: S608 - SQL is built from constant fragments; every value is bound
from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from html import escape
from typing import Any

from opsbook.db import Database
from opsbook.lifecycle import feedback as fb
from opsbook.lifecycle import metrics, quality
from opsbook.lifecycle.metrics import Stats, StatsReport
from opsbook.monitoring.render import REPORT_CSS  # the console serves it as /static/report.css

#: A procedure needs this many finished runs in the month to be ranked among the worst.
MIN_RUNS = 3
WORST = 5


@dataclass(frozen=True)
class Worst:
    stats: Stats
    why: str

    def to_dict(self) -> dict[str, Any]:
        return {"ref": self.stats.ref, "why": self.why, **_brief(self.stats)}


def _brief(s: Stats) -> dict[str, Any]:
    return {
        "runs": s.runs,
        "success_rate": s.success_rate,
        "duration_median_s": s.duration_median,
        "deviations": s.deviations,
        "rating": s.feedback.mean,
        "ratings": s.feedback.count,
    }


@dataclass(frozen=True)
class RunbookReport:
    month: str
    stats: StatsReport
    daily: tuple[tuple[str, int, int], ...]  # (day, runs, succeeded)
    worst: tuple[Worst, ...]
    comments: tuple[fb.FeedbackRow, ...]
    quality: quality.Quality

    def to_dict(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "stats": self.stats.to_dict(),
            "daily": [{"day": d, "runs": n, "succeeded": ok} for d, n, ok in self.daily],
            "worst": [w.to_dict() for w in self.worst],
            "comments": [c.to_dict() for c in self.comments],
            "quality": self.quality.to_dict(),
        }


def _worst(stats: StatsReport) -> list[Worst]:
    """Procedures ranked by failures first (success rate), then deviations, then ratings."""
    out = []
    for p in stats.procedures():
        if p.finished < MIN_RUNS:
            continue
        why = []
        rate = p.success_rate
        if rate is not None and rate < 1:
            why.append(f"{(1 - rate) * 100:.0f}% of runs did not succeed")
        if p.deviations:
            why.append(f"{p.deviations} deviation(s)")
        if p.feedback.mean is not None and p.feedback.mean < 3:
            why.append(f"rated {p.feedback.mean:.1f}/5")
        if why:
            out.append(Worst(p, "; ".join(why)))
    out.sort(
        key=lambda w: (
            w.stats.success_rate if w.stats.success_rate is not None else 1.0,
            -w.stats.deviations / max(w.stats.runs, 1),
            w.stats.feedback.mean if w.stats.feedback.mean is not None else 5.0,
            w.stats.ref,
        )
    )
    return out[:WORST]


def runbook_report(
    db: Database, *, catalogue: Any, month: str, now: datetime | None = None
) -> RunbookReport:
    """The report of ``month`` (YYYY-MM, UTC); a bad month raises ValidationError naming
    ``month``."""
    from opsbook.monitoring.sla import month_bounds  # noqa: PLC0415

    start, end = month_bounds(month)
    stats = metrics.runbook_stats(db, catalogue=catalogue, since=start, until=end, now=now)
    since, until = metrics.iso(start), metrics.iso(end)
    days = daily_runs(db, since=since, until=until)
    last_day = min(end.date() - timedelta(days=1), (now or stats.generated).date())
    return RunbookReport(
        month=month,
        stats=stats,
        daily=days,
        worst=tuple(_worst(stats)),
        comments=tuple(fb.comments(db, since=since, until=until, limit=30)),
        quality=quality.quality(
            db, catalogue=catalogue, since=since, until=until, today=max(last_day, start.date())
        ),
    )


def daily_runs(
    db: Database, *, since: str, until: str, runbook: str | None = None
) -> tuple[tuple[str, int, int], ...]:
    """(day, runs, succeeded) for every UTC day from ``since`` to ``until``: one GROUP BY."""
    only = " AND runbook_id = ?" if runbook else ""
    rows = db.query(
        "SELECT substr(created_at, 1, 10) AS day, COUNT(*) AS n,"
        " SUM(CASE WHEN state = 'succeeded' THEN 1 ELSE 0 END) AS ok FROM executions"
        f" WHERE dry_run = 0 AND created_at >= ? AND created_at < ?{only}"
        " GROUP BY substr(created_at, 1, 10)",
        (since, until, *((runbook,) if runbook else ())),
    )
    by_day = {str(r["day"]): (int(r["n"]), int(r["ok"] or 0)) for r in rows}
    first = date.fromisoformat(since[:10])
    last = date.fromisoformat(until[:10])
    if until[10:] == "T00:00:00.000000Z" and last > first:
        last -= timedelta(days=1)  # the window ends at midnight: that day is not in it
    days = []
    d = first
    while d <= last:
        n, ok = by_day.get(d.isoformat(), (0, 0))
        days.append((d.isoformat(), n, ok))
        d += timedelta(days=1)
    return tuple(days)


# --- rendering ------------------------------------------------------------------------------


def pct(v: float | None) -> str:
    return "—" if v is None else f"{v * 100:.0f}%"


def dur(v: float | None) -> str:
    if v is None:
        return "—"
    s = round(v)
    if s < 60:
        return f"{v:.1f}s" if v < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _rating(s: Stats) -> str:
    return f"{s.feedback.mean:.1f} ({s.feedback.count})" if s.feedback.count else "—"


def markdown(report: RunbookReport) -> str:
    st = report.stats
    procs = [p for p in st.procedures() if p.runs]
    lines = [
        f"# Runbook report {report.month}",
        "",
        f"Runs started {st.since:%Y-%m-%d} to {st.until:%Y-%m-%d} (UTC), dry runs excluded;"
        f" {sum(p.runs for p in procs)} run(s) of {len(procs)} procedure(s);"
        f" {st.resolved_incidents} incident(s) resolved; runbooks opened"
        f" {sum(rb.total.opened for rb in st.runbooks)} time(s) ({st.opened}).",
        "",
        "## Procedures",
        "",
        "| Procedure | Runs | Success | Median | p90 | Deviations | Incidents | Rating |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in procs:
        lines.append(
            f"| {p.ref} | {p.runs} | {pct(p.success_rate)} | {dur(p.duration_median)} |"
            f" {dur(p.duration_p90)} | {p.deviations} | {p.incidents} | {_rating(p)} |"
        )
    if not procs:
        lines.append("| (no runs) | | | | | | | |")
    lines += ["", "## Worst procedures", ""]
    lines += [f"- **{w.stats.ref}**: {w.why}" for w in report.worst] or [
        f"- None (a procedure needs {MIN_RUNS} finished runs to be ranked)."
    ]
    lines += ["", "## Feedback comments", ""]
    lines += [
        f"- {c.runbook}#{c.procedure} — {c.rating}/5 by {c.person}: {c.comment}"
        for c in report.comments
    ] or ["- None."]
    q = report.quality
    lines += ["", "## Overdue reviews", ""]
    lines += [
        f"- {r.runbook} (owner {r.owner or '—'}): last reviewed {r.last_reviewed}, every"
        f" {r.review_interval}, due {r.due}: {r.overdue_days} day(s) overdue"
        for r in q.overdue
    ] or ["- None."]
    lines += ["", "## Accuracy signals (steps that failed on a healthy sandbox)", ""]
    lines += [
        f"- {a.ref} step `{a.step}`: {a.failures} failure(s), last {a.last}" for a in q.accuracy
    ] or ["- None."]
    lines += ["", "## Training", ""]
    if q.training.measured:
        lines += [f"- {area}: {n}" for area, n in q.training.by_area] or ["- No certifications."]
    else:
        lines.append(f"- {q.training.note}")
    return "\n".join(lines) + "\n"


def success_bars(procs: list[Stats], *, width: int = 560, row: int = 18) -> str:
    """Horizontal bars: each procedure's success rate (green part) over its runs."""
    label = 260
    height = row * max(1, len(procs)) + 4
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" role="img" aria-label="Success rate per procedure">'
        "<title>Success rate per procedure</title>"
    ]
    span = width - label - 50
    for i, p in enumerate(procs):
        y = i * row + 2
        rate = p.success_rate
        parts.append(
            f'<text x="0" y="{y + 12}" font-size="11" fill="#333">{escape(p.ref[:40])}</text>'
            f'<rect x="{label}" y="{y}" width="{span}" height="{row - 5}" fill="#eee"/>'
        )
        if rate is not None:
            parts.append(
                f'<rect x="{label}" y="{y}" width="{span * rate:.1f}" height="{row - 5}"'
                f' fill="{"#2e7d32" if rate >= 0.9 else "#c62828"}">'
                f"<title>{escape(p.ref)}: {rate * 100:.1f}% of {p.finished}</title></rect>"
            )
        parts.append(
            f'<text x="{label + span + 4}" y="{y + 12}" font-size="11" fill="#333">'
            f"{pct(rate)}</text>"
        )
    parts.append("</svg>")
    return "".join(parts)


def daily_bars(
    daily: tuple[tuple[str, int, int], ...], *, width: int = 560, height: int = 80
) -> str:
    """Runs per day (grey) and how many succeeded (green)."""
    top = max((n for _, n, _ in daily), default=0) or 1
    bar = width / max(1, len(daily))
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 14}"'
        f' viewBox="0 0 {width} {height + 14}" role="img" aria-label="Runs per day">'
        "<title>Runs per day</title>"
    ]
    for i, (day, n, ok) in enumerate(daily):
        x = i * bar
        h = n / top * height
        hk = ok / top * height
        parts.append(
            f'<rect x="{x:.1f}" y="{height - h:.1f}" width="{max(bar - 1, 1):.1f}"'
            f' height="{h:.1f}" fill="#bdbdbd"><title>{day}: {n} run(s)</title></rect>'
            f'<rect x="{x:.1f}" y="{height - hk:.1f}" width="{max(bar - 1, 1):.1f}"'
            f' height="{hk:.1f}" fill="#2e7d32"><title>{day}: {ok} succeeded</title></rect>'
        )
    first = daily[0][0] if daily else ""
    last = daily[-1][0] if daily else ""
    parts.append(
        f'<text x="0" y="{height + 12}" font-size="10" fill="#555">{first} … {last},'
        f" max {top} run(s) a day</text></svg>"
    )
    return "".join(parts)


def _style(stylesheet: str | None) -> str:
    if stylesheet is None:
        return f"<style>{REPORT_CSS}</style>"
    return f'<link rel="stylesheet" href="{escape(stylesheet)}">'


def stats_table(procs: list[Stats]) -> str:
    rows = "".join(
        f"<tr><td>{escape(p.ref)}</td><td>{p.runs}</td>"
        f'<td class="{"ok" if (p.success_rate or 0) >= 0.9 else "bad"}">{pct(p.success_rate)}'
        f"</td><td>{dur(p.duration_median)}</td><td>{dur(p.duration_p90)}</td>"
        f"<td>{p.deviations}</td><td>{p.incidents}</td><td>{_rating(p)}</td></tr>"
        for p in procs
    )
    return (
        "<table><tr><th>Procedure</th><th>Runs</th><th>Success</th><th>Median</th><th>p90</th>"
        "<th>Deviations</th><th>Incidents</th><th>Rating</th></tr>" + rows + "</table>"
    )


def html(report: RunbookReport, *, stylesheet: str | None = None) -> str:
    st = report.stats
    procs = [p for p in st.procedures() if p.runs]
    q = report.quality

    def items(values: list[str], empty: str) -> str:
        return "<ul>" + ("".join(f"<li>{v}</li>" for v in values) or f"<li>{empty}</li>") + "</ul>"

    worst = items(
        [f"<strong>{escape(w.stats.ref)}</strong>: {escape(w.why)}" for w in report.worst],
        f"None (a procedure needs {MIN_RUNS} finished runs to be ranked).",
    )
    comments = items(
        [
            f"{escape(f'{c.runbook}#{c.procedure}')} — {c.rating}/5 by {escape(c.person)}:"
            f" {escape(c.comment or '')}"
            for c in report.comments
        ],
        "None.",
    )
    overdue = items(
        [
            f"{escape(r.runbook)} (owner {escape(r.owner or '—')}): due {r.due},"
            f" {r.overdue_days} day(s) overdue"
            for r in q.overdue
        ],
        "None.",
    )
    accuracy = items(
        [
            f"{escape(a.ref)} step <code>{escape(a.step)}</code>: {a.failures} failure(s),"
            f" last {escape(a.last)}"
            for a in q.accuracy
        ],
        "None.",
    )
    training = (
        items([f"{escape(a)}: {n}" for a, n in q.training.by_area], "No certifications.")
        if q.training.measured
        else f"<p>{escape(q.training.note)}</p>"
    )
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>Runbook report {escape(report.month)}</title>{_style(stylesheet)}</head><body>"
        f"<h1>Runbook report {escape(report.month)}</h1>"
        f"<p>Runs started {st.since:%Y-%m-%d} to {st.until:%Y-%m-%d} (UTC), dry runs excluded;"
        f" {sum(p.runs for p in procs)} run(s); {st.resolved_incidents} incident(s) resolved;"
        f" runbooks opened {sum(rb.total.opened for rb in st.runbooks)} time(s)"
        f" ({escape(st.opened)}).</p>"
        f"<section><h2>Runs per day</h2>{daily_bars(report.daily)}</section>"
        f"<section><h2>Procedures</h2>{success_bars(procs)}{stats_table(procs)}</section>"
        f"<section><h2>Worst procedures</h2>{worst}</section>"
        f"<section><h2>Feedback comments</h2>{comments}</section>"
        f"<section><h2>Overdue reviews</h2>{overdue}</section>"
        f"<section><h2>Accuracy signals</h2><p>Steps that failed on a healthy sandbox (no"
        f" incident open, no alert firing, no fault injected).</p>{accuracy}</section>"
        f"<section><h2>Training</h2>{training}</section>"
        "</body></html>"
    )
