"""``sh`` and ``bash`` blocks: ``/bin/sh -c BODY`` (``bash -c`` for ```` ```bash ````).

The child runs in its own process group (session) with stdin from /dev/null, the runner's
environment plus the step's ``env``, in ``cwd`` (default: the workspace). Each output stream
keeps ``output_limit`` bytes; the rest is read and dropped (so the child never blocks on a full
pipe) and counted in a ``[... N bytes truncated]`` note. On a timeout or cancellation the whole
group gets SIGTERM, then SIGKILL 2 s later.

This is the hot path, so there are no threads: the pipes and the process's pidfd are watched
by the event loop directly (``pidfd_open``; on systems without it the exit is polled). After
the shell exits, output still arriving from background processes it left running is read for
at most :data:`PIPE_GRACE` seconds.

Fields: ``exit_code`` (128 + N when killed by signal N, as shells report it; None when the
shell could not start), ``stdout``, ``stderr``, ``json`` (stdout parsed, or None), ``duration``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import IO, Any, ClassVar

from opsbook.engine.runners._common import parse_json, seconds, truncation_note
from opsbook.engine.runners.base import RunnerInput, RunnerResult

KILL_GRACE = 2.0  # seconds between SIGTERM and SIGKILL
PIPE_GRACE = 0.5  # seconds to keep reading after the shell exited
_READ = 65536


class _Capture:
    __slots__ = ("chunks", "dropped", "kept", "limit")

    def __init__(self, limit: int) -> None:
        self.chunks: list[bytes] = []
        self.kept = 0
        self.dropped = 0
        self.limit = limit

    def feed(self, data: bytes) -> None:
        room = self.limit - self.kept
        if room >= len(data):
            self.chunks.append(data)
            self.kept += len(data)
            return
        if room > 0:
            self.chunks.append(data[:room])
            self.kept += room
        self.dropped += len(data) - max(room, 0)

    def text(self) -> str:
        text = b"".join(self.chunks).decode("utf-8", "replace")
        return text + truncation_note(self.dropped) if self.dropped else text


class _Watch:
    """Reads both pipes and notices the exit, all from event-loop callbacks."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        proc: subprocess.Popen[bytes],
        limit: int,
        *,
        use_pidfd: bool = True,
        on_output: Callable[[str, bytes], None] | None = None,
    ) -> None:
        self.loop = loop
        self.on_output = on_output
        self.names: dict[int, str] = {}
        self.proc = proc
        self.done: asyncio.Future[int] = loop.create_future()
        self.out = _Capture(limit)
        self.err = _Capture(limit)
        self.pipes: dict[int, tuple[IO[bytes], _Capture]] = {}
        self.exited = False
        self.grace: asyncio.TimerHandle | None = None
        self.pidfd: int | None = None
        self.poll_delay = 0.001
        for name, stream, capture in (
            ("stdout", proc.stdout, self.out),
            ("stderr", proc.stderr, self.err),
        ):
            assert stream is not None
            fd = stream.fileno()
            os.set_blocking(fd, False)
            self.pipes[fd] = (stream, capture)
            self.names[fd] = name
            loop.add_reader(fd, self._readable, fd)
        try:
            if not use_pidfd:
                raise OSError("pidfd not wanted")
            self.pidfd = os.pidfd_open(proc.pid)
        except (AttributeError, OSError):  # not Linux >= 5.3: poll for the exit instead
            loop.call_soon(self._poll)
        else:
            loop.add_reader(self.pidfd, self._exited)

    def _readable(self, fd: int) -> None:
        try:
            data = os.read(fd, _READ)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if data:
            self.pipes[fd][1].feed(data)
            if self.on_output is not None:
                self.on_output(self.names[fd], data)
        else:
            self._close_pipe(fd)
            self._check()

    def _close_pipe(self, fd: int) -> None:
        stream, _ = self.pipes.pop(fd)
        self.loop.remove_reader(fd)
        stream.close()

    def _exited(self) -> None:
        if self.proc.poll() is None:
            return
        if self.pidfd is not None:
            self.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        self.exited = True
        if self.pipes:
            self.grace = self.loop.call_later(PIPE_GRACE, self._stop_reading)
        self._check()

    def _poll(self) -> None:
        if self.exited or self.done.done():
            return
        if self.proc.poll() is not None:
            self._exited()
            return
        self.poll_delay = min(self.poll_delay * 2, 0.05)
        self.loop.call_later(self.poll_delay, self._poll)

    def _stop_reading(self) -> None:
        for fd in list(self.pipes):
            self._close_pipe(fd)
        self._check()

    def _check(self) -> None:
        if self.exited and not self.pipes and not self.done.done():
            if self.grace is not None:
                self.grace.cancel()
            self.done.set_result(self.proc.returncode if self.proc.returncode is not None else -1)

    def close(self) -> None:
        """Release everything (after the process is gone or given up on)."""
        for fd in list(self.pipes):
            self._close_pipe(fd)
        if self.pidfd is not None:
            self.loop.remove_reader(self.pidfd)
            os.close(self.pidfd)
            self.pidfd = None
        if self.grace is not None:
            self.grace.cancel()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    """Whether a live (non-zombie) process is left in the group. Orphans that already died
    stay zombies until init reaps them, so ``killpg(pgid, 0)`` alone would wait for nothing."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        entries = os.listdir("/proc")
    except OSError:
        return True
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2 and int(fields[2]) == pgid and fields[0] != b"Z":
            return True
    return False


def _exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


class ShRunner:
    kind: ClassVar[str] = "sh"
    supports_dry_run: ClassVar[bool] = False

    def __init__(self, *, use_pidfd: bool = True) -> None:
        self._use_pidfd = use_pidfd  # False: poll for the exit, as on systems without pidfd

    async def run(self, inp: RunnerInput) -> RunnerResult:
        started = time.perf_counter()
        if inp.context.dry_run:
            return RunnerResult(
                ok=True, fields={"would_run": inp.body, "dry_run": True}, duration=0.0
            )
        if inp.cancel is not None and inp.cancel.is_set():
            return _failed(started, "cancelled")
        interpreter = "bash" if inp.step.options.interpreter == "bash" else "/bin/sh"
        cwd = inp.cwd if inp.cwd is not None else inp.context.workspace
        try:
            proc = subprocess.Popen(
                [interpreter, "-c", inp.body],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=cwd,
                env={**os.environ, **inp.env} if inp.env else None,
                start_new_session=True,
            )
        except (OSError, ValueError) as exc:
            return _failed(started, f"cannot start {interpreter} in {cwd}: {exc}")
        if inp.on_start is not None:
            inp.on_start(proc.pid)
        watch = _Watch(
            asyncio.get_running_loop(),
            proc,
            inp.context.output_limit,
            use_pidfd=self._use_pidfd,
            on_output=inp.on_output,
        )
        try:
            stopped = await self._wait(watch, inp)
        except BaseException:
            _signal_group(proc.pid, signal.SIGKILL)
            proc.wait()
            watch.close()
            raise
        if stopped:
            await self._terminate(watch)
        watch.close()
        returncode = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        duration = time.perf_counter() - started
        stdout = watch.out.text()
        fields: dict[str, Any] = {
            "exit_code": _exit_code(returncode),
            "stdout": stdout,
            "stderr": watch.err.text(),
            "json": None if watch.out.dropped else parse_json(stdout),
            "duration": duration,
        }
        if stopped == "timeout":
            error = f"timed out after {seconds(inp.timeout or 0)}"
            return RunnerResult(False, fields, duration, error=error, timed_out=True)
        if stopped == "cancelled":
            return RunnerResult(False, fields, duration, error="cancelled")
        code = fields["exit_code"]
        return RunnerResult(
            code == 0, fields, duration, error=None if code == 0 else f"exit {code}"
        )

    @staticmethod
    async def _wait(watch: _Watch, inp: RunnerInput) -> str | None:
        """None when the shell finished; "timeout" or "cancelled" when it must be stopped."""
        if inp.cancel is None:
            if inp.timeout is None:
                await watch.done
                return None
            try:
                await asyncio.wait_for(asyncio.shield(watch.done), inp.timeout)
            except TimeoutError:
                return "timeout"
            return None
        waiter = asyncio.ensure_future(inp.cancel.wait())
        try:
            await asyncio.wait(
                (watch.done, waiter), timeout=inp.timeout, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            waiter.cancel()
            await asyncio.gather(waiter, return_exceptions=True)
        if watch.done.done():
            return None
        return "cancelled" if inp.cancel.is_set() else "timeout"

    @staticmethod
    async def _terminate(watch: _Watch) -> None:
        """SIGTERM the process group, SIGKILL whatever is left after KILL_GRACE seconds."""
        loop = asyncio.get_running_loop()
        pgid = watch.proc.pid
        _signal_group(pgid, signal.SIGTERM)
        deadline = loop.time() + KILL_GRACE
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(watch.done), KILL_GRACE)
        while _group_alive(pgid) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        if _group_alive(pgid) or not watch.done.done():
            _signal_group(pgid, signal.SIGKILL)
            await watch.done


def _failed(started: float, error: str) -> RunnerResult:
    duration = time.perf_counter() - started
    fields = {"exit_code": None, "stdout": "", "stderr": "", "json": None, "duration": duration}
    return RunnerResult(False, fields, duration, error=error, ran=False)
