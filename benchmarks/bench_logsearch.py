"""`opsbook logs search` over 1,000,000 JSON log lines (issue 12): goal <= 1 s.

Four service logs of 250,000 lines each (the sandbox's line format, two hours of traffic),
searched for `service=payment level=error` and for a free-text term with `--since 1h`. Baselines
in the same run: GNU `grep -c` of the same literal over the same files, and a naive Python loop
that parses every line as JSON.
"""

from __future__ import annotations

import json
import random
import statistics
import subprocess
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _common import report

LINES = 1_000_000
GOAL_S = 1.0


def generate(log_dir: Path) -> datetime:
    rng = random.Random(7)
    start = datetime.now(UTC) - timedelta(hours=2)
    per = LINES // 4
    for service in ("account", "transaction", "payment", "notification"):
        rows = []
        for i in range(per):
            ts = start + timedelta(seconds=7200 * i / per)
            level = "error" if rng.random() < 0.01 else "info"
            status = 500 if level == "error" else 200
            row = {
                "ts": ts.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": level,
                "service": service,
                "replica": f"{service}-a1b2c",
                "version": "1.4.2",
                "event": "request",
                "request_id": f"{rng.getrandbits(64):016x}",
                "method": "POST",
                "path": f"/{service}s",
                "status": status,
                "duration_ms": round(rng.random() * 40, 1),
            }
            if level == "error":
                row["error"] = "upstream reset by peer"
            rows.append(json.dumps(row))
        (log_dir / f"{service}.log").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return start


def timed(fn: object) -> float:
    t0 = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - t0


def main() -> int:
    from opsbook.troubleshoot.logsearch import search

    with tempfile.TemporaryDirectory(prefix="bench-logsearch-") as tmp:
        log_dir = Path(tmp)
        generate(log_dir)
        since = datetime.now(UTC) - timedelta(hours=3)
        recent = datetime.now(UTC) - timedelta(hours=1)
        files = sorted(str(p) for p in log_dir.glob("*.log"))
        structured, free, grep, naive = [], [], [], []
        counts: dict[str, int] = {}
        for _ in range(3):
            structured.append(
                timed(
                    lambda: counts.__setitem__(
                        "structured",
                        search(
                            log_dir=log_dir, query="service=payment level=error", since=since
                        ).matched,
                    )
                )
            )
            free.append(
                timed(
                    lambda: counts.__setitem__(
                        "free",
                        search(log_dir=log_dir, query='"upstream reset"', since=recent).matched,
                    )
                )
            )
            grep.append(
                timed(
                    lambda: subprocess.run(
                        ["grep", "-c", "upstream reset", *files], capture_output=True, check=False
                    )
                )
            )

        def parse_all() -> None:
            n = 0
            for f in files:
                with open(f, encoding="utf-8") as fh:
                    for line in fh:
                        row = json.loads(line)
                        n += row["service"] == "payment" and row["level"] == "error"
            counts["naive"] = n

        naive.append(timed(parse_all))
    s, f, g = statistics.median(structured), statistics.median(free), statistics.median(grep)
    return report(
        "logsearch_1m_lines",
        max(s, f) <= GOAL_S and counts["structured"] == counts["naive"],
        lines=LINES,
        goal_s=GOAL_S,
        structured_s=round(s, 3),
        free_text_since_1h_s=round(f, 3),
        grep_s=round(g, 3),
        naive_json_s=round(naive[0], 3),
        ratio_vs_grep=round(max(s, f) / g, 1) if g else None,
        matched=counts,
    )


if __name__ == "__main__":
    raise SystemExit(main())
