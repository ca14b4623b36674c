"""`opsbook monitor|alerts|report` (system monitoring). Heavy imports stay inside commands."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]
EnvOpt = Annotated[
    str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
]
AsOpt = Annotated[str | None, typer.Option("--as", help="Act as this user (recorded in audit)")]


def _env(st: AppState, env: str | None) -> tuple[Any, str]:
    ws = st.workspace()
    return ws, env or ws.default_environment


def _seconds(text: str, flag: str) -> float:
    from opsbook.durations import parse_duration  # noqa: PLC0415
    from opsbook.errors import UsageError  # noqa: PLC0415

    try:
        return parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"{flag} {text!r} is not a duration", hint="e.g. 30m, 2h, 1d") from exc


def _table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    typer.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for r in rows:
        typer.echo("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())


def register(app: typer.Typer) -> None:
    """Add the monitoring command groups to ``app``."""
    mon = typer.Typer(help="Probes, SLOs, KPIs and baselines.", no_args_is_help=True)
    al = typer.Typer(help="Alerts: list, acknowledge, silence.", no_args_is_help=True)
    rep = typer.Typer(help="Reports per calendar month: SLA, runbooks.", no_args_is_help=True)
    app.add_typer(mon, name="monitor")
    app.add_typer(al, name="alerts")
    app.add_typer(rep, name="report")
    _monitor(mon)
    _alerts(al)
    _report(rep)
    _runbook_report(rep)


def _monitor(mon: typer.Typer) -> None:
    @mon.command("check")
    def check(
        ctx: typer.Context,
        env: EnvOpt = None,
        json_out: JsonOpt = False,
        store: Annotated[bool, typer.Option(help="Store the results (SLA history)")] = True,
    ) -> int:
        """Run every probe of the environment once and print a table; exit 1 if any fails.

        With the results stored (the default), it fires and resolves ProbeFailing alerts
        like `opsbook serve` does (after the probe's failures_to_alert failures in a row)."""
        import asyncio  # noqa: PLC0415

        from opsbook.monitoring.service import check as do_check  # noqa: PLC0415

        st: AppState = ctx.obj
        ws, name = _env(st, env)
        db = open_db(ws, st.settings) if store else None
        config, results = asyncio.run(do_check(workspace=ws, environment=name, db=db))
        failed = [r for r in results if not r.ok]
        raised: list[dict[str, str]] = []
        if db is not None:  # the rules serve applies: alerts fire and resolve from the CLI too
            from opsbook.monitoring.probe_alerts import raise_probe_alerts  # noqa: PLC0415

            raised = [
                {
                    "alertname": a.alertname,
                    "probe": a.labels.get("probe", ""),
                    "service": a.labels.get("service", ""),
                    "status": a.status,
                }
                for a in raise_probe_alerts(db, config=config, results=results)
            ]
        if json_out:
            print_json(
                {
                    "environment": name,
                    "ok": not failed,
                    "results": [r.to_dict() for r in results],
                    "alerts": raised,
                }
            )
        elif not results:
            typer.echo(
                f"no probes defined for {name} (add probes: to services in {config.path.name})"
            )
        else:
            _table(
                ["SERVICE", "PROBE", "KIND", "STATUS", "LATENCY", "DETAIL"],
                [
                    [
                        r.service,
                        r.probe,
                        r.kind,
                        "ok" if r.ok else "FAIL",
                        f"{r.latency_ms} ms",
                        r.detail,
                    ]
                    for r in results
                ],
            )
            typer.echo(f"\n{len(results) - len(failed)}/{len(results)} probes ok")
            for a in raised:
                typer.echo(f"alert {a['alertname']} {a['status']}: {a['probe']} ({a['service']})")
        return 1 if failed else 0

    @mon.command("slo")
    def slo_cmd(
        ctx: typer.Context,
        env: EnvOpt = None,
        sloth: Annotated[Path | None, typer.Option(help="Check a Sloth SLO spec file")] = None,
        json_out: JsonOpt = False,
    ) -> int:
        """Error budgets and multi-window burn rates of the environment's SLOs."""
        from opsbook.monitoring.config import load_monitoring  # noqa: PLC0415
        from opsbook.monitoring.service import slo_statuses  # noqa: PLC0415
        from opsbook.monitoring.slo_specs import parse_sloth  # noqa: PLC0415

        st: AppState = ctx.obj
        ws, name = _env(st, env)
        config = load_monitoring(ws, name)
        if sloth is not None:
            slos = parse_sloth(sloth.resolve(), config.services)
            data: list[dict[str, Any]] = [
                {
                    "name": s.name,
                    "service": s.service,
                    "objective": s.objective,
                    "error_budget": s.budget,
                    "error_query": s.error_query,
                }
                for s in slos
            ]
        else:
            data = slo_statuses(db=open_db(ws, st.settings), config=config)
        if json_out:
            print_json(data)
            return 0
        rows = []
        for s in data:
            rem = s.get("budget_remaining")
            rows.append(
                [
                    str(s["name"]),
                    str(s["service"]),
                    f"{s['objective']:g}%",
                    str(s.get("evaluated_by") or ("prometheus" if s.get("error_query") else "-")),
                    "—" if rem is None else f"{rem * 100:.1f}%",
                    str(s.get("alert") or "-"),
                ]
            )
        _table(["SLO", "SERVICE", "OBJECTIVE", "SLI", "BUDGET LEFT", "ALERT"], rows)
        for s in data:
            if s.get("error"):
                typer.echo(f"{s['name']}: {s['error']}", err=True)
        return 0

    @mon.command("kpis")
    def kpis_cmd(
        ctx: typer.Context,
        env: EnvOpt = None,
        interval: Annotated[float, typer.Option(help="Seconds between the two scrapes")] = 5.0,
        json_out: JsonOpt = False,
    ) -> int:
        """Scrape every service's /metrics twice and print (and store) the KPIs between."""
        import asyncio  # noqa: PLC0415
        import time  # noqa: PLC0415

        import httpx  # noqa: PLC0415

        from opsbook.monitoring.config import load_monitoring  # noqa: PLC0415
        from opsbook.monitoring.kpis import KpiScraper, store_kpis  # noqa: PLC0415

        st: AppState = ctx.obj
        ws, name = _env(st, env)
        config = load_monitoring(ws, name)
        scraper = KpiScraper(config.metrics_urls)

        async def go() -> dict[str, dict[str, float]]:
            async with httpx.AsyncClient() as client:
                await scraper.scrape(client)
                await asyncio.sleep(max(0.1, interval))
                return await scraper.scrape(client)

        values = asyncio.run(go())
        store_kpis(open_db(ws, st.settings), environment=name, values=values, ts=int(time.time()))
        if json_out:
            print_json(values)
            return 0
        kpis = sorted({k for v in values.values() for k in v})
        _table(
            ["SERVICE", *[k.upper() for k in kpis]],
            [[svc, *[f"{v[k]:.4g}" if k in v else "-" for k in kpis]] for svc, v in values.items()],
        )
        return 0

    @mon.command("baseline")
    def baseline_cmd(
        ctx: typer.Context,
        env: EnvOpt = None,
        days: Annotated[int, typer.Option(help="Window: days of KPI history")] = 28,
        service: Annotated[list[str] | None, typer.Option(help="Only these services")] = None,
        kpi: Annotated[list[str] | None, typer.Option(help="Only these KPIs")] = None,
        json_out: JsonOpt = False,
    ) -> int:
        """Weekday × hour baselines of stored KPIs and proposed alert thresholds (YAML)."""
        import time  # noqa: PLC0415

        from opsbook.monitoring import baseline  # noqa: PLC0415
        from opsbook.monitoring.config import load_monitoring  # noqa: PLC0415
        from opsbook.monitoring.kpis import KPIS  # noqa: PLC0415

        st: AppState = ctx.obj
        ws, name = _env(st, env)
        config = load_monitoring(ws, name)
        db = open_db(ws, st.settings)
        now = int(time.time())
        found = [
            baseline.baseline(db, environment=name, service=s, kpi=k, days=days, now=now)
            for s in (service or list(config.services))
            for k in (kpi or list(KPIS))
        ]
        found = [b for b in found if b.samples]
        if json_out:
            print_json(
                {
                    "baselines": [b.to_dict() for b in found],
                    "proposal": baseline.proposal_yaml(found, days=days),
                }
            )
            return 0
        if not found:
            typer.echo(
                f"no KPI history for {name} in the last {days} days: "
                "`opsbook serve` records KPIs every minute (or run `opsbook monitor kpis`)"
            )
            return 1
        for b in found:
            worst = max(b.slots, key=lambda s: s.threshold, default=None)
            typer.echo(
                f"{b.service} {b.kpi}: {b.samples} samples, {len(b.slots)} weekly slots"
                + (f", loosest slot {worst.label}" if worst else "")
            )
        typer.echo("")
        typer.echo(baseline.proposal_yaml(found, days=days), nl=False)
        return 0

    @mon.command("health-report")
    def health_report(
        ctx: typer.Context,
        execution: Annotated[str | None, typer.Option(help="Execution id to attach to")] = None,
        env: EnvOpt = None,
        fmt: Annotated[str, typer.Option("--format", help="md or html")] = "md",
        probes: Annotated[bool, typer.Option(help="Run the probes now (else use stored)")] = True,
        out: Annotated[Path | None, typer.Option(help="Write to this file")] = None,
    ) -> int:
        """Make the morning health check report (stored with --execution) and print it."""
        import asyncio  # noqa: PLC0415

        from opsbook.monitoring import health, render  # noqa: PLC0415
        from opsbook.monitoring.background import latest_results  # noqa: PLC0415
        from opsbook.monitoring.config import load_monitoring  # noqa: PLC0415
        from opsbook.monitoring.service import check as do_check  # noqa: PLC0415

        st: AppState = ctx.obj
        ws, name = _env(st, env)
        db = open_db(ws, st.settings)
        if probes:
            config, results = asyncio.run(do_check(workspace=ws, environment=name, db=db))
        else:
            config = load_monitoring(ws, name)
            results = latest_results(db, config)
        data = health.health_data(db, config=config, results=results, execution_id=execution)
        if execution:
            md, html = health.store_report(db, execution_id=execution, environment=name, data=data)
        else:
            md, html = render.health_markdown(data), render.health_html(data)
        text = html if fmt == "html" else md
        if out:
            out.write_text(text, encoding="utf-8")
        else:
            sys.stdout.write(text)
        return 0 if data["ok"] else 1


def _alerts(al: typer.Typer) -> None:
    @al.command("list")
    def list_cmd(
        ctx: typer.Context,
        all_: Annotated[bool, typer.Option("--all", help="Resolved alerts too")] = False,
        since: Annotated[str | None, typer.Option(help="Only received within, e.g. 24h")] = None,
        json_out: JsonOpt = False,
    ) -> int:
        """Firing alerts (newest first), with acknowledgement, silence and runbook."""
        from datetime import UTC, datetime, timedelta  # noqa: PLC0415

        from opsbook.monitoring import alerts  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        after = datetime.now(UTC) - timedelta(seconds=_seconds(since, "--since")) if since else None
        rows = alerts.list_alerts(db, status=None if all_ else "firing", since=after)
        if json_out:
            print_json(rows)
            return 0
        if not rows:
            typer.echo("no alerts" if all_ else "no firing alerts")
            return 0
        _table(
            ["ID", "STATUS", "SEVERITY", "ALERT", "SERVICE", "SINCE", "ACK", "RUNBOOK"],
            [
                [
                    str(r["id"]),
                    r["status"] + (" (silenced)" if r["silenced"] else ""),
                    str(r["severity"]),
                    str(r["alertname"]),
                    str(r["service"] or "-"),
                    str(r["starts_at"]),
                    str(r["acked_by"] or "-"),
                    str(r["runbook"] or "-"),
                ]
                for r in rows
            ],
        )
        return 0

    @al.command("ack")
    def ack(
        ctx: typer.Context,
        alert: Annotated[str, typer.Argument(help="Alert id or fingerprint")],
        comment: Annotated[str, typer.Option(help="What you are doing about it")] = "",
        as_user: AsOpt = None,
    ) -> int:
        """Acknowledge a firing alert (stops its escalation)."""
        from opsbook.monitoring import alerts  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        row = alerts.acknowledge(db, ref=alert, actor=st.user(as_user), comment=comment)
        typer.echo(f"alert {row['id']} {row['alertname']} acknowledged by {row['acked_by']}")
        return 0

    @al.command("silence")
    def silence(
        ctx: typer.Context,
        match: Annotated[
            list[str],
            typer.Option(
                "--match",
                help="label=value, label!=value, label=~regex or label!~regex (repeatable;"
                " all must match)",
            ),
        ],
        for_: Annotated[str, typer.Option("--for", help="How long, e.g. 2h")],
        comment: Annotated[str, typer.Option(help="Why (required)")],
        as_user: AsOpt = None,
        json_out: JsonOpt = False,
    ) -> int:
        """Silence the alerts matching every --match until it expires."""
        from datetime import timedelta  # noqa: PLC0415

        from opsbook.monitoring import alerts, matchers  # noqa: PLC0415

        # Each --match may hold several (a="x",b="y"); errors name the option.
        rules = [str(r) for m in match for r in matchers.parse_list(m, field="--match")]
        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        row = alerts.create_silence(
            db,
            matchers=rules,
            duration=timedelta(seconds=_seconds(for_, "--for")),
            actor=st.user(as_user),
            comment=comment,
        )
        if json_out:
            print_json(row)
        else:
            typer.echo(f"silence {row['id']} until {row['ends_at']} by {row['created_by']}")
        return 0

    @al.command("silences")
    def silences(
        ctx: typer.Context,
        all_: Annotated[bool, typer.Option("--all", help="Expired silences too")] = False,
        json_out: JsonOpt = False,
    ) -> int:
        """Active silences (who, why, until when)."""
        from opsbook.monitoring import alerts  # noqa: PLC0415

        st: AppState = ctx.obj
        rows = alerts.list_silences(open_db(st.workspace(), st.settings), include_expired=all_)
        if json_out:
            print_json(rows)
            return 0
        _table(
            ["ID", "MATCHERS", "UNTIL", "BY", "WHY"],
            [
                [
                    str(r["id"]),
                    " ".join(r["matchers"]),
                    str(r["ends_at"]),
                    str(r["created_by"]),
                    str(r["comment"]),
                ]
                for r in rows
            ],
        )
        return 0

    @al.command("expire")
    def expire(ctx: typer.Context, silence_id: int, as_user: AsOpt = None) -> int:
        """End a silence now."""
        from opsbook.monitoring import alerts  # noqa: PLC0415

        st: AppState = ctx.obj
        db = open_db(st.workspace(), st.settings)
        alerts.expire_silence(db, silence_id=silence_id, actor=st.user(as_user))
        typer.echo(f"silence {silence_id} expired")
        return 0


def _report(rep: typer.Typer) -> None:
    @rep.command("sla")
    def sla(
        ctx: typer.Context,
        month: Annotated[str, typer.Option(help="Calendar month, YYYY-MM (UTC)")],
        env: EnvOpt = None,
        fmt: Annotated[str, typer.Option("--format", help="md, html, pdf or json")] = "md",
        out: Annotated[Path | None, typer.Option(help="Write to this file")] = None,
    ) -> int:
        """Availability per service for a calendar month, excluding approved maintenance.
        PDF is the HTML report printed by a headless Chromium (needs --out)."""
        import json  # noqa: PLC0415

        from opsbook.errors import UsageError  # noqa: PLC0415
        from opsbook.monitoring import render  # noqa: PLC0415
        from opsbook.monitoring.config import load_monitoring  # noqa: PLC0415
        from opsbook.monitoring.sla import sla_report  # noqa: PLC0415

        if fmt not in ("md", "html", "pdf", "json"):
            raise UsageError(f"--format {fmt!r} is not supported", hint="use md, html, pdf or json")
        if fmt == "pdf" and out is None:
            raise UsageError("--format pdf writes a file", hint="add --out sla-2026-11.pdf")
        st: AppState = ctx.obj
        ws, name = _env(st, env)
        report = sla_report(open_db(ws, st.settings), config=load_monitoring(ws, name), month=month)
        if fmt == "pdf" and out is not None:
            from opsbook.monitoring.pdf import html_to_pdf  # noqa: PLC0415

            typer.echo(f"wrote {html_to_pdf(render.sla_html(report), out)}")
            return 0
        if fmt == "json":
            text = json.dumps(report.to_dict(), indent=2, default=str) + "\n"
        else:
            text = render.sla_html(report) if fmt == "html" else render.sla_markdown(report)
        if out:
            out.write_text(text, encoding="utf-8")
            typer.echo(f"wrote {out}")
        else:
            sys.stdout.write(text)
        return 0


def _runbook_report(rep: typer.Typer) -> None:
    """`opsbook report runbooks` (issue 15): the monthly runbook report."""

    @rep.command("runbooks")
    def runbooks(
        ctx: typer.Context,
        month: Annotated[str, typer.Option(help="Calendar month, YYYY-MM (UTC)")],
        json_out: JsonOpt = False,
        out: Annotated[
            Path | None, typer.Option(help="Write to this file: .html or .md (default: stdout)")
        ] = None,
    ) -> int:
        """Runbook metrics of a month: runs, success, durations, worst procedures, feedback
        comments, overdue reviews, accuracy signals, training."""
        import json  # noqa: PLC0415

        from opsbook.cli._common import catalogue  # noqa: PLC0415
        from opsbook.errors import UsageError  # noqa: PLC0415
        from opsbook.lifecycle import runbook_report as rr  # noqa: PLC0415

        if out is not None and out.suffix.lower() not in (".html", ".htm", ".md"):
            raise UsageError(
                f"--out {out} is neither .html nor .md",
                field="--out",
                hint="e.g. --out runbooks-2026-11.html (or --json for data)",
            )
        st: AppState = ctx.obj
        ws = st.workspace()
        report = rr.runbook_report(open_db(ws, st.settings), catalogue=catalogue(ws), month=month)
        if json_out:
            text = json.dumps(report.to_dict(), indent=2, default=str) + "\n"
        elif out is not None and out.suffix.lower() in (".html", ".htm"):
            text = rr.html(report)
        else:
            text = rr.markdown(report)
        if out:
            out.write_text(text, encoding="utf-8")
            typer.echo(f"wrote {out}")
        else:
            sys.stdout.write(text)
        return 0
