"""Engine overhead: `opsbook run` of runbooks of N `sh` steps of `true`, against shell scripts
that start a shell N times, measured in the same run.

`sh` steps run under `/bin/sh` (dash on Debian), so a script of `sh -c true` lines is the fair
baseline; `bash -c true` (bash starts slower) is the one the goals were first written against,
and both ratios are printed.

- `engine_overhead_200_steps`: 200 plain steps; goal: <= 2.5x the `bash -c true` script.
- `engine_expect_200_steps`: 200 steps each with an `expect` block `exit_code == 0` (what the
  documentation standards ask for); goal: <= 2.5x the `bash -c true` script.
- `engine_expect_per_step`: the same at 100/200/400/800 steps; the cost of a step at N steps is
  (t(N) - t(1)) / (N - 1), t(1) being a one-step runbook (start-up and the run's own
  bookkeeping). Goal: at 800 steps within 10 % of that at 100 (no growth with run length).

Runs alternate between the variants, so load from other processes spreads over all of them.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

from _common import OPSBOOK, make_workspace, median, report, timed

SIZES = (100, 200, 400, 800)
REPEAT = 5


def runbook(steps: int, *, expect: bool) -> str:
    head = (
        "---\nid: bench\ntitle: Bench\n---\n\n# Bench\n\n## Steps\n\n"
        "```yaml procedure\npermissions: [operator]\n```\n\n"
    )
    check = "```expect\nexit_code == 0\n```\n\n" if expect else ""
    body = "".join(f"### Step {i}\n\n```sh\ntrue\n```\n\n{check}" for i in range(steps))
    return head + body


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        runs: dict[str, list[str]] = {}
        for shell in ("bash", "sh"):
            for n in (200, 800):
                script = root / f"{shell}-{n}.sh"
                script.write_text(f"for i in $(seq {n}); do {shell} -c true; done\n")
                runs[f"{shell}-{n}"] = [shell, str(script)]
        for name, steps, expect in [
            ("plain-200", 200, False),
            ("expect-1", 1, True),
            *((f"expect-{n}", n, True) for n in SIZES),
        ]:
            ws = make_workspace(root / name, {"bench.md": runbook(steps, expect=expect)})
            runs[name] = [*OPSBOOK, "--workspace", str(ws), "run", "bench#steps"]
        env = {**os.environ}
        times: dict[str, list[float]] = {name: [] for name in runs}
        for cmd in runs.values():  # warm up: page cache, .pyc files, database schema
            timed(cmd, repeat=1, env=env)
        for _ in range(REPEAT):
            for name, cmd in runs.items():
                times[name] += timed(cmd, repeat=1, env=env)
    t = {name: median(values) for name, values in times.items()}

    plain_ratio = t["plain-200"] / t["bash-200"]
    failed = report(
        "engine_overhead_200_steps",
        plain_ratio <= 2.5,
        opsbook_s=round(t["plain-200"], 3),
        bash_s=round(t["bash-200"], 3),
        sh_s=round(t["sh-200"], 3),
        ratio=round(plain_ratio, 2),
        ratio_sh=round(t["plain-200"] / t["sh-200"], 2),
        goal="<= 2.5 (against bash -c true)",
    )
    expect_ratio = t["expect-200"] / t["bash-200"]
    failed |= report(
        "engine_expect_200_steps",
        expect_ratio <= 2.5,
        opsbook_s=round(t["expect-200"], 3),
        bash_s=round(t["bash-200"], 3),
        sh_s=round(t["sh-200"], 3),
        ratio=round(expect_ratio, 2),
        ratio_sh=round(t["expect-200"] / t["sh-200"], 2),
        goal="<= 2.5 (against bash -c true)",
    )
    per_step = {n: (t[f"expect-{n}"] - t["expect-1"]) / (n - 1) for n in SIZES}
    growth = per_step[800] / per_step[100]
    failed |= report(
        "engine_expect_per_step",
        growth <= 1.10,
        seconds={str(n): round(t[f"expect-{n}"], 3) for n in SIZES},
        one_step_s=round(t["expect-1"], 3),
        per_step_ms={str(n): round(per_step[n] * 1000, 2) for n in SIZES},
        growth_800_vs_100=round(growth, 2),
        sh_800_s=round(t["sh-800"], 3),
        ratio_sh_800=round(t["expect-800"] / t["sh-800"], 2),
        goal="per-step cost at 800 <= 1.10x that at 100",
    )
    return failed


if __name__ == "__main__":
    sys.exit(main())
