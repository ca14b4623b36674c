"""Drive a procedure through the real CLI to its end: a person confirms every manual step and
the right people approve every approval step, as operators would.

The starter is the first user in opsbook.toml allowed to start the procedure; approvers are the
next users holding one of the approval step's roles (never the starter: four eyes).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from opsbook.runbooks.catalogue import load_catalogue
from opsbook.runbooks.model import Procedure

REPO = Path(__file__).resolve().parents[2]
TERMINAL = ("succeeded", "failed", "aborted")


@dataclass
class Driver:
    root: Path
    fake_platform: bool = True
    first_exit: int | None = None  # exit code of the last `opsbook run`

    def ob(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        module = "tests.workspace.fake_cli" if self.fake_platform else "opsbook.cli.main"
        env = {**os.environ, "OPSBOOK_WORKSPACE": str(self.root), "COLUMNS": "200"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
        return subprocess.run(
            [sys.executable, "-m", module, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=REPO,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )

    def users(self) -> dict[str, list[str]]:
        config = tomllib.loads((self.root / "opsbook.toml").read_text(encoding="utf-8"))
        return {str(k): [str(r) for r in v] for k, v in config["users"].items()}

    def someone_with(self, roles: tuple[str, ...], *, besides: tuple[str, ...] = ()) -> list[str]:
        return [
            user
            for user, held in self.users().items()
            if user not in besides and (not roles or set(roles) & set(held))
        ]

    def show(self, execution_id: str) -> dict[str, Any]:
        done = self.ob("executions", "show", execution_id, "--json")
        assert done.returncode == 0, done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data

    def run(
        self, ref: str, params: dict[str, str] | None = None, rounds: int = 12
    ) -> dict[str, Any]:
        """Start ``ref`` on the sandbox and act on every wait until it ends; the execution."""
        _, proc = load_catalogue(self.root / "runbooks").resolve(ref)
        starter = self.someone_with(proc.permissions)[0]
        args = [f"--param={k}={v}" for k, v in (params or {}).items()]
        started = self.ob("run", ref, "--env", "sandbox", "--yes", "--json", "--as", starter, *args)
        assert started.returncode in (0, 1, 3), started.stdout + started.stderr
        self.first_exit = started.returncode
        execution: dict[str, Any] = json.loads(started.stdout)
        for _ in range(rounds):
            if execution["state"] in TERMINAL:
                return execution
            execution = self._act(execution, proc, starter)
        raise AssertionError(f"{ref} did not finish: {execution['state_name']}")

    def _act(self, execution: dict[str, Any], proc: Procedure, starter: str) -> dict[str, Any]:
        """Do what the waiting step needs; the execution afterwards."""
        eid = execution["id"]
        waits = [s["step"] for s in execution.get("steps", []) if s["state"] == "waiting"]
        waiting = execution.get("waiting_step") or (waits[-1] if waits else None)
        step = proc.step(waiting) if waiting else None
        assert step is not None, f"{eid} waits ({execution['state_name']}) but not at a step"
        if step.approval is None:
            done = self.ob(
                "executions", "confirm", eid, "--as", starter, "--note", "TEST-1", "--json"
            )
        else:
            approvers = self.someone_with(step.approval.roles, besides=(starter,))
            assert len(approvers) >= step.approval.quorum, f"not enough approvers for {waiting}"
            for approver in approvers[: step.approval.quorum]:
                approved = self.ob("approve", eid, "--as", approver)
                assert approved.returncode == 0, approved.stdout + approved.stderr
            done = self.ob("executions", "resume", eid, "--as", starter, "--json")
        assert done.returncode in (0, 1, 3), done.stdout + done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        return data


def failed_steps(execution: dict[str, Any]) -> list[tuple[str, Any]]:
    """The failed steps of an execution with their reasons (for assertion messages)."""
    return [
        (s["step"], s.get("reason") or s.get("result"))
        for s in execution.get("steps", [])
        if s["state"] == "failed"
    ]
