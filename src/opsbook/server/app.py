"""The app factory: REST API under /api/v1, console under /, static files, /metrics, one
error mapping (RFC 9457 problems for the API, pages for the console).

The lifespan starts the background loops (ADR 0017 §6). On PostgreSQL or with a broker this
serve registers in ``workers`` (kind ``serve``) and beats; with a broker it also runs the
cluster's pass (reaper, sweeper). Monitoring, security and backups run only on the replica
holding the one :class:`~opsbook.cluster.leader.LeaderLock` (a lock file on SQLite)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from opsbook import __version__
from opsbook.api import problems
from opsbook.api.router import PREFIX, PROBLEMS, api_routers
from opsbook.api.routes_monitoring import MAX_BODY as WEBHOOK_MAX_BODY
from opsbook.errors import OpsbookError
from opsbook.executions import operations
from opsbook.executions.context import AppContext
from opsbook.logs import get_logger
from opsbook.server.limits import BodyLimit, Limit
from opsbook.server.metrics import Metrics, MetricsMiddleware, security_headers
from opsbook.server.routing import add_routes, route_static_first
from opsbook.users import sessions
from opsbook.users.errors import AuthenticationError
from opsbook.web import (
    actions,
    actions_monitoring,
    admin,
    pages,
    pages_backups,
    pages_incidents,
    pages_lifecycle_cards,
    pages_lifecycle_changes,
    pages_lifecycle_metrics,
    pages_lifecycle_training,
    pages_logs,
    pages_monitoring,
    pages_releases,
    pages_security,
    pages_troubleshoot,
    signin,
)
from opsbook.web.render import render

STATIC = Path(__file__).resolve().parents[1] / "web" / "static"
DRAIN_SECONDS = 5.0
#: The Alertmanager webhook keeps its own body limit (1 MiB), whatever max_body_bytes says.
WEBHOOK_PATH = "/alerts/alertmanager"
WEBHOOK_HINT = "lower max_alerts in the Alertmanager webhook_config"
#: The loops only the leader runs, in the order they start (ADR 0017 §6).
LEADER_LOOPS = ("monitoring", "security", "backups")


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


def _problem_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> Response:
    return JSONResponse(
        body, status_code=int(body["status"]), media_type=problems.MEDIA_TYPE, headers=headers
    )


def _page(request: Request, status: int, title: str, message: str, hint: str | None) -> Response:
    from opsbook.api.auth import principal_of  # noqa: PLC0415

    try:
        who = principal_of(request) if request.method == "GET" else None
    except OpsbookError:
        who = None
    return render(
        request, "error.html", status=status, principal=who, title=title, message=message, hint=hint
    )


async def on_opsbook_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OpsbookError)
    if _is_api(request):
        headers = {"WWW-Authenticate": "Bearer"} if exc.http_status == 401 else None
        return _problem_response(problems.from_error(exc, request.url.path), headers)
    if isinstance(exc, AuthenticationError) and request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/signin?next={quote(target)}", status_code=303)
    titles = {401: "Sign in again", 403: "Not allowed", 404: "Not found", 409: "Not now"}
    return _page(
        request, exc.http_status, titles.get(exc.http_status, "Error"), exc.message, exc.hint
    )


async def on_validation_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    body = problems.from_validation(exc.errors(), request.url.path)
    if _is_api(request):
        return _problem_response(body)
    return _page(request, 422, "Check the form", body["detail"], body["hint"])


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
    if _is_api(request) or exc.status_code == 405:
        return _problem_response(
            problems.problem(
                exc.status_code, str(exc.detail), code=code, instance=request.url.path
            ),
            dict(exc.headers or {}),
        )
    return _page(request, exc.status_code, "Not found", "There is no such page.", None)


async def on_unexpected(request: Request, exc: Exception) -> Response:
    get_logger().error("server.error", exc_info=exc, fields={"path": request.url.path})
    body = problems.problem(
        500,
        "internal error: the server logged the details",
        code="internal",
        instance=request.url.path,
        hint="try again; if it persists, check .opsbook/logs/opsbook.log",
        retryable=True,
    )
    return _problem_response(body)


async def _limit_page(scope: Scope, status: int, message: str, hint: str) -> Response:
    """The console's error page for a body over the limit (see :mod:`opsbook.server.limits`)."""
    return _page(Request(scope), status, "Too much data", message, hint)


def _fence(reason: str) -> None:
    """A serve that could not beat for 0.75 × its lease may be declared dead, and its runs
    resumed elsewhere: it stops its steps and exits 70, as a worker does."""
    from opsbook.cluster.worker import fence  # noqa: PLC0415

    fence(reason)


async def _join_cluster(
    ctx: AppContext, stack: AsyncExitStack, on_fence: Callable[[str], None]
) -> str | None:
    """Register this serve and start its heartbeat (PostgreSQL or a broker); undone by
    ``stack``: heartbeat stopped, row marked stopped. Returns its worker id, or None."""
    if ctx.db.dialect != "postgresql" and ctx.settings.broker_url is None:
        return None  # one server on one SQLite file: nothing to coordinate
    from opsbook import __version__  # noqa: PLC0415
    from opsbook.cluster import registry  # noqa: PLC0415
    from opsbook.cluster.heartbeat import Heartbeat  # noqa: PLC0415

    timing = ctx.cluster
    me = registry.register(
        db=ctx.db,
        kind="serve",
        name=socket.gethostname(),
        queues=[],
        concurrency=0,
        version=__version__,
        lease_seconds=timing.lease,
    )

    def stopped() -> None:
        registry.set_state(db=ctx.db, worker_id=me.id, state="stopped")

    stack.callback(stopped)  # after the heartbeat stopped (a later beat would fence)
    heartbeat = Heartbeat(
        database_url=ctx.db.url,
        worker_id=me.id,
        interval=timing.heartbeat,
        fence_after=timing.fence_after,
        on_fence=on_fence,
    ).start()
    stack.push_async_callback(asyncio.to_thread, heartbeat.stop)
    return me.id


def _background_tasks(ctx: AppContext, worker_id: str | None) -> list[asyncio.Task[None]]:
    """The loops of a serve: schedules and the per-item-claim loops on every replica, the
    cluster's pass with a broker, the rest under the leader lock (``ctx.leader``)."""
    from opsbook.backup import background as backup_bg  # noqa: PLC0415
    from opsbook.cluster.leader import LeaderLock, while_leader  # noqa: PLC0415
    from opsbook.incidents import background as incidents_bg  # noqa: PLC0415
    from opsbook.incidents.alert_bridge import IncidentNotifier  # noqa: PLC0415
    from opsbook.lifecycle import background as lifecycle_bg  # noqa: PLC0415
    from opsbook.monitoring import background as monitoring_bg  # noqa: PLC0415
    from opsbook.secops import background as security_bg  # noqa: PLC0415

    tasks: list[asyncio.Task[None]] = []
    if ctx.server.schedules:
        from opsbook.server.schedules import run_schedules  # noqa: PLC0415

        tasks.append(asyncio.create_task(run_schedules(ctx)))
    # Escalated alerts open incidents (and the incidents page people).
    ctx.cache.setdefault(
        "monitoring.notifier", IncidentNotifier(db=ctx.db, workspace=ctx.workspace)
    )
    tasks.append(asyncio.create_task(incidents_bg.run_background(ctx)))
    tasks.append(asyncio.create_task(lifecycle_bg.run_background(ctx)))
    dispatcher = ctx.dispatcher
    if dispatcher is not None and worker_id is not None:
        from opsbook.cluster.background import run_background  # noqa: PLC0415
        from opsbook.cluster.dispatch import home_queue_in  # noqa: PLC0415

        cluster_pass = run_background(
            database_url=ctx.db.url,
            worker_id=worker_id,
            dispatcher=dispatcher,
            settings=ctx.cluster,
            stop=asyncio.Event(),  # the task is cancelled at shutdown
            home_queue_of=home_queue_in(ctx.workspace),
        )
        tasks.append(asyncio.create_task(cluster_pass))
    lock = ctx.leader = LeaderLock(
        ctx.db.url, poll=ctx.cluster.leader_poll, loops=LEADER_LOOPS, holder=worker_id
    )
    bodies: dict[str, Callable[[], Awaitable[None]]] = {
        "monitoring": lambda: monitoring_bg.run_background(ctx),
        "security": lambda: security_bg.run_background(ctx),
        "backups": lambda: backup_bg.run_background(ctx),
    }
    for name in LEADER_LOOPS:
        tasks.append(asyncio.create_task(while_leader(lock, name, bodies[name])))
    return tasks


def create_app(
    ctx: AppContext, *, background: bool = True, on_fence: Callable[[str], None] = _fence
) -> FastAPI:
    """The ASGI app for ``ctx``. ``background`` starts the background loops (schedules,
    monitoring, …, the cluster's membership) with the app. ``on_fence(reason)``: what this
    serve does when it could not beat in time (default: stop its steps, exit 70)."""

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sessions.purge_expired(db=ctx.db)
        ctx.start_checkpoints()
        from opsbook.audit import config_for  # noqa: PLC0415
        from opsbook.audit._signer import run_signer, sign_now  # noqa: PLC0415

        witness = config_for(
            workspace_root=ctx.workspace.root,
            settings=ctx.settings,
            providers=ctx.resolver.providers,
        )
        async with AsyncExitStack() as stack:  # undone in reverse, also when starting fails
            stack.callback(ctx.stop_database_threads)
            stack.callback(ctx.close_dispatcher)
            worker_id = await _join_cluster(ctx, stack, on_fence) if background else None
            stack.callback(sign_now, db=ctx.db, cfg=witness, signer="serve")  # the last records
            stack.push_async_callback(operations.drain, ctx, DRAIN_SECONDS)
            tasks = [asyncio.create_task(run_signer(db=ctx.db, cfg=witness))]
            if background:
                tasks.extend(_background_tasks(ctx, worker_id))
            stack.push_async_callback(_stop_tasks, ctx, tasks)
            yield

    app = FastAPI(
        title="opsbook",
        version=__version__,
        description="Executable, verified, audited operations runbooks: the REST API. "
        "Authenticate with `Authorization: Bearer obk_…` (create a token with "
        "`opsbook tokens create` or on your account page). Errors are RFC 9457 problems.",
        openapi_url="/api/v1/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
        # opsbook exports Prometheus metrics (/metrics), not OpenTelemetry: FastAPI's native
        # telemetry would look for configured providers on every request (~5 µs).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    app.state.ctx = ctx
    # Flat routes, not included routers: routing cost is most of a cheap request (ADR 0008).
    for router in api_routers():
        add_routes(app, router, prefix=PREFIX, responses=PROBLEMS)
    # pages_lifecycle_metrics before pages: /runbooks/stats is not the runbook "stats"
    web = (
        signin,
        pages_lifecycle_metrics,
        pages,
        actions,
        admin,
        pages_monitoring,
        actions_monitoring,
        pages_incidents,
        pages_lifecycle_changes,
        pages_lifecycle_cards,
        pages_lifecycle_training,
        pages_troubleshoot,
        pages_logs,
        pages_security,
        pages_backups,
        pages_releases,
    )
    for module in web:
        add_routes(app, module.router)
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")
    metrics = Metrics(ctx)
    app.add_route("/metrics", metrics.endpoint, include_in_schema=False)
    route_static_first(app)
    app.add_exception_handler(OpsbookError, on_opsbook_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
    # Innermost, so a refused body is counted by the metrics and has the security headers.
    app.add_middleware(
        BodyLimit,
        limit=ctx.settings.max_body_bytes_for(ctx.workspace.config),
        own={PREFIX + WEBHOOK_PATH: Limit(WEBHOOK_MAX_BODY, WEBHOOK_HINT)},
        page=_limit_page,
    )
    app.add_middleware(
        MetricsMiddleware,
        metrics=metrics,
        headers=security_headers(hsts=ctx.server.secure_cookies),
    )
    _add_problem_schema(app)
    return app


async def _stop_tasks(ctx: AppContext, tasks: list[asyncio.Task[None]]) -> None:
    """Cancel the background loops, then give up the leader lock (another replica takes
    it at its next poll)."""
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    lock, ctx.leader = ctx.leader, None
    if lock is not None:
        await asyncio.to_thread(lock.release)


def _add_problem_schema(app: FastAPI) -> None:
    """Make sure the Problem schema is in the spec even before a route references it."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        spec = original()
        from opsbook.api.schemas import Problem  # noqa: PLC0415

        comps = spec.setdefault("components", {}).setdefault("schemas", {})
        comps.setdefault(
            "Problem", Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        )
        spec["components"].setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An opsbook API token (obk_…)",
        }
        spec["security"] = [{"bearer": []}]
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
