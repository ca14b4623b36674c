"""``opsbook sandbox``: the local banking platform. Thin: every command calls
:mod:`opsbook.sandbox.lifecycle` / :mod:`opsbook.sandbox.chaos` and renders the result.

Runnable on its own: ``python -m opsbook.cli.sandbox up``.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from opsbook.workspace import Workspace

app = typer.Typer(
    help="The sandbox banking platform: real services, ledger, metrics and fault injection "
    "on 127.0.0.1.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
chaos_app = typer.Typer(
    help="Fault injection: inject, list and clear faults.",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(chaos_app, name="chaos")

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of text")]
EnvOpt = Annotated[str, typer.Option("--env", "-e", help="The sandbox environment file")]


def _workspace(ctx: typer.Context) -> Workspace:
    from opsbook.workspace import find_workspace  # noqa: PLC0415

    obj = ctx.obj
    if isinstance(obj, dict):
        explicit = obj.get("workspace")
    else:
        explicit = getattr(obj, "workspace_arg", None)
    return find_workspace(explicit)


def _wants_json(ctx: typer.Context, flag: bool) -> bool:
    return flag or (isinstance(ctx.obj, dict) and bool(ctx.obj.get("json")))


def _print_json(data: Any) -> None:
    import json  # noqa: PLC0415

    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def _actor(as_user: str | None) -> str:
    import getpass  # noqa: PLC0415
    import os  # noqa: PLC0415

    return as_user or os.environ.get("OPSBOOK_USER") or getpass.getuser()


def _age(seconds: float) -> str:
    s = int(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60}s"
    return f"{s // 3600}h{s % 3600 // 60}m"


# -- up / down / status ----------------------------------------------------------------------


@app.command()
def up(
    ctx: typer.Context,
    env: EnvOpt = "sandbox",
    strict_ports: Annotated[
        bool,
        typer.Option(
            "--strict-ports",
            help="Fail when a configured port is taken (default: pick a free one "
            "and write it back to the environment file)",
        ),
    ] = False,
    reuse: Annotated[
        bool,
        typer.Option("--reuse", help="If the sandbox is already up, say where it is and succeed"),
    ] = False,
    db: Annotated[
        str | None,
        typer.Option(
            "--db",
            help="The ledger's database: sqlite (embedded, the default) or postgres (clusters "
            "the sandbox runs itself, WAL archived by pgBackRest); remembered in the "
            "environment file",
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Start the sandbox and wait until every service is healthy."""
    from opsbook.errors import UsageError  # noqa: PLC0415
    from opsbook.sandbox import lifecycle  # noqa: PLC0415

    if db is not None and db not in ("sqlite", "postgres"):
        raise UsageError(f"unknown ledger database {db!r}", field="--db", hint="sqlite or postgres")
    result = lifecycle.up(
        workspace=_workspace(ctx), env_name=env, strict_ports=strict_ports, reuse=reuse, db=db
    )
    if _wants_json(ctx, json_out):
        _print_json(
            {
                "elapsed": round(result.elapsed, 3),
                "already_up": result.already_up,
                "port_changes": [c.__dict__ for c in result.port_changes],
                "status": result.status,
            }
        )
        return
    st = result.status
    head = "already up" if result.already_up else f"up in {result.elapsed:.1f}s"
    typer.echo(f"sandbox {head}: {len(st['services'])} services healthy")
    for change in result.port_changes:
        typer.echo(
            f"  note: {change.what} port {change.old or '(none)'} was {change.reason}; "
            f"using {change.new} (written to {result.config.env_path})"
        )
    for svc in st["services"]:
        typer.echo(
            f"  {svc['name']:<13} {svc['url']:<24} {svc['replicas']} replica(s)  "
            f"health {svc['url']}/health  metrics {svc['url']}/metrics"
        )
    typer.echo(f"  {'gateway':<13} {st['gateway']}/api/<service>/...")
    if st.get("payment_network"):
        typer.echo(f"  {'payment net':<13} {st['payment_network']['url']} (simulated, TLS)")
    typer.echo(f"  {'ledger':<13} {st['database']}")
    typer.echo(f"  {'logs':<13} {st['data_dir']}/logs/")
    typer.echo(
        "next: opsbook sandbox status | opsbook sandbox chaos list --all | "
        "stop it with: opsbook sandbox down"
    )


@app.command()
def down(ctx: typer.Context, env: EnvOpt = "sandbox", json_out: JsonOpt = False) -> None:
    """Stop every sandbox process (verified by pid)."""
    from opsbook.sandbox import lifecycle  # noqa: PLC0415

    result = lifecycle.down(workspace=_workspace(ctx), env_name=env)
    if _wants_json(ctx, json_out):
        _print_json(
            {
                "was_running": result.was_running,
                "stale": result.stale,
                "stopped": result.stopped,
                "killed": result.killed,
                "elapsed": round(result.elapsed, 3),
            }
        )
        return
    if not result.was_running:
        typer.echo("the sandbox is not running; nothing to stop")
        return
    what = "cleaned up a stale sandbox record" if result.stale else "sandbox stopped"
    typer.echo(
        f"{what}: {len(result.stopped)} process(es) gone in {result.elapsed:.1f}s "
        "(ledger and logs kept)"
    )


@app.command()
def status(ctx: typer.Context, env: EnvOpt = "sandbox", json_out: JsonOpt = False) -> None:
    """The services like `kubectl get pods`: replicas, state, restarts, age, CPU, memory."""
    from opsbook.sandbox import lifecycle  # noqa: PLC0415

    st = lifecycle.status(workspace=_workspace(ctx), env_name=env)
    if _wants_json(ctx, json_out):
        _print_json(st)
        return
    rows = [
        ("NAME", "READY", "STATUS", "RESTARTS", "AGE", "VERSION", "REV", "CPU", "MEMORY", "PORT")
    ]
    for s in st["services"]:
        rows.append(
            (
                s["name"],
                f"{s['ready']}/{s['replicas']}",
                s["state"],
                str(s["restarts"]),
                _age(s["uptime"]),
                s["version"],
                str(s["revision"]),
                f"{s['cpu']:.1f}%",
                f"{s['memory']:.0f}Mi",
                str(s["port"]),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        typer.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
    net = st.get("payment_network") or {}
    typer.echo(
        f"\npayment network {net.get('url')} {net.get('state')}; gateway {st['gateway']}; "
        f"supervisor pid {st['supervisor']['pid']}"
    )
    for fault in st.get("faults", []):
        left = f", {fault['remaining']:.0f}s left" if fault.get("remaining") else ""
        typer.echo(
            f"FAULT {fault['fault']} on {fault['target']} (by {fault['by']}{left}; "
            f"ends by {fault['ended_by']})"
        )


@app.command()
def releases(ctx: typer.Context, env: EnvOpt = "sandbox", json_out: JsonOpt = False) -> None:
    """The release catalogue: the versions each service can deploy and how each behaves, with
    what runs now (and a release in progress, its traffic share) when the sandbox is up."""
    from opsbook.errors import OpsbookError  # noqa: PLC0415
    from opsbook.sandbox import lifecycle  # noqa: PLC0415
    from opsbook.sandbox.config import SERVICES  # noqa: PLC0415
    from opsbook.sandbox.releases import catalogue  # noqa: PLC0415

    running: dict[str, Any] = {}
    try:
        st = lifecycle.status(workspace=_workspace(ctx), env_name=env)
        running = {s["name"]: s for s in st.get("services", [])}
    except OpsbookError:
        pass  # not running: the catalogue alone
    out: dict[str, Any] = {
        "releases": catalogue(SERVICES),
        "running": {
            n: {
                "version": s.get("version"),
                "revision": s.get("revision"),
                "in_progress": s.get("standby"),
            }
            for n, s in running.items()
        },
    }
    if _wants_json(ctx, json_out):
        _print_json(out)
        return
    first = next(iter(out["releases"].values()))
    for r in first:
        typer.echo(f"{r['version']:<8} {r['behaviour']:<8} {r['summary']}")
    typer.echo("(every service has these releases)")
    for name, s in out["running"].items():
        extra = ""
        if s["in_progress"]:
            p = s["in_progress"]
            extra = f"; {p['version']} {p['status']} at {p.get('weight', 0)}% of traffic"
        typer.echo(f"{name:<13} runs {s['version']} (revision {s['revision']}){extra}")


@app.command()
def logs(
    ctx: typer.Context,
    service: Annotated[
        str,
        typer.Argument(
            help="account, transaction, payment, notification, payment-network or supervisor"
        ),
    ],
    lines: Annotated[int, typer.Option("--lines", "-n", help="How many lines")] = 50,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new lines")] = False,
    env: EnvOpt = "sandbox",
    json_out: JsonOpt = False,
) -> None:
    """The last lines of a service's structured (JSON) logs."""
    import time  # noqa: PLC0415

    from opsbook.errors import UsageError  # noqa: PLC0415
    from opsbook.sandbox import lifecycle  # noqa: PLC0415
    from opsbook.sandbox.config import SERVICES  # noqa: PLC0415
    from opsbook.sandbox.logtail import parse, tail_lines  # noqa: PLC0415

    known = (*SERVICES, "payment-network", "supervisor")
    if service not in known:
        raise UsageError(f"unknown service {service!r}", hint=f"use one of: {', '.join(known)}")
    path = (
        lifecycle.data_dir_of(workspace=_workspace(ctx), env_name=env) / "logs" / f"{service}.log"
    )
    found = tail_lines(path, lines)
    if _wants_json(ctx, json_out):
        _print_json({"service": service, "file": str(path), "lines": [parse(x) for x in found]})
        return
    for line in found:
        typer.echo(line)
    if follow:
        size = path.stat().st_size if path.exists() else 0
        try:
            while True:
                time.sleep(0.3)
                if path.exists() and path.stat().st_size > size:
                    with path.open("rb") as f:
                        f.seek(size)
                        chunk = f.read()
                    size += len(chunk)
                    sys.stdout.write(chunk.decode("utf-8", errors="replace"))
                    sys.stdout.flush()
        except KeyboardInterrupt:
            return


@app.command()
def load(
    ctx: typer.Context,
    rate: Annotated[float, typer.Option("--rate", "-r", help="Requests per second")] = 50.0,
    duration: Annotated[str, typer.Option("--duration", "-d", help="How long, e.g. 30s")] = "10s",
    env: EnvOpt = "sandbox",
    json_out: JsonOpt = False,
) -> None:
    """Realistic customer traffic at a fixed rate, then the ledger invariants (exit 1 if broken)."""
    import asyncio  # noqa: PLC0415

    from opsbook.errors import UsageError  # noqa: PLC0415
    from opsbook.sandbox import lifecycle  # noqa: PLC0415
    from opsbook.sandbox.faults import parse_duration  # noqa: PLC0415
    from opsbook.sandbox.load import run_load  # noqa: PLC0415

    seconds = parse_duration(duration) or 10.0
    if not 0 < rate <= 5000:
        raise UsageError("--rate must be between 0 and 5000 requests per second")
    ws = _workspace(ctx)
    st = lifecycle.status(workspace=ws, env_name=env)
    urls = {s["name"]: s["url"] for s in st["services"]}
    report = asyncio.run(
        run_load(
            urls=urls,
            rate=rate,
            duration=seconds,
            ledger_url=lifecycle.load_config(workspace=ws, env_name=env).database_url,
        )
    )
    if _wants_json(ctx, json_out):
        _print_json(report.as_dict())
    else:
        typer.echo(
            f"sent {report.sent} requests in {seconds:g}s "
            f"({report.achieved_rate:.0f}/s of {rate:g}/s asked)"
        )
        typer.echo(
            f"  {'operation':<13} {'count':>6} {'ok':>6} {'4xx':>5} {'errors':>6} "
            f"{'p50 ms':>8} {'p99 ms':>8}"
        )
        for op, s in report.ops.items():
            typer.echo(
                f"  {op:<13} {s.count:>6} {s.ok:>6} {s.rejected:>5} {s.errors:>6} "
                f"{s.p50_ms:>8.1f} {s.p99_ms:>8.1f}"
            )
        inv = report.invariant
        typer.echo(
            f"ledger: {'balanced' if inv['ok'] else 'OUT OF BALANCE'} "
            f"(sum of {inv['entries']} entries = {inv['total_cents']} cents, "
            f"{len(inv['mismatched_accounts'])} account(s) off)"
        )
        for sample in report.error_samples:
            typer.echo(f"  error: {sample}")
    if not report.invariant["ok"]:
        raise typer.Exit(1)


# -- chaos -----------------------------------------------------------------------------------


def _audit_sink(ws: Workspace) -> Any:
    """The workspace's hash-chained audit log as an AuditSink."""
    from opsbook import audit  # noqa: PLC0415
    from opsbook.cli._common import open_db  # noqa: PLC0415
    from opsbook.config import Settings  # noqa: PLC0415

    db = open_db(ws, Settings.from_env())

    class Sink:
        def record(self, *, actor: str, action: str, subject: str, payload: Any) -> None:
            audit.record(db=db, actor=actor, action=action, subject=subject, payload=dict(payload))

    return Sink()


@chaos_app.command("inject")
def chaos_inject(
    ctx: typer.Context,
    fault: Annotated[
        str,
        typer.Argument(
            help="crash, hang, latency, error-rate, db-down, "
            "db-connections-exhausted, dependency-slow, "
            "memory-leak, disk-full, cert-expiring, "
            "suspicious-logins, bad-deploy; security drills: pan-in-log, weak-tls, "
            "expired-cert, dormant-admin, leaked-token; backup drills: backup-job-stopped, "
            "corrupted-backup, lagging-replica (`chaos list --all` describes each)"
        ),
    ],
    service: Annotated[
        str | None, typer.Option("--service", "-s", help="The service to hit")
    ] = None,
    duration: Annotated[
        str | None, typer.Option("--duration", "-d", help="End it after e.g. 30s, 5m")
    ] = None,
    as_user: Annotated[str | None, typer.Option("--as", help="Who injects (audited)")] = None,
    env: EnvOpt = "sandbox",
    json_out: JsonOpt = False,
) -> None:
    """Inject a fault (audited)."""
    from opsbook.sandbox import chaos, lifecycle  # noqa: PLC0415
    from opsbook.sandbox.faults import check_request, parse_duration  # noqa: PLC0415

    check_request(fault, service)  # bad input is an error before anything else
    parse_duration(duration)
    ws = _workspace(ctx)
    control = lifecycle.control(workspace=ws, env_name=env)
    result = chaos.inject(
        control=control,
        fault=fault,
        service=service,
        duration=duration,
        actor=_actor(as_user),
        sink=_audit_sink(ws),
    )
    if _wants_json(ctx, json_out):
        _print_json(result)
        return
    until = f" for {duration}" if duration else ""
    typer.echo(f"injected {result['fault']} on {result['target']}{until} (id {result['id']})")
    typer.echo(f"  what: {result['description']}")
    typer.echo(f"  shows as: {result['symptom']}")
    typer.echo(
        f"  ends by: {result['ended_by']} (or `opsbook sandbox chaos clear {result['fault']}`)"
    )


@chaos_app.command("list")
def chaos_list(
    ctx: typer.Context,
    all_faults: Annotated[
        bool, typer.Option("--all", help="List every fault that can be injected")
    ] = False,
    env: EnvOpt = "sandbox",
    json_out: JsonOpt = False,
) -> None:
    """The active faults (or, with --all, the catalogue)."""
    from opsbook.sandbox import chaos, lifecycle  # noqa: PLC0415
    from opsbook.sandbox.faults import FAULTS  # noqa: PLC0415

    if all_faults:
        catalogue = [
            {
                "fault": s.name,
                "target": s.target,
                "ended_by": s.ended_by,
                "description": s.description,
                "symptom": s.symptom,
            }
            for s in FAULTS.values()
        ]
        if _wants_json(ctx, json_out):
            _print_json({"faults": catalogue})
        else:
            for s in catalogue:
                typer.echo(f"{s['fault']:<25} {s['target']:<16} {s['description']}")
                typer.echo(f"{'':<25} shows as: {s['symptom']}")
        return
    faults = chaos.active(control=lifecycle.control(workspace=_workspace(ctx), env_name=env))
    if _wants_json(ctx, json_out):
        _print_json({"faults": faults})
        return
    if not faults:
        typer.echo("no active faults")
    for f in faults:
        left = f"{f['remaining']:.0f}s left" if f.get("remaining") is not None else "until ended"
        typer.echo(
            f"{f['fault']:<25} on {f['target']:<16} by {f['by']:<10} {left} "
            f"(ends by {f['ended_by']})"
        )


@chaos_app.command("clear")
def chaos_clear(
    ctx: typer.Context,
    fault: Annotated[str | None, typer.Argument(help="The fault to end (default: all)")] = None,
    service: Annotated[str | None, typer.Option("--service", "-s")] = None,
    as_user: Annotated[str | None, typer.Option("--as", help="Who clears (audited)")] = None,
    env: EnvOpt = "sandbox",
    json_out: JsonOpt = False,
) -> None:
    """End active faults (all of them, or one by name)."""
    from opsbook.sandbox import chaos, lifecycle  # noqa: PLC0415

    ws = _workspace(ctx)
    control = lifecycle.control(workspace=ws, env_name=env)
    result = chaos.clear(
        control=control, fault=fault, service=service, actor=_actor(as_user), sink=_audit_sink(ws)
    )
    if _wants_json(ctx, json_out):
        _print_json(result)
        return
    if not result["cleared"]:
        typer.echo("no matching active fault; nothing to clear")
    for f in result["cleared"]:
        typer.echo(f"cleared {f['fault']} on {f['target']}")


def main(argv: list[str] | None = None) -> None:
    """Run this sub-app on its own, with opsbook's error rendering and exit codes."""
    import click  # noqa: PLC0415

    from opsbook.errors import OpsbookError  # noqa: PLC0415

    try:
        rv: Any = app(args=argv, standalone_mode=False, prog_name="opsbook sandbox")
    except OpsbookError as exc:
        sys.stderr.write(f"error: {exc.render()}\n")
        sys.exit(exc.exit_code)
    except click.exceptions.UsageError as exc:
        exc.show()
        sys.exit(2)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        sys.stderr.write("aborted\n")
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
