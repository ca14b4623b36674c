"""`opsbook security check|checks`: the security check catalogue mapped to PCI DSS 4.0.1, run
against an environment, recorded as findings, printed as text, JSON or SARIF 2.1.0
(opsbook.secops). Scans, imports and detections add their own sub-commands here."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json

_MARK = {"pass": "ok  ", "fail": "FAIL", "error": "ERR ", "skipped": "skip"}


def _print_run(d: dict[str, Any], scan: dict[str, Any] | None) -> None:
    c = d["counts"]
    for r in d["results"]:
        line = f"{_MARK[r['status']]} {r['severity']:<8} {r['id']:<28} {r['title']}"
        typer.echo(line)
        for f in r["failures"][:10]:
            typer.echo(f"       - {f['text']}")
        if len(r["failures"]) > 10:
            typer.echo(f"       ... and {len(r['failures']) - 10} more")
        if r["status"] == "fail" and r["fix"]:
            typer.echo(f"       fix: {r['fix']}")
        if r["status"] == "error":
            typer.echo(f"       did not run: {r['error']}")
    typer.echo(
        f"{d['environment']}: {c['pass']} passed, {c['fail']} failed, {c['error']} errors,"
        f" {c['skipped']} not applicable in {d['took_ms'] / 1000:.1f} s"
    )
    if scan is not None:
        typer.echo(
            f"findings: {scan['new']} new, {scan['still_open']} still open,"
            f" {scan['reintroduced']} reintroduced, {scan['fixed']} fixed (scan {scan['scan']};"
            " opsbook findings list)"
        )


def register(app: typer.Typer) -> None:
    security = typer.Typer(
        help="Security checks mapped to PCI DSS 4.0.1, with SARIF output.", no_args_is_help=True
    )
    app.add_typer(security, name="security")

    @security.command("check")
    def check_cmd(
        ctx: typer.Context,
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
        ] = None,
        only: Annotated[
            list[str] | None, typer.Option("--only", help="Run only this check (repeatable)")
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
        sarif: Annotated[
            Path | None,
            typer.Option("--sarif", help="Also write SARIF 2.1.0 to this file ('-': stdout)"),
        ] = None,
        fail_on: Annotated[
            str,
            typer.Option("--fail-on", help="Exit 1 when a failure is at least this severe"),
        ] = "high",
        no_record: Annotated[
            bool, typer.Option("--no-record", help="Do not record the scan or move findings")
        ] = False,
        as_user: Annotated[str | None, typer.Option("--as", help="Who runs it (audited)")] = None,
    ) -> None:
        """Run the security checks. Exit 1 when a check fails at or above --fail-on (default
        high) or a check could not run; 0 otherwise; 2 on bad input."""
        from opsbook import __version__  # noqa: PLC0415
        from opsbook.secops.model import at_least, check_severity  # noqa: PLC0415
        from opsbook.secops.sarif import to_sarif  # noqa: PLC0415
        from opsbook.secops.service import check_and_record  # noqa: PLC0415

        threshold = check_severity(fail_on, field_name="--fail-on")
        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            run, scan = asyncio.run(
                check_and_record(
                    workspace=ws,
                    environment=env or ws.default_environment,
                    db=db,
                    settings=st.settings,
                    actor=st.user(as_user),
                    only=only or (),
                    record=not no_record,
                )
            )
        finally:
            db.close()
        d = run.to_dict()
        if scan is not None:
            d["scan"] = scan
        if sarif is not None:
            doc = json.dumps(to_sarif(run, version=__version__), indent=1)
            if str(sarif) == "-":
                typer.echo(doc)
            else:
                sarif.write_text(doc + "\n", encoding="utf-8")
        if json_out:
            print_json(d)
        elif str(sarif) != "-":
            _print_run(d, scan)
            if sarif is not None:
                typer.echo(f"SARIF: {sarif}")
        worst = [
            f
            for r in run.results
            for f in r.outcome.failures
            if at_least(f.severity or r.spec.severity, threshold)
        ]
        if worst or any(r.outcome.status == "error" for r in run.results):
            raise typer.Exit(1)

    @security.command("checks")
    def checks_cmd(
        requirement: Annotated[
            str | None,
            typer.Option("--requirement", help="Only checks supporting this PCI DSS requirement"),
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    ) -> None:
        """The check catalogue: id, severity, what it checks, PCI DSS 4.0.1 requirements."""
        from opsbook.secops.catalogue import CATALOGUE, checks_for_requirement  # noqa: PLC0415

        specs = checks_for_requirement(requirement) if requirement else list(CATALOGUE.values())
        if json_out:
            print_json({"checks": [c.to_dict() for c in specs]})
            return
        for c in specs:
            typer.echo(f"{c.id:<28} {c.severity:<8} {', '.join(c.requirements):<22} {c.title}")

    evidence = typer.Typer(help="Forensic evidence and its chain of custody.", no_args_is_help=True)
    security.add_typer(evidence, name="evidence")

    @evidence.command("verify")
    def evidence_verify(
        ctx: typer.Context,
        path: Annotated[Path, typer.Argument(help="The snapshot directory")],
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
    ) -> None:
        """Recompute every digest against the manifest and the custody record (exit 1 when
        anything differs)."""
        from opsbook.secops.forensics import verify  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            result = verify(path, db)
        finally:
            db.close()
        if json_out:
            print_json(result)
        else:
            typer.echo(
                f"{result['snapshot']}: {'OK' if result['ok'] else 'DOES NOT VERIFY'}"
                f" ({result['files']} files)"
            )
            for p in result["problems"]:
                typer.echo(f"  {p}")
        if not result["ok"]:
            raise typer.Exit(1)

    @evidence.command("hand-off")
    def evidence_hand_off(
        ctx: typer.Context,
        snapshot: Annotated[str, typer.Argument(help="The snapshot id, e.g. fs-20261204T...")],
        to: Annotated[str, typer.Option("--to", help="Who receives it")],
        note: Annotated[str | None, typer.Option("--note", help="e.g. sealed bag 42")] = None,
        as_user: Annotated[str | None, typer.Option("--as", help="Who hands it over")] = None,
    ) -> None:
        """Record a hand-off in the chain of custody (audited)."""
        from opsbook.secops.forensics import hand_off  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            rec = hand_off(db, snapshot=snapshot, to=to, actor=st.user(as_user), note=note)
        finally:
            db.close()
        typer.echo(f"{snapshot}: {len(rec['handoffs'])} hand-off(s), the last to {to}")

    register_detect(security)
    register_vulns(security)
    register_rotate(security)


def register_detect(security: typer.Typer) -> None:
    @security.command("detect")
    def detect_cmd(
        ctx: typer.Context,
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
        ] = None,
        since: Annotated[str, typer.Option("--since", help="How far back, e.g. 1h")] = "1h",
        rules: Annotated[bool, typer.Option("--rules", help="List the rules only")] = False,
        no_alerts: Annotated[
            bool, typer.Option("--no-alerts", help="Store hits but raise no alerts")
        ] = False,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
        as_user: Annotated[str | None, typer.Option("--as", help="Who runs it (audited)")] = None,
    ) -> None:
        """Evaluate the Sigma detection rules over the logs, the audit trail, the ledger and the
        security checks of the window; new hits become alerts. Exit 0 whatever it finds."""
        from datetime import timedelta  # noqa: PLC0415

        from opsbook.durations import DURATION_HINT, parse_duration  # noqa: PLC0415
        from opsbook.errors import ValidationError  # noqa: PLC0415
        from opsbook.secops.sigma import detect, load_rules  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        if rules:
            found = load_rules(ws)
            if json_out:
                print_json(
                    {
                        "rules": [
                            {
                                "id": r.id,
                                "title": r.title,
                                "level": r.level,
                                "file": r.path,
                                "correlation": r.correlation,
                            }
                            for r in found
                        ]
                    }
                )
            else:
                for r in found:
                    typer.echo(f"{r.level:<13} {r.title}  ({Path(r.path).name})")
            return
        try:
            window = timedelta(seconds=parse_duration(since))
        except ValueError:
            raise ValidationError(
                f"--since {since!r} is not a duration", field="--since", hint=DURATION_HINT
            ) from None
        db = open_db(ws, st.settings)
        try:
            out = detect(
                db=db,
                workspace=ws,
                environment=env or ws.default_environment,
                since=window,
                actor=st.user(as_user),
                raise_alerts=not no_alerts,
            )
        finally:
            db.close()
        if json_out:
            print_json(out)
            return
        typer.echo(
            f"{out['environment']}: {out['rules']} rules over {out['events']} events since"
            f" {out['window']['from'][:19]}Z: {len(out['hits'])} hits, {out['new']} new"
        )
        for h in out["hits"]:
            mark = "NEW " if h["new"] else "    "
            typer.echo(f"  {mark}{h['level']:<8} {h['title']}: {h['group']} ({h['events']} events)")


def register_vulns(security: typer.Typer) -> None:
    @security.command("scan")
    def scan_cmd(
        ctx: typer.Context,
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
        ] = None,
        offline: Annotated[
            Path | None,
            typer.Option("--offline", help="A recorded pip-audit JSON output to use instead"),
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
        as_user: Annotated[str | None, typer.Option("--as", help="Who runs it (audited)")] = None,
    ) -> None:
        """Audit what runs with pip-audit and record the vulnerabilities as findings. Exit 1
        when the scanner could not audit (no silent pass) or found something."""
        from opsbook.secops import findings  # noqa: PLC0415
        from opsbook.secops.settings import load_security_settings  # noqa: PLC0415
        from opsbook.secops.vulns import scan  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        environment = env or ws.default_environment
        result = scan(environment=environment, offline=offline)
        summary = None
        if result.error is None:
            db = open_db(ws, st.settings)
            try:
                summary = findings.ingest(
                    db,
                    kind="pip-audit",
                    environment=environment,
                    source="pip-audit",
                    inputs=result.findings,
                    complete=True,
                    actor=st.user(as_user),
                    settings=load_security_settings(ws),
                )
            finally:
                db.close()
        d = {**result.to_dict(), "scan": summary}
        if json_out:
            print_json(d)
        else:
            typer.echo(
                f"{result.source}: {result.audited} of {result.scanned} packages audited,"
                f" {len(result.findings)} vulnerabilities"
            )
            for f in result.findings:
                typer.echo(f"  {f.severity:<8} {f.rule_id:<22} {f.subject}  {f.detail.get('text')}")
            if result.error:
                typer.echo(f"could not scan: {result.error}", err=True)
            if summary:
                typer.echo(
                    f"findings: {summary['new']} new, {summary['still_open']} still open,"
                    f" {summary['fixed']} fixed"
                )
        if result.error or result.findings:
            raise typer.Exit(1)

    @security.command("sbom")
    def sbom_cmd(
        ctx: typer.Context,
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
        ] = None,
        out: Annotated[Path | None, typer.Option("--out", help="Write it to this file")] = None,
        json_out: Annotated[
            bool, typer.Option("--json", help="With --out: a JSON summary instead of text")
        ] = False,
    ) -> None:
        """A CycloneDX 1.5 SBOM of what runs: the services and their Python packages (the
        SBOM itself on stdout without --out)."""
        import asyncio as aio  # noqa: PLC0415

        from opsbook import __version__  # noqa: PLC0415
        from opsbook.platforms import platform_for  # noqa: PLC0415
        from opsbook.secops.sbom import build_sbom  # noqa: PLC0415
        from opsbook.workspace import load_environment  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        environment = load_environment(ws, env or ws.default_environment)
        platform = platform_for(
            environment=environment.data, workspace=ws.root, env_name=environment.name
        )
        try:
            services = aio.run(platform.status()).get("services", [])
        except Exception as exc:
            typer.echo(f"services not listed ({exc}); packages only", err=True)
            services = []
        doc = build_sbom(services=services, version=__version__)
        text = json.dumps(doc, indent=1)
        if out is None:
            typer.echo(text)
        else:
            out.write_text(text + "\n", encoding="utf-8")
            components = doc.get("components", [])
            if json_out:
                print_json(
                    {
                        "file": str(out),
                        "components": len(components),
                        "services": sum(1 for c in components if c.get("type") == "application"),
                    }
                )
            else:
                typer.echo(f"wrote {len(components)} components to {out}")

    @security.command("import")
    def import_cmd(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="SARIF, CycloneDX or Trivy JSON")],
        fmt: Annotated[
            str | None,
            typer.Option("--format", help="sarif, cyclonedx or trivy (default: sniffed)"),
        ] = None,
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
        as_user: Annotated[str | None, typer.Option("--as", help="Who imports (audited)")] = None,
    ) -> None:
        """Import scanner output made elsewhere as findings. The whole file is checked first:
        a malformed one names the field (exit 2) and nothing is stored."""
        from dataclasses import replace  # noqa: PLC0415

        from opsbook.secops import findings  # noqa: PLC0415
        from opsbook.secops.importers import parse_file  # noqa: PLC0415
        from opsbook.secops.settings import load_security_settings  # noqa: PLC0415

        st: AppState = ctx.obj
        ws = st.workspace()
        environment = env or ws.default_environment
        imported = parse_file(file, environment=environment, fmt=fmt)
        db = open_db(ws, st.settings)
        try:
            summary = findings.ingest(
                db,
                kind="import",
                environment=environment,
                source=imported.source,
                inputs=[replace(f, source=imported.source) for f in imported.findings],
                complete=True,
                actor=st.user(as_user),
                settings=load_security_settings(ws),
            )
        finally:
            db.close()
        d = {
            "format": imported.format,
            "tool": imported.tool,
            "target": imported.target,
            "findings": len(imported.findings),
            "scan": summary,
        }
        if json_out:
            print_json(d)
        else:
            typer.echo(
                f"{file}: {imported.format} from {imported.tool} ({imported.target}):"
                f" {len(imported.findings)} findings; {summary['new']} new,"
                f" {summary['still_open']} still open, {summary['fixed']} fixed"
            )


def register_rotate(security: typer.Typer) -> None:
    @security.command("rotate")
    def rotate_cmd(
        ctx: typer.Context,
        what: Annotated[str, typer.Argument(help="certificate or db-credential")],
        env: Annotated[
            str | None, typer.Option("--env", "-e", help="Environment (default: the workspace's)")
        ] = None,
        json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output")] = False,
        as_user: Annotated[str | None, typer.Option("--as", help="Who rotates (audited)")] = None,
    ) -> None:
        """Rotate the payment network's certificate or the ledger's database credential on the
        sandbox, with traffic flowing (no request fails)."""
        from opsbook import audit  # noqa: PLC0415
        from opsbook.errors import UsageError  # noqa: PLC0415
        from opsbook.sandbox.lifecycle import control  # noqa: PLC0415
        from opsbook.workspace import load_environment  # noqa: PLC0415

        ops = {"certificate": "rotate-cert", "db-credential": "rotate-db-credential"}
        if what not in ops:
            raise UsageError(
                f"cannot rotate {what!r}", field="WHAT", hint="certificate or db-credential"
            )
        st: AppState = ctx.obj
        ws = st.workspace()
        environment = load_environment(ws, env or ws.default_environment)
        if environment.platform != "local":
            raise UsageError(
                f"{environment.name} is not the sandbox: rotate in Key Vault (certificates renew"
                " there) and through the database's own tooling",
                field="--env",
            )
        actor = st.user(as_user)
        out = control(workspace=ws, env_name=environment.name).call(ops[what], {"actor": actor})
        db = open_db(ws, st.settings)
        try:
            audit.record(
                db=db,
                actor=actor,
                action="security.rotated",
                subject=f"{environment.name}:{what}",
                payload={k: v for k, v in out.items() if k != "actor"},
            )
        finally:
            db.close()
        if json_out:
            print_json(out)
        else:
            typer.echo(f"rotated the {out['rotated']} in {out['took_s']} s")
