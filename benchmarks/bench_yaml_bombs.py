"""The YAML alias bomb in every kind of workspace YAML file (issue 16 §3), and what the safe
loader costs on the files ``opsbook init`` writes.

- ``yaml_bomb_<kind>``: the 8-level bomb appended to one file of a fresh ``opsbook init``
  workspace; the command that reads the file runs in a child process. Goals: refused (exit 2,
  the alias fix in its output), < 100 MB peak RSS, and no slower than the same command with a
  one-line syntax error in the same file (1.5x + 0.25 s: the command's own start-up, e.g.
  opening the database, dominates both; before the fix the bomb took gigabytes).
- ``yaml_safe_load_overhead``: :func:`opsbook.yamlsafe.load` against ``yaml.safe_load`` on
  the shipped ``sandbox.yaml``, ``contacts.yaml`` and ``incident_policy.yaml`` (median of 30
  each). Goal: at most 1.5x ``yaml.safe_load``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path
from typing import Any

from _common import OPSBOOK, median, report, timed_fn

GOAL_VS_SYNTAX = 1.5  # the bomb may cost at most 1.5x a one-line syntax error in the file
GOAL_SLACK_S = 0.25  # plus this (2 cores shared; CLI start-up dominates both)
GOAL_MB = 100.0
GOAL_OVERHEAD = 1.5

CHILD = textwrap.dedent(
    """
    import json, resource, subprocess, sys, time

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))

    t = time.perf_counter()
    proc = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=300,
                          preexec_fn=cap, stdin=subprocess.DEVNULL)
    seconds = time.perf_counter() - t
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({"rc": proc.returncode, "out": proc.stdout + proc.stderr,
                      "seconds": seconds, "maxrss_kb": usage.ru_maxrss}))
    """
)

CASES = {
    "contacts": ("contacts.yaml", ("incidents", "declare", "B", "--severity", "SEV4")),
    "incident_policy": (
        "incident_policy.yaml",
        ("incidents", "declare", "B", "--severity", "SEV4"),
    ),
    "monitoring_config": ("environments/sandbox.yaml", ("monitor", "check", "--env", "sandbox")),
    "sandbox_config": ("environments/sandbox.yaml", ("sandbox", "status")),
}


def bomb() -> str:
    lines = ["l0: &a0 [" + ",".join(["lol"] * 9) + "]"]
    for i in range(1, 8):
        lines.append(f"l{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def run_child(cmd: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, *cmd], capture_output=True, text=True, check=True
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def bomb_results(tmp: Path) -> int:
    failures = 0
    for kind, (file, args) in CASES.items():
        seconds = {}
        for variant, tail in (("syntax", "broken: [\n"), ("bomb", bomb())):
            ws = tmp / f"{kind}-{variant}"
            subprocess.run([*OPSBOOK, "init", str(ws)], check=True, capture_output=True)
            path = ws / file
            path.write_text(path.read_text(encoding="utf-8") + "\n" + tail, encoding="utf-8")
            result = run_child([*OPSBOOK, "--workspace", str(ws), *args])
            seconds[variant] = result["seconds"]
        mb = result["maxrss_kb"] / 1024
        refused = result["rc"] == 2 and "YAML aliases are not allowed" in result["out"]
        goal_s = seconds["syntax"] * GOAL_VS_SYNTAX + GOAL_SLACK_S
        ok = refused and seconds["bomb"] <= goal_s and mb < GOAL_MB
        failures += report(
            f"yaml_bomb_{kind}",
            ok,
            command=" ".join(args),
            refused=refused,
            seconds=round(seconds["bomb"], 3),
            syntax_error_seconds=round(seconds["syntax"], 3),
            peak_rss_mb=round(mb, 1),
            goal_seconds=round(goal_s, 3),
            goal_rss_mb=GOAL_MB,
        )
    return failures


def overhead_result(tmp: Path) -> int:
    import yaml

    from opsbook import yamlsafe

    ws = tmp / "overhead"
    subprocess.run([*OPSBOOK, "init", str(ws)], check=True, capture_output=True)
    texts = [
        (ws / name).read_text(encoding="utf-8")
        for name in ("environments/sandbox.yaml", "contacts.yaml", "incident_policy.yaml")
    ]

    def plain() -> None:
        for text in texts:
            yaml.safe_load(text)

    def safe() -> None:
        for text in texts:
            yamlsafe.load(text, source="f.yaml", what="f", kind="f")

    plain()  # warm up (imports, the cached loader class)
    safe()
    base = median(timed_fn(plain, repeat=30))
    ours = median(timed_fn(safe, repeat=30))
    ratio = ours / base
    return report(
        "yaml_safe_load_overhead",
        ratio <= GOAL_OVERHEAD,
        safe_load_ms=round(base * 1000, 2),
        yamlsafe_ms=round(ours * 1000, 2),
        ratio=round(ratio, 2),
        goal_ratio=GOAL_OVERHEAD,
    )


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="opsbook-bench-yaml-"))
    failures = bomb_results(tmp) + overhead_result(tmp)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
