"""The heartbeat of a worker or replica, and its self-fencing (ADR 0017 §4).

A :class:`Heartbeat` beats every ``interval`` seconds on its own database connection, from its
own thread, so a busy event loop or a full pool never delays it. When no beat succeeded for
``fence_after`` seconds (0.75 × the lease: before anyone may declare the process dead), or the
row is no longer alive (:func:`opsbook.cluster.registry.beat` returned False: declared dead),
it calls ``on_fence(reason)`` once; the callback stops the process's steps and exits.

A watchdog thread checks the time of the last good beat on its own, so a beat that hangs on a
lost network connection still fences in time.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from opsbook.cluster.registry import beat
from opsbook.errors import OpsbookError
from opsbook.logs import get_logger

if TYPE_CHECKING:
    from opsbook.db import Database


def _open(url: str) -> Database:
    from opsbook.db import open_database  # noqa: PLC0415 - the caller's process has it loaded

    return open_database(url)


class Heartbeat:
    """``Heartbeat(...).start()``; ``stop()`` before the process marks its row stopped (a beat
    after that would find the row not alive and fence)."""

    def __init__(
        self,
        *,
        database_url: str,
        worker_id: str,
        interval: float,
        fence_after: float,
        on_fence: Callable[[str], None],
        connect: Callable[[str], Database] = _open,
    ) -> None:
        self.database_url = database_url
        self.worker_id = worker_id
        self.interval = interval
        self.fence_after = fence_after
        self._on_fence = on_fence
        self._connect = connect
        self._stop = threading.Event()
        self._fence_lock = threading.Lock()
        self._fenced: str | None = None
        self._db: Database | None = None
        self.last_ok = time.monotonic()
        self.beats = 0
        self._threads: list[threading.Thread] = []

    @property
    def fenced(self) -> str | None:
        """The reason this heartbeat fenced, or None."""
        return self._fenced

    def start(self) -> Heartbeat:
        self.last_ok = time.monotonic()
        for target, name in ((self._beat_loop, "heartbeat"), (self._watch, "heartbeat-watch")):
            thread = threading.Thread(target=target, name=name, daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """Stop beating (nothing fences after this) and close the connection."""
        self._stop.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        self._threads.clear()
        self._close()

    # -- threads -------------------------------------------------------------------------------
    def _beat_loop(self) -> None:
        while not self._stop.is_set():
            self.beat_once()
            self._stop.wait(self.interval)

    def beat_once(self) -> bool:
        """One beat now; True when it was written. A connection error is logged and the
        connection opened again next time."""
        log = get_logger(worker_id=self.worker_id)
        try:
            if self._db is None:
                self._db = self._connect(self.database_url)
            alive = beat(db=self._db, worker_id=self.worker_id)
        except (OpsbookError, OSError) as exc:
            log.warning("cluster.heartbeat.failed", fields={"error": str(exc)})
            self._close()
            return False
        if self._stop.is_set():
            return alive
        if not alive:
            self._fence("the worker row is no longer alive (declared dead or stopped)")
            return False
        self.last_ok = time.monotonic()
        self.beats += 1
        return True

    def _watch(self) -> None:
        step = min(self.interval, max(self.fence_after / 10, 0.05))
        while not self._stop.wait(step):
            silent = time.monotonic() - self.last_ok
            if silent > self.fence_after:
                self._fence(
                    f"no heartbeat could be written for {silent:.1f} s"
                    f" (fence after {self.fence_after:g} s)"
                )
                return

    def _fence(self, reason: str) -> None:
        with self._fence_lock:
            if self._fenced is not None or self._stop.is_set():
                return
            self._fenced = reason
        self._stop.set()
        get_logger(worker_id=self.worker_id).error(
            "cluster.heartbeat.fenced", fields={"reason": reason}
        )
        self._on_fence(reason)

    def _close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            with contextlib.suppress(Exception):
                db.close()
