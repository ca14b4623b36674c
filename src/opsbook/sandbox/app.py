"""The ASGI app of one sandbox service: request middleware (ids, metrics, logs, request-level
faults), ``/health``, ``/metrics``, ``/version`` and the background tasks (memory leak, pool
exhaustion, outbox worker). The business routes are in :mod:`opsbook.sandbox.routes`."""

from __future__ import annotations

import asyncio
import os
import random
import re
import signal
import time
import traceback
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, disable_created_metrics, generate_latest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opsbook.sandbox import checks, routes
from opsbook.sandbox.runtime import MEMORY_LIMIT_BYTES, ReplicaSettings, Runtime

_ID = re.compile(r"/\d+(?=/|$)")
_PLAIN = ("/health", "/metrics", "/version")
CRASH_EXIT = 70
OOM_EXIT = 137


def route_of(path: str) -> str:
    return _ID.sub("/{id}", path)


class Observe:
    """Request ids, access logs, metrics, and the faults that act on requests."""

    def __init__(self, app: ASGIApp, rt: Runtime) -> None:
        self.app = app
        self.rt = rt
        self._rng = random.Random()  # noqa: S311 - fault simulation, not security
        self._bug_counter = 0
        self._split_flag = rt.settings.data_dir / "split" / rt.settings.service
        self._split = (0.0, False)

    def _splitting(self) -> bool:
        """Whether the service runs two versions now (the supervisor's flag file; 0.2 s cache)."""
        now = time.monotonic()
        if now - self._split[0] > 0.2:
            self._split = (now, self._split_flag.exists())
        return self._split[1]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rt, path, method = self.rt, scope["path"], scope["method"]
        headers = dict(scope.get("headers") or [])
        rid = headers.get(b"x-request-id", b"").decode() or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
                if self._splitting():  # two versions run: reconnect, so the split applies
                    message["headers"].append((b"connection", b"close"))
            await send(message)

        active = rt.faults.active()
        if "hang" in active:
            while "hang" in rt.faults.active():  # a deadlocked worker: nothing comes back
                await asyncio.sleep(0.1)
        if "latency" in active:
            await asyncio.sleep(float(active["latency"].params.get("delay_ms", 1200)) / 1000)
        api = path not in _PLAIN
        try:
            if (
                api
                and "error-rate" in active
                and (self._rng.random() < float(active["error-rate"].params.get("rate", 0.5)))
            ):
                raise RuntimeError("upstream reset: injected internal error (error-rate fault)")
            if api and rt.settings.latency_ms:  # the release's latency regression
                await asyncio.sleep(rt.settings.latency_ms / 1000)
            if (
                api
                and rt.settings.fail_rate
                and method == "POST"
                and self._rng.random() < rt.settings.fail_rate
            ):  # the release's defect: a write fails on a code path the tests missed
                if path == "/payments":
                    rt.metrics.payments.labels("failed").inc()
                raise LookupError(
                    f"release {rt.settings.version}: no fee schedule for merchant category"
                )
            if api and rt.settings.bug and method == "POST":
                self._bug_counter += 1
                if self._bug_counter % 3 == 0:  # the release's bug: a missing mapping
                    raise KeyError(f"currency_rules[{self._bug_counter % 7}]")
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # any unhandled error becomes a logged 500
            rt.log(
                "error",
                "unhandled exception",
                request_id=rid,
                method=method,
                path=path,
                error=f"{type(exc).__name__}: {exc}",
                stack=traceback.format_exc(limit=4),
            )
            rt.metrics.errors.labels(rt.settings.service, route_of(path), "exception").inc()
            response = JSONResponse({"error": "internal_error", "request_id": rid}, 500)
            await response(scope, receive, send_wrapper)
        elapsed = time.perf_counter() - started
        code = status["code"]
        route = route_of(path)
        m = rt.metrics
        m.requests.labels(
            "banking-platform-sandbox", rt.settings.service, route, method, str(code)
        ).inc()
        m.latency.labels(rt.settings.service, route, method).observe(elapsed)
        if code >= 500:
            m.errors.labels(rt.settings.service, route, f"http_{code}").inc()
        rt.requests_served += 1
        if api or code != 200:
            level = "error" if code >= 500 else "warning" if elapsed > 1.0 else "info"
            rt.log(
                level,
                "request",
                request_id=rid,
                method=method,
                path=path,
                status=code,
                duration_ms=round(elapsed * 1000, 1),
            )


async def health(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    body = await checks.health(rt)
    return JSONResponse(body, 200 if body["status"] == "UP" else 503)


async def metrics(request: Request) -> Response:
    rt: Runtime = request.app.state.rt
    await checks.refresh_gauges(rt)
    return Response(generate_latest(rt.metrics.registry), media_type=CONTENT_TYPE_LATEST)


async def version(request: Request) -> Response:
    s: ReplicaSettings = request.app.state.rt.settings
    return JSONResponse(
        {
            "service": s.service,
            "version": s.version,
            "revision": s.revision,
            "replica": s.replica,
            "pid": os.getpid(),
        }
    )


async def _memory_leak(rt: Runtime) -> None:
    last_log = 0.0
    while True:
        await asyncio.sleep(0.25)
        fault = rt.faults.active().get("memory-leak")
        if fault is None:
            if rt.leak:
                rt.leak.clear()
                rt.log("info", "memory released", rss_mb=rt.rss() // 2**20)
            continue
        chunk = int(float(fault.params.get("mb_per_second", 48)) * 2**20 / 4)
        rt.leak.append(os.urandom(64) * (chunk // 64))  # real, touched pages
        rss = rt.rss()
        if time.monotonic() - last_log > 1.0:
            last_log = time.monotonic()
            rt.log("warning", "heap growing", rss_mb=rss // 2**20, cached_objects=len(rt.leak))
        if rss > MEMORY_LIMIT_BYTES:
            rt.log("critical", "OOMKilled: memory limit 512Mi exceeded", rss_mb=rss // 2**20)
            os._exit(OOM_EXIT)


async def _pool_exhaustion(rt: Runtime) -> None:
    while True:
        await asyncio.sleep(0.1)
        active = "db-connections-exhausted" in rt.faults.active()
        if active and rt.pool.leaked < rt.pool.size:
            if not rt.pool.leaked:
                rt.log(
                    "warning",
                    "database connections not returned to the pool",
                    pool_size=rt.pool.size,
                )
            # one at a time, briefly: a clear while requests still hold connections is seen
            while rt.pool.leaked < rt.pool.size and await rt.pool.leak_one(timeout=0.2):
                pass
        elif not active and rt.pool.leaked:
            rt.log("info", "leaked database connections closed", count=rt.pool.return_leaked())


def _crash(rt: Runtime) -> None:
    rt.log(
        "critical",
        "fatal error: segmentation fault in worker (injected crash); exiting",
        exit_code=CRASH_EXIT,
    )
    os._exit(CRASH_EXIT)


def build_app(settings: ReplicaSettings) -> Starlette:
    disable_created_metrics()  # type: ignore[no-untyped-call]  # prometheus_client is untyped here
    rt = Runtime(settings)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGUSR2, _crash, rt)
        tasks = [asyncio.create_task(_memory_leak(rt)), asyncio.create_task(_pool_exhaustion(rt))]
        tasks += [asyncio.create_task(t) for t in routes.background(rt)]
        rt.log("info", "started", pid=os.getpid(), revision=settings.revision)
        yield
        for task in tasks:
            task.cancel()
        await routes.shutdown(rt)
        rt.log("info", "stopped", pid=os.getpid(), served=rt.requests_served)

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/metrics", metrics),
            Route("/version", version),
            *routes.routes_for(settings.service),
        ],
        middleware=[Middleware(Observe, rt=rt)],
        lifespan=lifespan,
    )
    app.state.rt = rt
    return app
