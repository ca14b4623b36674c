"""Engine overhead: `opsbook run` of a 200-step runbook of `true`, against a bash script that
runs `bash -c true` 200 times, measured in the same run. Goal: ratio <= 2.5."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from _common import OPSBOOK, make_workspace, median, report, timed

STEPS = 200


def runbook() -> str:
    head = (
        "---\nid: bench\ntitle: Bench\n---\n\n# Bench\n\n## Steps\n\n"
        "```yaml procedure\npermissions: [operator]\n```\n\n"
    )
    body = "".join(f"### Step {i}\n\n```sh\ntrue\n```\n\n" for i in range(STEPS))
    return head + body


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        ws = make_workspace(Path(tmp) / "ws", {"bench.md": runbook()})
        script = Path(tmp) / "baseline.sh"
        script.write_text(f"for i in $(seq {STEPS}); do bash -c true; done\n")
        env = {**os.environ, "OPSBOOK_WORKSPACE": str(ws)}
        # Warm up both (page cache, .pyc files, the database schema).
        timed(["bash", str(script)], repeat=1)
        timed([*OPSBOOK, "run", "bench#steps"], repeat=1, env=env)
        base = timed(["bash", str(script)], repeat=5)
        ours = timed([*OPSBOOK, "run", "bench#steps"], repeat=5, env=env)
    ratio = median(ours) / median(base)
    return report(
        "engine_overhead_200_steps",
        ratio <= 2.5,
        opsbook_s=round(median(ours), 3),
        bash_s=round(median(base), 3),
        ratio=round(ratio, 2),
        goal="<= 2.5",
    )


if __name__ == "__main__":
    sys.exit(main())
