"""`opsbook worker`: a Celery worker that drives run slices (ADR 0017 §1-§4, §8).

One process is one owner token and one heartbeat. Each pool thread has its own database
connection and drives a message with ``asyncio.run(engine.resume(...))`` after claiming it
(:func:`drive_message`). SIGTERM drains: no new messages, each running engine hands its run
back to its queue at the next step boundary; after ``drain_seconds`` the worker stops the step
processes it still runs and exits, and the crash rules apply. A worker that cannot beat fences
itself: it stops its step processes and exits 70 before anyone may declare it dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import socket
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

import psutil

from opsbook.cluster import registry
from opsbook.cluster.dispatch import CeleryDispatcher, claim, drop_reason, home_queue_in, host_queue
from opsbook.cluster.heartbeat import Heartbeat
from opsbook.cluster.settings import ClusterSettings
from opsbook.errors import OpsbookError, UsageError
from opsbook.logs import get_logger

if TYPE_CHECKING:
    from opsbook.config import Settings
    from opsbook.db import Database
    from opsbook.engine._executor import Engine
    from opsbook.workspace import Workspace

#: Exit code of a worker that fenced itself (it could not beat: its lease may be taken).
EXIT_FENCED = 70
#: Outcomes of a delivery (``opsbook_worker_deliveries_total{outcome}``).
OUTCOMES = ("claimed", "duplicate", "stale", "finished", "missing", "refused")


# -- state of one worker process ---------------------------------------------------------------
@dataclass
class WorkerMetrics:
    """What ``--metrics-port`` serves: deliveries by outcome and busy/idle slots."""

    concurrency: int
    deliveries: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    busy: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def delivered(self, outcome: str) -> None:
        with self._lock:
            self.deliveries[outcome] = self.deliveries.get(outcome, 0) + 1

    def render(self) -> str:
        """The Prometheus text exposition."""
        with self._lock:
            deliveries, busy = dict(self.deliveries), self.busy
        lines = [
            "# HELP opsbook_worker_deliveries_total Messages this worker received, by outcome.",
            "# TYPE opsbook_worker_deliveries_total counter",
            *(
                f'opsbook_worker_deliveries_total{{outcome="{k}"}} {v}'
                for k, v in sorted(deliveries.items())
            ),
            "# HELP opsbook_worker_slots Pool threads driving a run (busy) or free (idle).",
            "# TYPE opsbook_worker_slots gauge",
            f'opsbook_worker_slots{{state="busy"}} {busy}',
            f'opsbook_worker_slots{{state="idle"}} {max(self.concurrency - busy, 0)}',
        ]
        return "\n".join(lines) + "\n"


class WorkerContext:
    """What every message needs: the workspace, one database connection per pool thread,
    the dispatcher for hand-offs, and the engines now driving (drained on SIGTERM)."""

    def __init__(
        self,
        *,
        workspace: Workspace,
        settings: Settings,
        database_url: str,
        worker_id: str,
        dispatcher: CeleryDispatcher,
        concurrency: int,
    ) -> None:
        self.workspace = workspace
        self.settings = settings
        self.database_url = database_url
        self.worker_id = worker_id
        self.dispatcher = dispatcher
        self.metrics = WorkerMetrics(concurrency=concurrency)
        self.draining = False
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Database] = []
        self._engines: set[Engine] = set()

    def database(self) -> Database:
        """This thread's connection (opened on first use)."""
        db: Database | None = getattr(self._local, "db", None)
        if db is None:
            from opsbook.db import open_database  # noqa: PLC0415

            db = open_database(self.database_url)
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    def engine(self, *, db: Database, queue: str) -> Engine:
        """An engine driving the slice of ``queue`` (the CLI's wiring,
        :func:`opsbook.executions.local.make_engine`)."""
        from opsbook.executions.local import make_engine  # noqa: PLC0415

        with self._lock:  # make_engine (re)configures the log file: one thread at a time
            engine = make_engine(
                self.workspace, self.settings, db, queue=queue, dispatcher=self.dispatcher
            )
        engine.draining = self.draining
        return engine

    @contextmanager
    def slot(self, engine: Engine) -> Iterator[None]:
        """Count ``engine`` busy while it drives; a drain reaches it there."""
        with self._lock:
            self._engines.add(engine)
            engine.draining = self.draining
            self.metrics.busy = len(self._engines)
        try:
            yield
        finally:
            with self._lock:
                self._engines.discard(engine)
                self.metrics.busy = len(self._engines)

    def drain(self) -> None:
        """Every engine, now and later, hands its run back at the next step boundary."""
        with self._lock:
            self.draining = True
            for engine in self._engines:
                engine.draining = True

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            with contextlib.suppress(Exception):
                db.close()


# -- one message -------------------------------------------------------------------------------
def drive_message(
    *,
    execution_id: str,
    dispatch: int,
    actor: str,
    decision: str | None,
    queue: str,
    context: WorkerContext,
) -> str:
    """Claim dispatch ``dispatch`` of the execution and drive it until it parks, ends or hands
    off; returns the delivery's outcome (``claimed``, or why it was dropped: ``duplicate``,
    ``stale``, ``finished``, ``missing``; ``refused`` when this worker could not drive it)."""
    log = get_logger(execution_id=execution_id)
    db = context.database()
    if not claim(db=db, execution_id=execution_id, dispatch=dispatch, worker_id=context.worker_id):
        why = drop_reason(db=db, execution_id=execution_id, dispatch=dispatch)
        context.metrics.delivered(why)
        log.info(
            "cluster.worker.delivery_dropped",
            fields={"dispatch": dispatch, "queue": queue, "why": why},
        )
        return why
    try:
        engine = context.engine(db=db, queue=queue)
        with context.slot(engine):
            outcome = asyncio.run(
                engine.resume(execution_id=execution_id, actor=actor, decision=decision)
            )
    except OpsbookError as exc:  # a runbook it cannot load, a run owned elsewhere, ...
        context.metrics.delivered("refused")  # the run stays; `executions resume` re-dispatches
        log.warning(
            "cluster.worker.refused",
            fields={"dispatch": dispatch, "queue": queue, "error": exc.render()},
        )
        return "refused"
    context.metrics.delivered("claimed")
    log.info(
        "cluster.worker.slice_done",
        fields={"dispatch": dispatch, "queue": queue, "state": str(outcome.state)},
    )
    return "claimed"


# -- stopping what this process started --------------------------------------------------------
def stop_own_steps(sig: int = signal.SIGKILL) -> list[int]:
    """Signal the process group of every step this process runs (each ``sh`` step runs in its
    own group, see :mod:`opsbook.engine._leftovers`); the groups signalled. Needs no database:
    it is what a fencing worker does when it cannot reach it."""
    own = os.getpgrp()
    groups: set[int] = set()
    for child in psutil.Process().children(recursive=False):
        with contextlib.suppress(OSError, psutil.Error):
            pgid = os.getpgid(child.pid)
            if pgid != own:
                groups.add(pgid)
    for pgid in sorted(groups):
        with contextlib.suppress(OSError):
            os.killpg(pgid, sig)
    return sorted(groups)


def fence(reason: str) -> None:
    """Stop this worker's steps and exit :data:`EXIT_FENCED` at once (its lease may be
    taken: nothing it runs may keep acting)."""
    stopped = stop_own_steps()
    get_logger().error("cluster.worker.fenced", fields={"reason": reason, "groups": stopped})
    os._exit(EXIT_FENCED)


# -- metrics endpoint --------------------------------------------------------------------------
def serve_metrics(metrics: WorkerMetrics, port: int) -> ThreadingHTTPServer:
    """``GET /metrics`` on ``port`` (all interfaces), from a daemon thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?", 1)[0] != "/metrics":
                self.send_error(404)
                return
            body = metrics.render().encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    try:
        server = ThreadingHTTPServer(("0.0.0.0", port), Handler)  # noqa: S104 - scraped remotely
    except OSError as exc:
        raise UsageError(
            f"--metrics-port {port}: {exc.strerror or exc}",
            field="--metrics-port",
            hint="choose a free port, or leave --metrics-port out",
        ) from exc
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server


# -- the process -------------------------------------------------------------------------------
def run_worker(
    *,
    workspace: Workspace,
    settings: Settings,
    queues: Sequence[str],
    concurrency: int,
    name: str | None,
    database_url: str,
    broker_url: str,
    drain_seconds: float,
    metrics_port: int | None,
) -> int:
    """Register in ``workers``, beat, run the cluster's background pass and a Celery worker
    on ``queues`` plus this host's queue, until SIGTERM: then drain (at most
    ``drain_seconds``), mark the row stopped and return 0. Exits 70 from inside when fenced."""
    from opsbook import __version__, logs  # noqa: PLC0415
    from opsbook.cluster.celery_app import make_app  # noqa: PLC0415
    from opsbook.db import open_database  # noqa: PLC0415
    from opsbook.executions.local import secrets_for  # noqa: PLC0415

    timing = ClusterSettings.from_env()
    _, redactor = secrets_for(workspace, settings)
    logs.configure(path=workspace.state_dir / "logs" / "opsbook.log", redact=redactor.redact)
    consumed = list(dict.fromkeys([*queues, host_queue()]))
    db = open_database(database_url)  # migrates a new database before anything else
    dispatcher = CeleryDispatcher(make_app(broker_url))  # producer: hand-offs and sweeps
    me = registry.register(
        db=db,
        kind="worker",
        name=name or socket.gethostname(),
        queues=consumed,
        concurrency=concurrency,
        version=__version__,
        lease_seconds=timing.lease,
    )
    log = get_logger(worker_id=me.id)
    context = WorkerContext(
        workspace=workspace,
        settings=settings,
        database_url=database_url,
        worker_id=me.id,
        dispatcher=dispatcher,
        concurrency=concurrency,
    )
    # celery ships no type information (no py.typed, no stubs)
    from celery import signals  # noqa: PLC0415

    with contextlib.ExitStack() as undo:  # undone in reverse, also when starting fails
        undo.callback(db.close)
        undo.callback(context.close)
        undo.callback(_mark_stopped, db, me.id)  # after the heartbeat stopped (below)
        undo.callback(
            Heartbeat(
                database_url=database_url,
                worker_id=me.id,
                interval=timing.heartbeat,
                fence_after=timing.fence_after,
                on_fence=fence,
            )
            .start()
            .stop
        )
        background = _Background(
            database_url=database_url,
            worker_id=me.id,
            dispatcher=dispatcher,
            settings=timing,
            home_queue_of=home_queue_in(workspace),
        )
        undo.callback(background.stop)
        if metrics_port:
            undo.callback(serve_metrics(context.metrics, metrics_port).shutdown)
        finished = threading.Event()
        undo.callback(finished.set)

        def on_shutting_down(sender: Any = None, how: str = "", **_: Any) -> None:
            if how != "Warm" or context.draining:
                return
            context.drain()  # engines hand their runs back at the next step boundary
            threading.Thread(
                target=_drain_or_exit,
                args=(context, drain_seconds, finished),
                name="drain",
                daemon=True,
            ).start()

        signals.worker_shutting_down.connect(on_shutting_down, weak=False)
        undo.callback(signals.worker_shutting_down.disconnect, on_shutting_down)
        celery_worker = make_app(
            broker_url, drive=functools.partial(drive_message, context=context)
        ).Worker(
            hostname=f"{me.name}.{me.pid}@{me.host}",
            queues=consumed,
            pool="threads",  # one process: one owner token, one heartbeat (ADR 0017 §1)
            concurrency=concurrency,
            without_mingle=True,
            without_gossip=True,
            without_heartbeat=True,  # liveness is the workers row, on the database clock
            redirect_stdouts=False,
            quiet=True,
            loglevel="INFO",
        )
        log.info(
            "cluster.worker.started",
            fields={"queues": consumed, "concurrency": concurrency, "broker": _safe(broker_url)},
        )
        celery_worker.start()
    code = int(celery_worker.exitcode or 0)
    log.info("cluster.worker.stopped", fields={"exit_code": code})
    return code


def _mark_stopped(db: Database, worker_id: str) -> None:
    with contextlib.suppress(OpsbookError):
        registry.set_state(db=db, worker_id=worker_id, state="stopped")


def _drain_or_exit(context: WorkerContext, seconds: float, finished: threading.Event) -> None:
    """After SIGTERM: mark the row draining; if slices still run after ``seconds``, stop their
    steps and exit with the row left draining: its lease runs out, the reaper declares it dead
    and the crash rules recover its runs (ADR 0017 §4)."""
    from opsbook.db import open_database  # noqa: PLC0415

    with contextlib.suppress(OpsbookError):
        db = open_database(context.database_url)
        try:
            registry.set_state(db=db, worker_id=context.worker_id, state="draining")
        finally:
            db.close()
    if finished.wait(seconds):  # Celery's warm shutdown returned: every slice handed back
        return
    stopped = stop_own_steps()
    get_logger(worker_id=context.worker_id).warning(
        "cluster.worker.drain_timed_out", fields={"seconds": seconds, "groups": stopped}
    )
    os._exit(0)


class _Background:
    """:func:`opsbook.cluster.background.run_background` (reap, re-send, prune) on an event
    loop of its own thread, stopped with the worker."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cluster-background", daemon=True)
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        from opsbook.cluster.background import run_background  # noqa: PLC0415

        async def main() -> None:
            self._loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self._ready.set()
            await run_background(stop=self._stop, **self._kwargs)

        asyncio.run(main())

    def stop(self, timeout: float = 10.0) -> None:
        if self._loop is not None and self._stop is not None:
            with contextlib.suppress(RuntimeError):  # its loop already ended
                self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout)


def _safe(url: str) -> str:
    """A broker URL without its password (for logs)."""
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{rest.rsplit('@', 1)[-1]}" if rest else url
