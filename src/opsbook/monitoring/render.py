"""SLA and health-check reports as Markdown and as self-contained HTML (inline SVG charts)."""

from __future__ import annotations

from html import escape
from typing import Any

from opsbook.monitoring import charts
from opsbook.monitoring.sla import MIN_MEASURED, ServiceSla, SlaReport

#: The reports' style rules: inline in files (``--out``, PDF) so they stand alone; the console
#: links the same rules as ``/static/report.css`` (its Content-Security-Policy refuses inline
#: style). tests/web/test_report_pages.py keeps the two equal.
REPORT_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:980px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;"
    "text-align:left}th{background:#f3f3f3}.ok{color:#2e7d32}.bad{color:#c62828}"
    "section{margin:2em 0}"
)
_INLINE = f"<style>{REPORT_CSS}</style>"


def _style(stylesheet: str | None) -> str:
    if stylesheet is None:
        return _INLINE
    return f'<link rel="stylesheet" href="{escape(stylesheet)}">'


def linked(html: str, stylesheet: str) -> str:
    """A (stored) report with its inline style rules replaced by a link to ``stylesheet``."""
    return html.replace(_INLINE, _style(stylesheet), 1)


def pct(v: float | None, digits: int = 3) -> str:
    return "—" if v is None else f"{v * 100:.{digits}f}%"


def _met(s: ServiceSla) -> str:
    return s.verdict


def sla_markdown(report: SlaReport) -> str:
    lines = [
        f"# SLA report {report.month} — {report.environment}",
        "",
        f"Period {report.start:%Y-%m-%d} to {report.end:%Y-%m-%d} (UTC), generated "
        f"{report.generated:%Y-%m-%d %H:%M} UTC. Availability is time-weighted from probe "
        "results; approved maintenance windows are excluded, unapproved ones are not. "
        "*Measured* is how much of the month so far has probe results: availability is over "
        f"that time only, and below {MIN_MEASURED:.0%} the SLA column says *not enough data* "
        "instead of a verdict. *Budget consumed* is the downtime against the whole month's "
        "error budget. A service with an alert still firing gets no verdict.",
        "",
        "| Service | Objective | Availability | Measured | Downtime (min) | Budget consumed |"
        " Excluded (min) | SLA | Daily |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in report.services:
        spark = charts.sparkline([a for _, a in s.daily])
        lines.append(
            f"| {s.service} | {'—' if s.objective is None else f'{s.objective:g}%'} | "
            f"{pct(s.availability)} | {_measured(report, s)} | {s.downtime_minutes:.1f} | "
            f"{pct(s.budget_consumed, 1)} | "
            f"{s.excluded_minutes} | {_met(s)} | `{spark}` |"
        )
    for s in report.services:
        lines += ["", f"## {s.service}", ""]
        if s.downtimes:
            lines.append("Downtime periods:")
            lines += [
                f"- {d.start:%Y-%m-%d %H:%M}–{d.end:%H:%M} UTC: {d.minutes:g} min"
                for d in s.downtimes
            ]
        else:
            lines.append("No downtime recorded.")
        if s.alerts:
            lines += ["", "Alerts:"]
            lines += [
                f"- {a['starts_at']} {a['alertname']} ({a['severity']}, {a['status']})"
                + (f" → {a['runbook']}" if a.get("runbook") else "")
                for a in s.alerts
            ]
        if s.unapproved:
            lines += ["", "Maintenance not approved (counted as downtime):"]
            lines += [
                f"- {m.start:%Y-%m-%d %H:%M}–{m.end:%H:%M} {m.change or ''}" for m in s.unapproved
            ]
    return "\n".join(lines) + "\n"


def sla_html(report: SlaReport, *, stylesheet: str | None = None) -> str:
    """The report as one HTML page: style rules inline, or linked from ``stylesheet``."""
    rows = []
    sections = []
    for s in report.services:
        cls = "" if s.met is None else ("ok" if s.met else "bad")
        rows.append(
            f"<tr><td>{escape(s.service)}</td>"
            f"<td>{'—' if s.objective is None else f'{s.objective:g}%'}</td>"
            f'<td class="{cls}">{pct(s.availability)}</td><td>{_measured(report, s)}</td>'
            f"<td>{s.downtime_minutes:.1f}</td>"
            f"<td>{pct(s.budget_consumed, 1)}</td><td>{s.excluded_minutes}</td>"
            f'<td class="{cls}">{_met(s)}</td></tr>'
        )
        chart = charts.availability_bars(
            [(f"{report.month}-{d:02d}", a) for d, a in s.daily],
            objective=s.objective,
            title=f"{s.service}: daily availability {report.month}",
        )
        downs = (
            "".join(
                f"<li>{d.start:%Y-%m-%d %H:%M}–{d.end:%H:%M} UTC: {d.minutes:g} min</li>"
                for d in s.downtimes
            )
            or "<li>No downtime recorded.</li>"
        )
        alerts = "".join(
            f"<li>{escape(str(a['starts_at']))} {escape(str(a['alertname']))}"
            f" ({escape(str(a['severity']))}, {escape(str(a['status']))})</li>"
            for a in s.alerts
        )
        sections.append(
            f"<section><h2>{escape(s.service)}</h2>{chart}<h3>Downtime</h3><ul>{downs}</ul>"
            + (f"<h3>Alerts</h3><ul>{alerts}</ul>" if alerts else "")
            + "</section>"
        )
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>SLA report {escape(report.month)} {escape(report.environment)}</title>"
        f"{_style(stylesheet)}</head><body>"
        f"<h1>SLA report {escape(report.month)} — {escape(report.environment)}</h1>"
        f"<p>Period {report.start:%Y-%m-%d} to {report.end:%Y-%m-%d} (UTC). Availability is "
        "time-weighted from probe results; approved maintenance windows are excluded.</p>"
        "<table><tr><th>Service</th><th>Objective</th><th>Availability</th><th>Measured</th>"
        "<th>Downtime (min)"
        "</th><th>Budget consumed</th><th>Excluded (min)</th><th>SLA</th></tr>"
        + "".join(rows)
        + "</table>"
        + "".join(sections)
        + "</body></html>"
    )


def health_markdown(data: dict[str, Any]) -> str:
    """The morning health check report (see :mod:`opsbook.monitoring.health`)."""
    lines = [
        f"# Morning health check — {data['environment']}",
        "",
        f"Generated {data['generated']} UTC"
        + (f" for execution {data['execution_id']}" if data.get("execution_id") else ""),
        "",
        "## Probes",
        "",
        "| Service | Probe | Now | Last 24 h | Slowest (ms) | Hourly |",
        "|---|---|---|---|---|---|",
    ]
    for p in data["probes"]:
        lines.append(
            f"| {p['service']} | {p['probe']} | "
            f"{'ok' if p['ok'] else 'FAIL ' + (p['detail'] or '')}"
            f" | {pct(p['availability_24h'])} | {p['max_latency_ms']} |"
            f" `{charts.sparkline(p['hourly'])}` |"
        )
    lines += ["", "## Error budgets", ""]
    lines += [
        f"- {s['name']} ({s['objective']:g}%): remaining {pct(s['budget_remaining'], 1)}"
        + (f" ({s['budget_note']})" if s.get("budget_note") else "")
        + (f", **{s['alert']} alert**" if s["alert"] else "")
        for s in data["slos"]
    ] or ["- no SLOs declared"]
    lines += ["", "## Alerts in the last 24 h", ""]
    lines += [
        f"- {a['starts_at']} {a['alertname']} ({a['severity']}, {a['status']})"
        + (f", acknowledged by {a['acked_by']}" if a.get("acked_by") else "")
        for a in data["alerts"]
    ] or ["- none"]
    if data.get("resources"):
        lines += ["", "## Resource usage", ""]
        lines += [f"- {k}: {v}" for k, v in data["resources"].items()]
    lines += ["", "## Backups", "", f"- {data['backups']}", ""]
    verdict = "ready for business" if data["ok"] else "NOT ready: see the failures above"
    lines += [f"**Verdict: {verdict}.**", ""]
    return "\n".join(lines)


def health_html(data: dict[str, Any]) -> str:
    rows = []
    for p in data["probes"]:
        chart = charts.availability_bars(
            list(zip(data["hours"], p["hourly"], strict=True)),
            objective=None,
            title=f"{p['probe']}: hourly availability, last 24 h",
            width=240,
            height=30,
        )
        state = "ok" if p["ok"] else f"FAIL {escape(p['detail'] or '')}"
        rows.append(
            f"<tr><td>{escape(p['service'])}</td><td>{escape(p['probe'])}</td>"
            f'<td class="{"ok" if p["ok"] else "bad"}">{state}</td>'
            f"<td>{pct(p['availability_24h'])}</td><td>{p['max_latency_ms']}</td><td>{chart}</td></tr>"
        )
    slos = (
        "".join(
            f"<li>{escape(s['name'])} ({s['objective']:g}%): "
            f"remaining {pct(s['budget_remaining'], 1)}"
            + (f" ({escape(s['budget_note'])})" if s.get("budget_note") else "")
            + (f' <b class="bad">{escape(s["alert"])} alert</b>' if s["alert"] else "")
            + "</li>"
            for s in data["slos"]
        )
        or "<li>no SLOs declared</li>"
    )
    alerts = (
        "".join(
            f"<li>{escape(str(a['starts_at']))} {escape(str(a['alertname']))}"
            f" ({escape(str(a['severity']))}, {escape(str(a['status']))})</li>"
            for a in data["alerts"]
        )
        or "<li>none</li>"
    )
    verdict = "ready for business" if data["ok"] else "NOT ready: see the failures above"
    return (
        '<!doctype html><html><head><meta charset="utf-8">'
        f"<title>Morning health check {escape(data['environment'])}</title>"
        f"{_INLINE}</head><body>"
        f"<h1>Morning health check — {escape(data['environment'])}</h1>"
        f"<p>Generated {escape(data['generated'])} UTC.</p><h2>Probes</h2>"
        "<table><tr><th>Service</th><th>Probe</th><th>Now</th><th>Last 24 h</th>"
        "<th>Slowest (ms)</th><th>Hourly</th></tr>" + "".join(rows) + "</table>"
        f"<h2>Error budgets</h2><ul>{slos}</ul><h2>Alerts in the last 24 h</h2><ul>{alerts}</ul>"
        f"<h2>Backups</h2><p>{escape(data['backups'])}</p>"
        f'<p><b class="{"ok" if data["ok"] else "bad"}">Verdict: {verdict}.</b></p>'
        "</body></html>"
    )


def _measured(report: SlaReport, s: ServiceSla) -> str:
    """Hours with probe results, and their share of the month so far."""
    until = min(report.generated, report.end)
    period = max((until - report.start).total_seconds() / 60.0, 1.0)
    hours = s.covered_minutes / 60.0
    return f"{hours:.1f} h ({100.0 * s.covered_minutes / period:.1f}%)"
