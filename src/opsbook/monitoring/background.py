"""What `opsbook serve` runs in the background for monitoring: the probe scheduler of every
monitored environment, probe/SLO/KPI alert rules, escalation, the morning health check
reports, and pruning of old probe results.

The database connection is shared with the request handlers: it is used only from the event
loop's thread and no transaction spans an ``await``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from opsbook.executions.context import AppContext
    from opsbook.monitoring.config import MonitoringConfig
    from opsbook.monitoring.escalation import Notifier
    from opsbook.monitoring.rules import RuleState
    from opsbook.monitoring.scheduler import Scheduler
    from opsbook.monitoring.slo_prometheus import PrometheusSlos

FLUSH = 1.0  # seconds between writes of probe results
HOUSEKEEPING = 30.0  # seconds between SLO rules, escalation, reports
KPI_INTERVAL = 60.0
RELOAD_CHECK = 10.0
MORNING_PROCEDURE = ("system-monitoring", "morning-health-check")
REPORT_WITHIN = timedelta(minutes=15)  # a finished morning check gets its report this soon
REPORTS_PER_PASS = 2


def prometheus_slos(ctx: AppContext) -> PrometheusSlos:
    """The server's last evaluation of PromQL (Sloth) SLOs, refreshed by housekeeping."""
    from opsbook.monitoring.slo_prometheus import PrometheusSlos  # noqa: PLC0415

    found = ctx.cache.get("monitoring.prometheus_slos")
    if not isinstance(found, PrometheusSlos):
        found = ctx.cache["monitoring.prometheus_slos"] = PrometheusSlos()
    return found


@dataclass
class EnvMonitor:
    config: MonitoringConfig
    scheduler: Scheduler
    task: asyncio.Task[None]
    stamp: float
    last_kpi: float = 0.0
    kpi_scraper: Any = None


@dataclass
class Monitor:
    ctx: AppContext
    notifier: Notifier
    state: RuleState
    envs: dict[str, EnvMonitor] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)


def notifier_for(ctx: AppContext) -> Notifier:
    """The escalation notifier: ``ctx.cache["monitoring.notifier"]`` when another part of
    opsbook (incidents) put one there, else the log notifier."""
    from opsbook.monitoring.escalation import LogNotifier  # noqa: PLC0415

    found = ctx.cache.get("monitoring.notifier")
    return found if found is not None else LogNotifier()


async def run_background(ctx: AppContext) -> None:
    """Run until cancelled."""
    import httpx  # noqa: PLC0415

    from opsbook.logs import get_logger  # noqa: PLC0415
    from opsbook.monitoring.rules import RuleState  # noqa: PLC0415

    log = get_logger()
    mon = Monitor(ctx, notifier_for(ctx), RuleState.from_db(ctx.db))
    ctx.cache["monitoring.monitor"] = mon
    async with httpx.AsyncClient(follow_redirects=False) as client:
        try:
            next_house = time.monotonic() + 1.0
            next_reload = 0.0
            while True:
                now = time.monotonic()
                if now >= next_reload:
                    _reload(mon, client)
                    next_reload = now + RELOAD_CHECK
                _flush(mon)
                if now >= next_house:
                    try:
                        await _housekeeping(mon, client)
                    except Exception as exc:
                        log.error("monitoring.housekeeping", exc_info=exc)
                    next_house = now + float(
                        mon.ctx.workspace.config.get("monitoring", {}).get(
                            "housekeeping_seconds", HOUSEKEEPING
                        )
                    )
                await asyncio.sleep(FLUSH)
        finally:
            for em in mon.envs.values():
                em.task.cancel()
            await asyncio.gather(*(em.task for em in mon.envs.values()), return_exceptions=True)
            with contextlib.suppress(Exception):
                _flush(mon)


def _reload(mon: Monitor, client: Any) -> None:
    """(Re)start an environment's scheduler when its file changed."""
    from opsbook.errors import OpsbookError  # noqa: PLC0415
    from opsbook.logs import get_logger  # noqa: PLC0415
    from opsbook.monitoring.config import load_monitoring, monitored_environments  # noqa: PLC0415
    from opsbook.monitoring.kpis import KpiScraper  # noqa: PLC0415
    from opsbook.monitoring.probes import run_probe  # noqa: PLC0415
    from opsbook.monitoring.scheduler import Scheduler  # noqa: PLC0415

    ws = mon.ctx.workspace
    for env in monitored_environments(ws):
        path = ws.environments_dir / f"{env}.yaml"
        stamp = path.stat().st_mtime if path.exists() else -1.0
        current = mon.envs.get(env)
        if current is not None and current.stamp == stamp:
            continue
        try:
            config = load_monitoring(ws, env)
        except OpsbookError as exc:
            mon.errors[env] = exc.render()
            get_logger().error(
                "monitoring.config", fields={"environment": env, "error": exc.render()}
            )
            continue
        mon.errors.pop(env, None)
        if current is not None:
            current.task.cancel()
            mon.envs.pop(env)

        async def one(p: Any, config: MonitoringConfig = config) -> Any:
            return await run_probe(p, config=config, client=client, root=ws.root)

        scheduler = Scheduler(config.probes, one)
        task = asyncio.create_task(scheduler.run())
        mon.envs[env] = EnvMonitor(
            config, scheduler, task, stamp, kpi_scraper=KpiScraper(config.metrics_urls)
        )


def _flush(mon: Monitor) -> None:
    """Store new probe results and fire/resolve probe alerts."""
    from opsbook.monitoring import rules, store  # noqa: PLC0415

    now = datetime.now(UTC)
    for em in mon.envs.values():
        results = em.scheduler.take()
        if not results:
            continue
        store.record_results(mon.ctx.db, environment=em.config.environment, results=results)
        fired = rules.probe_alerts(config=em.config, results=results, state=mon.state, now=now)
        rules.apply(mon.ctx.db, config=em.config, fired=fired, now=now)


async def _housekeeping(mon: Monitor, client: Any) -> None:
    from opsbook.monitoring import autorun, escalation, kpis, rules, store  # noqa: PLC0415

    db = mon.ctx.db
    now = datetime.now(UTC)
    ts = int(now.timestamp())
    levels = escalation.load_levels(_contacts(mon.ctx))
    prometheus = prometheus_slos(mon.ctx)
    for em in mon.envs.values():
        if any(s.error_query for s in em.config.slos):  # PromQL SLOs: HTTP, off the loop
            await asyncio.to_thread(prometheus.refresh, em.config, now=ts)
        fired = rules.slo_alerts(
            db, config=em.config, state=mon.state, now=now, prometheus=prometheus
        )
        if em.config.metrics_urls and time.monotonic() - em.last_kpi >= KPI_INTERVAL:
            em.last_kpi = time.monotonic()
            values = await em.kpi_scraper.scrape(client)
            if values:
                kpis.store_kpis(db, environment=em.config.environment, values=values, ts=ts)
                fired += rules.kpi_alerts(config=em.config, values=values, state=mon.state, now=now)
        rules.apply(db, config=em.config, fired=fired, now=now)
        await autorun.run_due(
            mon.ctx, rules=em.config.auto_run, environment=em.config.environment, now=now
        )
        escalation.escalate(
            db,
            rules=em.config.escalation,
            levels=levels,
            notifier=mon.notifier,
            now=now,
            environment=em.config.environment,
        )
    make_health_reports(mon.ctx, now=now)
    if ts % 3600 < HOUSEKEEPING:
        store.prune(db, now=ts)


def _contacts(ctx: AppContext) -> dict[str, Any]:
    from opsbook import yamlsafe  # noqa: PLC0415 - refuses YAML aliases (issue 16 §3)
    from opsbook.errors import ValidationError  # noqa: PLC0415

    try:
        path = ctx.workspace.contacts_path
        data = yamlsafe.load_file(path, what="the contacts file", kind="contacts.yaml").data
    except (OSError, ValidationError):  # bad YAML, aliases: no levels, the loop goes on
        return {}
    return data if isinstance(data, dict) else {}


def make_health_reports(
    ctx: AppContext, *, now: datetime | None = None, limit: int = REPORTS_PER_PASS
) -> list[str]:
    """A report for each morning health check that finished in the last ``REPORT_WITHIN``
    and has none yet, at most ``limit`` a pass (each takes ~25 ms of the event loop).

    The report describes the platform when the check ran, so an older run without one is
    not given one now (``opsbook monitor health-report --execution ID`` builds it by hand)."""
    from opsbook.errors import OpsbookError  # noqa: PLC0415
    from opsbook.monitoring import health  # noqa: PLC0415
    from opsbook.monitoring.config import load_monitoring  # noqa: PLC0415

    db = ctx.db
    when = now or datetime.now(UTC)
    since = (when - REPORT_WITHIN).isoformat(timespec="microseconds").replace("+00:00", "Z")
    rows = db.query(
        "SELECT e.id, e.environment FROM executions e LEFT JOIN mon_health_reports h"
        " ON h.execution_id = e.id WHERE e.runbook_id = ? AND e.procedure_id = ?"
        " AND e.finished_at >= ? AND h.execution_id IS NULL ORDER BY e.created_at LIMIT ?",
        (*MORNING_PROCEDURE, since, limit),
    )
    made = []
    for row in rows:
        try:
            config = load_monitoring(ctx.workspace, str(row["environment"]))
        except OpsbookError:
            continue
        data = health.health_data(
            db,
            config=config,
            results=latest_results(db, config),
            now=now,
            execution_id=str(row["id"]),
            prometheus=prometheus_slos(ctx),
        )
        health.store_report(
            db, execution_id=str(row["id"]), environment=config.environment, data=data
        )
        made.append(str(row["id"]))
    return made


def latest_results(db: Any, config: MonitoringConfig) -> list[Any]:
    """The newest stored result of each configured probe, as ProbeResults."""
    from opsbook.monitoring import store  # noqa: PLC0415
    from opsbook.monitoring.probes import ProbeResult  # noqa: PLC0415

    by_name = {str(r["probe"]): r for r in store.latest(db, environment=config.environment)}
    out = []
    for p in config.probes:
        r = by_name.get(p.name)
        if r is None:
            out.append(ProbeResult(p.name, p.service, p.kind, False, 0, 0, "no result yet"))
        else:
            out.append(
                ProbeResult(
                    p.name,
                    p.service,
                    p.kind,
                    bool(r["ok"]),
                    int(r["latency_ms"]),
                    int(r["ts"]),
                    str(r["detail"] or ""),
                )
            )
    return out
