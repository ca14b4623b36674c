"""The sh runner over real /bin/sh and bash processes."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from opsbook.engine.runners import get_runner
from opsbook.engine.runners.base import RunContext, RunnerInput
from opsbook.engine.runners.sh import ShRunner
from opsbook.runbooks.model import Block, Step, StepKind, StepOptions


def make_input(
    body: str, workspace: Path, *, bash: bool = False, limit: int = 1_048_576, **kw: Any
) -> RunnerInput:
    step = Step(
        id="s",
        title="S",
        kind=StepKind.SH,
        line=1,
        block=Block("bash" if bash else "sh", body, {}, 1),
        options=StepOptions(interpreter="bash" if bash else None),
    )
    ctx = RunContext(
        execution_id="e1",
        environment_name="sandbox",
        environment={},
        workspace=workspace,
        started_by="alice",
        output_limit=limit,
        dry_run=kw.pop("dry_run", False),
    )
    return RunnerInput(step=step, body=body, context=ctx, **kw)


def alive(pid: int) -> bool:
    """Whether a process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(*pids: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not any(alive(p) for p in pids):
            return True
        time.sleep(0.02)
    return False


async def test_exit_code_zero_is_ok(tmp_path: Path) -> None:
    result = await ShRunner().run(make_input("true", tmp_path))
    assert result.ok and result.error is None
    assert result.fields["exit_code"] == 0
    assert result.fields["stdout"] == "" and result.fields["json"] is None
    assert result.fields["duration"] == result.duration > 0


async def test_a_non_zero_exit_fails_with_the_code(tmp_path: Path) -> None:
    result = await ShRunner().run(make_input("echo oops >&2; exit 3", tmp_path))
    assert not result.ok and not result.timed_out
    assert result.fields["exit_code"] == 3
    assert result.fields["stderr"] == "oops\n"
    assert result.error == "exit 3"


async def test_stdout_json_is_parsed(tmp_path: Path) -> None:
    body = 'printf \'{"status": "UP", "items": [1, 2]}\\n\''
    result = await ShRunner().run(make_input(body, tmp_path))
    assert result.fields["json"] == {"status": "UP", "items": [1, 2]}
    plain = await ShRunner().run(make_input("echo not json", tmp_path))
    assert plain.fields["json"] is None and plain.fields["stdout"] == "not json\n"


async def test_killed_by_a_signal_reads_as_128_plus_n(tmp_path: Path) -> None:
    result = await ShRunner().run(make_input("kill -9 $$", tmp_path))
    assert result.fields["exit_code"] == 137 and not result.ok


async def test_output_is_capped_and_the_child_never_blocks(tmp_path: Path) -> None:
    body = "head -c 300000 /dev/zero | tr '\\0' a; head -c 5000 /dev/zero | tr '\\0' b >&2"
    result = await ShRunner().run(make_input(body, tmp_path, limit=1000))
    assert result.ok
    assert result.fields["stdout"] == "a" * 1000 + "\n[... 299000 bytes truncated]"
    assert result.fields["stderr"] == "b" * 1000 + "\n[... 4000 bytes truncated]"
    assert result.fields["json"] is None


async def test_env_and_cwd(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    inp = make_input(
        'echo "$GREETING"; pwd', tmp_path, env={"GREETING": "hi"}, cwd=tmp_path / "sub"
    )
    result = await ShRunner().run(inp)
    assert result.fields["stdout"].split("\n")[:2] == ["hi", str(tmp_path / "sub")]
    default = await ShRunner().run(make_input("pwd; echo $PATH", tmp_path))
    assert default.fields["stdout"].split("\n")[0] == str(tmp_path)  # the workspace
    assert default.fields["stdout"].split("\n")[1] == os.environ["PATH"]


async def test_stdin_is_empty(tmp_path: Path) -> None:
    result = await ShRunner().run(make_input("cat; echo done", tmp_path, timeout=10))
    assert result.ok and result.fields["stdout"] == "done\n"


async def test_bash_blocks_run_with_bash(tmp_path: Path) -> None:
    bashism = '[[ "ab" == a* ]] && echo "${BASH_VERSION:+bash}"'
    result = await ShRunner().run(make_input(bashism, tmp_path, bash=True))
    assert result.ok and result.fields["stdout"] == "bash\n"


async def test_a_missing_cwd_fails_the_step(tmp_path: Path) -> None:
    result = await ShRunner().run(make_input("true", tmp_path, cwd=tmp_path / "nope"))
    assert not result.ok and result.fields["exit_code"] is None
    assert "cannot start /bin/sh" in (result.error or "")


async def test_timeout_kills_the_whole_process_group(tmp_path: Path) -> None:
    body = f"echo $$ > {tmp_path}/sh.pid; sleep 30 & echo $! > {tmp_path}/child.pid; sleep 30"
    started = time.monotonic()
    result = await ShRunner().run(make_input(body, tmp_path, timeout=0.5))
    assert time.monotonic() - started < 10
    assert result.timed_out and not result.ok
    assert result.error == "timed out after 0.5s"
    shell = int((tmp_path / "sh.pid").read_text())
    child = int((tmp_path / "child.pid").read_text())
    assert wait_gone(shell, child)


async def test_a_child_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    body = f"trap '' TERM; sleep 30 & echo $! > {tmp_path}/child.pid; sleep 30"
    result = await ShRunner().run(make_input(body, tmp_path, timeout=0.3, bash=True))
    assert result.timed_out
    assert wait_gone(int((tmp_path / "child.pid").read_text()))


async def test_the_cancel_event_stops_the_step(tmp_path: Path) -> None:
    cancel = asyncio.Event()
    asyncio.get_running_loop().call_later(0.3, cancel.set)
    body = f"echo $$ > {tmp_path}/sh.pid; sleep 30"
    started = time.monotonic()
    result = await ShRunner().run(make_input(body, tmp_path, cancel=cancel))
    assert time.monotonic() - started < 10
    assert not result.ok and not result.timed_out and result.error == "cancelled"
    assert wait_gone(int((tmp_path / "sh.pid").read_text()))


async def test_an_already_set_cancel_event_runs_nothing(tmp_path: Path) -> None:
    cancel = asyncio.Event()
    cancel.set()
    result = await ShRunner().run(make_input(f"touch {tmp_path}/ran", tmp_path, cancel=cancel))
    assert result.error == "cancelled" and not (tmp_path / "ran").exists()


async def test_cancelling_the_task_kills_the_process(tmp_path: Path) -> None:
    body = f"echo $$ > {tmp_path}/sh.pid; sleep 30"
    task = asyncio.ensure_future(ShRunner().run(make_input(body, tmp_path)))
    while not (tmp_path / "sh.pid").exists() or not (tmp_path / "sh.pid").read_text():
        await asyncio.sleep(0.02)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert wait_gone(int((tmp_path / "sh.pid").read_text()))


async def test_background_processes_do_not_hold_the_step(tmp_path: Path) -> None:
    body = f"sleep 20 & echo $! > {tmp_path}/bg.pid; echo started"
    started = time.monotonic()
    result = await ShRunner().run(make_input(body, tmp_path))
    assert time.monotonic() - started < 5
    assert result.ok and result.fields["stdout"] == "started\n"
    pid = int((tmp_path / "bg.pid").read_text())
    os.kill(pid, 9)
    assert wait_gone(pid)


async def test_without_pidfd_the_exit_is_polled(tmp_path: Path) -> None:
    runner = ShRunner(use_pidfd=False)
    result = await runner.run(make_input("echo polled; exit 4", tmp_path))
    assert result.fields["exit_code"] == 4 and result.fields["stdout"] == "polled\n"
    slow = await runner.run(make_input("sleep 0.2; echo done", tmp_path))
    assert slow.ok and slow.fields["stdout"] == "done\n"
    timed = await runner.run(make_input("sleep 30", tmp_path, timeout=0.2))
    assert timed.timed_out


async def test_a_dry_run_runs_nothing(tmp_path: Path) -> None:
    result = await ShRunner().run(make_input(f"touch {tmp_path}/ran", tmp_path, dry_run=True))
    assert result.ok and result.fields["dry_run"] is True
    assert not (tmp_path / "ran").exists()


async def test_many_steps_are_cheap(tmp_path: Path) -> None:
    runner = get_runner(StepKind.SH)
    assert runner is get_runner(StepKind.SH) and not runner.supports_dry_run
    started = time.monotonic()
    for _ in range(100):
        assert (await runner.run(make_input("true", tmp_path))).ok
    assert time.monotonic() - started < 10  # ~1 ms each; generous for slow CI machines
