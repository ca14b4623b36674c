"""What the services' logs say about the last minute (issue 12): per service, the requests and
how many failed or were slow, the warnings and errors clustered into templates with counts
(drain3, masking ids and numbers), and the templates that are new against the minutes before.

Only the tail of each JSON-lines log is read (the newest lines; files are appended in time
order). The supervisor's record of injected faults (``sandbox.fault.*`` events) is never read:
diagnosis works from symptoms, not from the answer (the honesty rule of issue 12).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson

TAIL_BYTES = 3 * 1024 * 1024
SLOW_MS = 1000.0
SKIP_PATHS = ("/health", "/metrics", "/ready")


@dataclass(frozen=True)
class Template:
    template: str
    count: int
    level: str | None
    new: bool
    example: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "template": self.template,
            "count": self.count,
            "level": self.level,
            "new": self.new,
            "example": self.example,
        }


def _miner() -> Any:
    from drain3 import TemplateMiner  # noqa: PLC0415
    from drain3.masking import MaskingInstruction  # noqa: PLC0415
    from drain3.template_miner_config import TemplateMinerConfig  # noqa: PLC0415

    config = TemplateMinerConfig()
    config.profiling_enabled = False
    config.drain_sim_th = 0.5
    config.masking_instructions = [
        MaskingInstruction(r"\b[0-9a-f]{8,}\b", "ID"),
        MaskingInstruction(r"\b\d+(\.\d+)?\b", "NUM"),
        MaskingInstruction(r"\b\d{1,3}(\.\d{1,3}){3}\b", "IP"),
    ]
    return TemplateMiner(config=config)


def message_of(line: dict[str, Any]) -> str:
    parts = [str(line.get("event") or "")]
    for key in ("error", "message", "reason", "path"):
        if line.get(key):
            parts.append(f"{key}={str(line[key]).splitlines()[0][:160]}")
    if line.get("status"):
        parts.append(f"status={line['status']}")
    return " ".join(parts)


def mine(
    lines: Iterable[dict[str, Any] | str], *, baseline: Iterable[dict[str, Any] | str] = ()
) -> list[Template]:
    """Cluster log lines into templates (drain3), most frequent first; ``new`` marks a
    template that none of the ``baseline`` lines fits."""
    miner = _miner()
    seen_before: set[int] = set()
    for b in baseline:
        result = miner.add_log_message(b if isinstance(b, str) else message_of(b))
        seen_before.add(int(result["cluster_id"]))
    counts: Counter[int] = Counter()
    levels: dict[int, str | None] = {}
    examples: dict[int, str] = {}
    for raw in lines:
        text = raw if isinstance(raw, str) else message_of(raw)
        result = miner.add_log_message(text)
        cid = int(result["cluster_id"])
        counts[cid] += 1
        if not isinstance(raw, str):
            levels.setdefault(cid, str(raw.get("level")) if raw.get("level") else None)
        examples.setdefault(cid, text[:300])
    clusters = {c.cluster_id: c for c in miner.drain.clusters}
    return [
        Template(
            template=clusters[cid].get_template() if cid in clusters else examples[cid],
            count=n,
            level=levels.get(cid),
            new=cid not in seen_before,
            example=examples[cid],
        )
        for cid, n in counts.most_common()
    ]


def tail_lines(path: Path, *, since: str) -> list[dict[str, Any]]:
    """The JSON lines of ``path`` at or after ``since`` (ISO text), from its last bytes."""
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            if size > TAIL_BYTES:
                fh.seek(size - TAIL_BYTES)
                fh.readline()  # a partial line
            data = fh.read()
    except OSError:
        return []
    out: list[dict[str, Any]] = []
    for raw in data.splitlines():
        if not raw.startswith(b"{"):
            continue
        try:
            line = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(line, dict) and str(line.get("ts", "")) >= since:
            out.append(line)
    return out


def _iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


FRESH_S = 5.0  # "now": the newest seconds of the window


def summarise(
    lines: list[dict[str, Any]], baseline: list[dict[str, Any]], *, fresh_since: str = ""
) -> dict[str, Any]:
    requests = [
        x
        for x in lines
        if x.get("event") == "request" and not str(x.get("path", "")).startswith(SKIP_PATHS)
    ]
    fresh = [x for x in requests if str(x.get("ts")) >= fresh_since]
    statuses = Counter(int(x.get("status") or 0) // 100 for x in requests)
    durations = sorted(float(x.get("duration_ms") or 0) for x in requests)
    p95 = durations[int(0.95 * (len(durations) - 1))] if durations else None
    notable = [
        x for x in lines if x.get("level") in ("warning", "error") and x.get("event") != "request"
    ]
    base_notable = [
        x
        for x in baseline
        if x.get("level") in ("warning", "error") and x.get("event") != "request"
    ]
    failed_logins = [x for x in lines if x.get("event") == "auth.login_failed"]
    sources = Counter(str(x.get("src_ip")) for x in failed_logins if x.get("src_ip"))
    return {
        "lines": len(lines),
        "requests": len(requests),
        "errors_5xx": statuses.get(5, 0),
        "status_codes": dict(Counter(str(x.get("status")) for x in requests if x.get("status"))),
        "slow": sum(1 for d in durations if d >= SLOW_MS),
        "p95_ms": round(p95, 1) if p95 is not None else None,
        "events": dict(Counter(str(x.get("event")) for x in notable).most_common(12)),
        "templates": [t.to_dict() for t in mine(notable[-2000:], baseline=base_notable[-2000:])][
            :10
        ],
        "fresh": {
            "seconds": FRESH_S,
            "requests": len(fresh),
            "http_500": sum(1 for x in fresh if int(x.get("status") or 0) == 500),
            "slow": sum(1 for x in fresh if float(x.get("duration_ms") or 0) >= SLOW_MS),
        },
        "failed_logins": len(failed_logins),
        "failed_login_sources": dict(sources.most_common(5)),
    }


def gather_logs(
    log_dir: Path,
    *,
    services: Iterable[str],
    window: float = 30.0,
    now: datetime | None = None,
    replicas: dict[str, set[str]] | None = None,
) -> dict[str, Any]:
    """Per service: the last ``window`` seconds summarised, against the ten minutes before.
    With ``replicas`` (the replicas running now, per service), lines of replicas that are gone
    (restarted, rolled back) are history: they count in the baseline, not in the window."""
    end = now or datetime.now(UTC)
    since = _iso(end - timedelta(seconds=window))
    base_since = _iso(end - timedelta(seconds=window + 600))
    out: dict[str, Any] = {"window_s": window}
    supervisor = [
        x
        for x in tail_lines(log_dir / "supervisor.log", since=base_since)
        if not str(x.get("event", "")).startswith("sandbox.fault")  # the fault record: never
    ]
    for name in services:
        path = log_dir / f"{name}.log"
        every = tail_lines(path, since=base_since) if path.is_file() else []
        live = (replicas or {}).get(name)

        def current(x: dict[str, Any], live: set[str] | None = live) -> bool:
            return not live or not x.get("replica") or str(x.get("replica")) in live

        recent = [x for x in every if str(x.get("ts")) >= since and current(x)]
        base = [x for x in every if str(x.get("ts")) < since or not current(x)]
        exits = [
            x
            for x in supervisor
            if str(x.get("ts")) >= since
            and x.get("event") == "process exited"
            and str(x.get("name", "")).startswith(f"{name}-")
        ]
        summary = summarise(recent, base, fresh_since=_iso(end - timedelta(seconds=FRESH_S)))
        summary["exits"] = [
            {"ts": x.get("ts"), "exit_code": x.get("exit_code"), "reason": x.get("reason")}
            for x in exits
        ]
        summary["file"] = str(path) if os.path.exists(path) else None
        out[name] = summary
    return out
