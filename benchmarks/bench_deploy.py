"""Deployments on the sandbox with the load generator running throughout (issue 11), through
the real CLI (`opsbook deploy`, a second person approving) and the workspace's shipped
`deployments.yaml` (canary steps 10/25/50 %, analysis of the error ratio, p99 latency and the
payment success rate).

Goals:
- a rolling and a blue-green deployment of a good release: 0 failed customer requests;
- a canary of the release that fails payments (1.5.2) is detected and all traffic is back on the
  old version within 60 s of the canary receiving traffic, with <= 0.5 % of all customer
  requests in the rollout window failed;
- reported: the time from `opsbook deploy` to full promotion of a good canary, and the load's
  failed requests in the same run without any deployment (the baseline).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import OPSBOOK, ROOT, report

from opsbook.sandbox.config import free_ports

RATE = 40.0  # customer requests a second (the sandbox load generator's mix)
GOAL_DETECT_S = 60.0
GOAL_FAILED_SHARE = 0.005


_ports = free_ports


def ob(root: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(root), "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(
        [*OPSBOOK, *args], capture_output=True, text=True, env=env, timeout=timeout, check=False
    )


class Load:
    """The sandbox load generator in a thread for ``duration`` seconds."""

    def __init__(self, urls: dict[str, str], duration: float) -> None:
        self.urls, self.duration = urls, duration
        self.result: dict[str, Any] = {}
        self.timeline: list[tuple[float, int]] = []  # (sent at, status or 0) per request
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        from opsbook.sandbox.load import run_load

        rep = asyncio.run(
            run_load(
                urls=self.urls,
                rate=RATE,
                duration=self.duration,
                seed=11,
                timeline=self.timeline,
            )
        )
        self.result = rep.as_dict()

    def __enter__(self) -> Load:
        self.thread.start()
        time.sleep(2.0)  # the generator's accounts are open before the deployment starts
        return self

    def __exit__(self, *exc: object) -> None:
        self.thread.join(self.duration + 120)

    def window(self, start: float, end: float) -> tuple[int, int]:
        """(requests sent, failed: 5xx or no answer) between two wall-clock times."""
        inside = [code for at, code in self.timeline if start <= at <= end]
        return len(inside), sum(1 for c in inside if c == 0 or c >= 500)


def deploy(root: Path, service: str, version: str, strategy: str, ticket: str) -> dict[str, Any]:
    """`opsbook deploy` as ops-lead, approved by dba, resumed to the end."""
    t0 = time.monotonic()
    started = ob(
        root,
        "deploy",
        service,
        version,
        "--strategy",
        strategy,
        "--ticket",
        ticket,
        "--reason",
        "bench",
        "--yes",
        "--json",
        "--as",
        "ops-lead",
    )
    if started.returncode not in (0, 1, 3):
        raise RuntimeError(started.stdout + started.stderr)
    execution = json.loads(started.stdout)
    eid = execution["id"]
    promoted_at = None
    for _ in range(8):  # approve (a second person), then confirm the closing checklist
        if execution["state"] in ("succeeded", "failed", "aborted"):
            break
        waiting = [s for s in execution["steps"] if s["state"] == "waiting"]
        if waiting and waiting[-1]["kind"] == "approval":
            approved = ob(root, "approve", eid, "--as", "dba")
            if approved.returncode != 0:
                raise RuntimeError(approved.stdout + approved.stderr)
            step = ob(root, "executions", "resume", eid, "--as", "ops-lead", "--json")
        else:
            promoted_at = promoted_at or time.monotonic()
            step = ob(
                root, "executions", "confirm", eid, "--as", "ops-lead", "--note", ticket, "--json"
            )
        if step.returncode not in (0, 1, 3):
            raise RuntimeError(step.stdout + step.stderr)
        execution = json.loads(step.stdout)
    rollout = next(s for s in execution["steps"] if s["step"] == "rollout")
    return {
        "state": execution["state"],
        # from `opsbook deploy` to the rollout's end (before a person ticks the closing list)
        "seconds": round((promoted_at or time.monotonic()) - t0, 2),
        "rollout": rollout["result"]["fields"]["result"],
    }


def checklist(root: Path, service: str, version: str) -> None:
    out = ob(
        root,
        "run",
        "deployment-procedures#pre-deployment-checklist",
        "--env",
        "sandbox",
        "--param",
        f"service={service}",
        "--param",
        f"version={version}",
        "--yes",
        "--as",
        "ops-lead",
        "--json",
    )
    if out.returncode not in (0, 3):
        raise RuntimeError(out.stdout + out.stderr)
    execution = json.loads(out.stdout)
    if execution["state"] != "succeeded":  # manual checklist items: a person confirms them
        for _ in range(6):
            done = ob(
                root,
                "executions",
                "confirm",
                execution["id"],
                "--as",
                "ops-lead",
                "--note",
                "CHG-1",
                "--json",
            )
            execution = json.loads(done.stdout)
            if execution["state"] in ("succeeded", "failed", "aborted"):
                break
    if execution["state"] != "succeeded":
        raise RuntimeError(f"checklist {service} {version}: {execution['state']}")


def _epoch(iso: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def failed(load: dict[str, Any]) -> int:
    return int(load.get("errors", 0))


def main() -> int:
    from opsbook.sandbox import lifecycle
    from opsbook.workspace import Workspace
    from opsbook.workspace.init import init_workspace

    tmp = Path(tempfile.mkdtemp(prefix="bench-deploy-"))
    root = tmp / "bank"
    init_workspace(target=root)
    env_file = root / "environments" / "sandbox.yaml"
    ports = _ports(6)
    env_file.write_text(
        re.sub(r"\b1810([0-5])\b", lambda m: str(ports[int(m.group(1))]), env_file.read_text())
    )
    (root / "change_calendar.yaml").write_text("freezes: []\n")  # any hour, any day
    ws = Workspace.load(root)
    lifecycle.up(workspace=ws)
    out: dict[str, Any] = {"rate": RATE}
    try:
        urls = {s["name"]: s["url"] for s in lifecycle.status(workspace=ws)["services"]}
        for service, version in (
            ("account", "1.5.0"),
            ("notification", "1.5.0"),
            ("payment", "1.5.0"),
            ("payment", "1.5.2"),
        ):
            checklist(root, service, version)
        with Load(urls, 30) as base:
            pass
        out["baseline_failed_requests"] = failed(base.result)
        out["baseline_sent"] = base.result.get("sent")
        with Load(urls, 40) as load:
            rolling = deploy(root, "account", "1.5.0", "rolling", "CHG-201")
        out["rolling"] = {
            "state": rolling["state"],
            "seconds": rolling["seconds"],
            "failed_requests": failed(load.result),
            "sent": load.result["sent"],
        }
        with Load(urls, 40) as load:
            bg = deploy(root, "notification", "1.5.0", "blue-green", "CHG-202")
        out["blue_green"] = {
            "state": bg["state"],
            "seconds": bg["seconds"],
            "failed_requests": failed(load.result),
            "sent": load.result["sent"],
        }
        with Load(urls, 75) as load:
            good = deploy(root, "payment", "1.5.0", "canary", "CHG-203")
        out["canary_good"] = {
            "state": good["state"],
            "outcome": good["rollout"]["outcome"],
            "deploy_to_promotion_s": good["seconds"],
            "rollout_s": good["rollout"]["seconds"],
            "failed_requests": failed(load.result),
            "sent": load.result["sent"],
        }
        with Load(urls, 75) as load:
            bad = deploy(root, "payment", "1.5.2", "canary", "CHG-204")
        decisions = bad["rollout"]["decisions"]
        aborted = next((d for d in decisions if d["kind"] == "aborted"), {})
        begun = next((d for d in decisions if d["kind"] == "started"), {})
        # the rollout window: from the canary's start to the abort, plus 1 s for requests in
        # flight on the canary when the traffic returned
        sent, bad_requests = (
            load.window(_epoch(begun["at"]), _epoch(aborted["at"]) + 1.0)
            if begun and aborted
            else (int(load.result["sent"]), failed(load.result))
        )
        out["canary_bad"] = {
            "outcome": bad["rollout"]["outcome"],
            "detected_after_first_traffic_s": aborted.get("seconds_since_first_traffic"),
            "aborted_at_weight": aborted.get("weight"),
            "window_sent": sent,
            "window_failed": bad_requests,
            "failed_share": round(bad_requests / sent, 5) if sent else None,
            "load_sent": int(load.result["sent"]),
            "load_failed": failed(load.result),
            "version_after": next(
                s["version"]
                for s in lifecycle.status(workspace=ws)["services"]
                if s["name"] == "payment"
            ),
        }
    finally:
        lifecycle.down(workspace=ws)
    cb = out["canary_bad"]
    met = (
        out["rolling"]["failed_requests"] == 0
        and out["rolling"]["state"] == "succeeded"
        and out["blue_green"]["failed_requests"] == 0
        and out["blue_green"]["state"] == "succeeded"
        and out["canary_good"]["outcome"] == "promoted"
        and cb["outcome"] == "aborted"
        and cb["detected_after_first_traffic_s"] is not None
        and cb["detected_after_first_traffic_s"] <= GOAL_DETECT_S
        and cb["failed_share"] is not None
        and cb["failed_share"] <= GOAL_FAILED_SHARE
        and cb["version_after"] == "1.5.0"
    )
    return report(
        "bench_deploy",
        bool(met),
        goal={
            "failed_requests_good": 0,
            "detect_s_max": GOAL_DETECT_S,
            "failed_share_max": GOAL_FAILED_SHARE,
        },
        **out,
    )


if __name__ == "__main__":
    sys.exit(main())
