"""A running step's output, as it is produced: to the reporter line by line, and kept on the
step run so `executions show` and the console can show what a step is doing before it ends."""

from __future__ import annotations

import asyncio
import json

from opsbook.db import Database
from opsbook.engine._hooks import Reporter
from opsbook.engine.states import State
from opsbook.runbooks.model import Step


class LiveOutput:
    """A running step's output lines (already redacted): each goes to the reporter at once,
    and the last :data:`LIVE_LINES` are kept on the step run (``result.live_output``, written
    at most every :data:`LIVE_WRITE_EVERY` seconds) so `executions show` and the console can
    show what a step is doing before it ends. The final result replaces them."""

    LIVE_LINES = 200
    LIVE_WRITE_EVERY = 0.25

    def __init__(
        self,
        *,
        db: Database,
        reporter: Reporter,
        eid: str,
        seq: int,
        step: Step,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.db = db
        self.reporter = reporter
        self.eid = eid
        self.seq = seq
        self.step = step
        self.loop = loop
        self.lines: list[str] = []
        self.timer: asyncio.TimerHandle | None = None
        self.written = 0.0

    def add(self, stream: str, line: str) -> None:
        self.reporter.step_output(step=self.step, seq=self.seq, stream=stream, line=line)
        self.lines.append(line if stream == "stdout" else f"[stderr] {line}")
        del self.lines[: -self.LIVE_LINES]
        if self.timer is None:
            wait = max(0.0, self.written + self.LIVE_WRITE_EVERY - self.loop.time())
            self.timer = self.loop.call_later(wait, self._write)

    def _write(self) -> None:
        self.timer = None
        self.written = self.loop.time()
        self.db.execute(
            "UPDATE step_runs SET result = ? WHERE execution_id = ? AND seq = ? AND state = ?",
            (json.dumps({"live_output": self.lines}), self.eid, self.seq, str(State.RUNNING)),
        )

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
