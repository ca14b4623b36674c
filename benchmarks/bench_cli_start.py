"""CLI start-up: median wall time of `opsbook --help`. Goal: <= 150 ms. Baseline in the same run:
`python -c pass` (the interpreter's own start)."""

from __future__ import annotations

import sys
from pathlib import Path

from _common import median, report, timed

BIN = Path(sys.executable).parent / "opsbook"


def main() -> int:
    cmd = (
        [str(BIN), "--help"]
        if BIN.exists()
        else [sys.executable, "-m", "opsbook.cli.main", "--help"]
    )
    timed(cmd, repeat=2)
    ours = timed(cmd, repeat=15)
    base = timed([sys.executable, "-c", "pass"], repeat=15)
    ms = median(ours) * 1000
    return report(
        "cli_start_help",
        ms <= 150,
        median_ms=round(ms, 1),
        python_start_ms=round(median(base) * 1000, 1),
        ratio_to_python=round(median(ours) / median(base), 2),
        goal_ms=150,
    )


if __name__ == "__main__":
    sys.exit(main())
