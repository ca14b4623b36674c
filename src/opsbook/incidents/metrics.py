"""`opsbook incidents report`: MTTA, MTTR, time to detect; median and p90 by severity; counts
by severity and service. Drills are excluded."""

from __future__ import annotations

import math
from collections import Counter
from datetime import UTC, date, datetime
from typing import Any

from opsbook.db import Database
from opsbook.incidents.model import SEVERITIES, Incident
from opsbook.incidents.review import actions, metrics_of


def percentile(values: list[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100) of ``values``; None when empty."""
    if not values:
        return None
    s = sorted(values)
    k = max(1, math.ceil(p / 100 * len(s)))
    return s[k - 1]


def median(values: list[float]) -> float | None:
    if not values:
        return None
    s = sorted(values)
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def _stats(values: list[float]) -> dict[str, Any]:
    return {
        "count": len(values),
        "mean_s": sum(values) / len(values) if values else None,
        "median_s": median(values),
        "p90_s": percentile(values, 90),
    }


def report(
    *, db: Database, since: str, until: str | None = None, today: date | None = None
) -> dict[str, Any]:
    sql = "SELECT * FROM incidents WHERE drill = 0 AND declared_at >= ?"
    args: list[Any] = [since]
    if until:
        sql += " AND declared_at < ?"
        args.append(until)
    incs = [Incident.from_row(r) for r in db.query(sql + " ORDER BY id", args)]
    drills = db.one(
        "SELECT COUNT(*) AS n FROM incidents WHERE drill = 1 AND declared_at >= ?", (since,)
    )
    by_sev: dict[str, Any] = {}
    overall: dict[str, list[float]] = {"mtta": [], "mttr": [], "ttd": []}
    for sev in SEVERITIES:
        sub = [i for i in incs if i.severity == sev]
        vals: dict[str, list[float]] = {"mtta": [], "mttr": [], "ttd": []}
        for inc in sub:
            m = metrics_of(inc)
            for name, key in (
                ("mtta", "time_to_acknowledge_s"),
                ("mttr", "time_to_resolve_s"),
                ("ttd", "time_to_detect_s"),
            ):
                v = m[key]
                if v is not None:
                    vals[name].append(v)
                    overall[name].append(v)
        by_sev[sev] = {"incidents": len(sub), **{k: _stats(v) for k, v in vals.items()}}
    services: Counter[str] = Counter(s for i in incs for s in i.services)
    overdue = actions(db=db, overdue_on=today or datetime.now(UTC).date())
    return {
        "since": since,
        "until": until,
        "incidents": len(incs),
        "drills_excluded": int(drills["n"]) if drills else 0,
        "open": sum(1 for i in incs if i.is_open),
        "overall": {k: _stats(v) for k, v in overall.items()},
        "by_severity": by_sev,
        "by_service": dict(sorted(services.items())),
        "overdue_actions": [
            {
                "id": a["id"],
                "incident": f"INC-{a['incident_id']}",
                "title": a["title"],
                "owner": a["owner"],
                "due": a["due_date"],
            }
            for a in overdue
        ],
    }


def _m(v: float | None) -> str:
    return "-" if v is None else (f"{v:.0f}s" if v < 120 else f"{v / 60:.1f}m")


def parse_since(text: str) -> str:
    """``30d``, ``12h``, ``90m`` (ago) or an ISO 8601 time, in the stored format."""
    import re  # noqa: PLC0415
    from datetime import timedelta  # noqa: PLC0415

    from opsbook.incidents.model import fmt_ts, normalise_ts  # noqa: PLC0415

    m = re.fullmatch(r"(\d+)([dhm])", text.strip())
    if m:
        unit = {"d": "days", "h": "hours", "m": "minutes"}[m.group(2)]
        return fmt_ts(datetime.now(UTC) - timedelta(**{unit: int(m.group(1))}))
    return normalise_ts(text, "since")


def render_text(data: dict[str, Any], since: str) -> str:
    lines = [
        f"{data['incidents']} incidents since {since} "
        f"({data['drills_excluded']} drills excluded, {data['open']} open)"
    ]
    for sev, s in data["by_severity"].items():
        lines.append(
            f"  {sev}: {s['incidents']:>3}  MTTA median {_m(s['mtta']['median_s'])} p90 "
            f"{_m(s['mtta']['p90_s'])}  MTTR median {_m(s['mttr']['median_s'])} p90 "
            f"{_m(s['mttr']['p90_s'])}"
        )
    if data["by_service"]:
        services = ", ".join(f"{k} {v}" for k, v in data["by_service"].items())
        lines.append(f"  by service: {services}")
    for a in data["overdue_actions"]:
        lines.append(
            f"  overdue: {a['incident']} #{a['id']} {a['title']} ({a['owner']}, due {a['due']})"
        )
    return "\n".join(lines) + "\n"
