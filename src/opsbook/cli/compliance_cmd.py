"""`opsbook compliance report|verify|requirements`: PCI DSS 4.0.1 evidence of a period, as a
report and a pack an assessor verifies offline (opsbook.secops.compliance)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from opsbook.cli._common import AppState, open_db, print_json

JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output")]


def _print(report: dict[str, Any]) -> None:
    p, s = report["period"], report["summary"]
    typer.echo(f"{report['standard']} {p['label']} ({p['from'][:10]} to {p['until'][:10]})")
    for r in report["requirements"]:
        runs = sum(c["runs"] for c in r["checks"])
        typer.echo(
            f"  {r['requirement']:<9} {r['status']:<12} checks run {runs:<5}"
            f" executions {len(r['executions']):<3} {r['title']}"
        )
    typer.echo(
        f"{s['with_evidence']} with evidence, {s['with_gaps']} with gaps,"
        f" {len(s['no_evidence'])} without evidence of {s['requirements']}"
    )


def register(app: typer.Typer) -> None:
    co = typer.Typer(
        help="Compliance evidence: PCI DSS 4.0.1 report and verifiable pack.", no_args_is_help=True
    )
    app.add_typer(co, name="compliance")

    @co.command("report")
    def report_cmd(
        ctx: typer.Context,
        period: Annotated[
            str, typer.Option("--period", help="2026-Q4, 2026-11, 2026 or 2026-10-01..2026-12-31")
        ],
        standard: Annotated[
            str, typer.Option("--standard", help="pci-dss-4.0.1")
        ] = "pci-dss-4.0.1",
        requirement: Annotated[
            list[str] | None, typer.Option("--requirement", help="Only these (repeat)")
        ] = None,
        out: Annotated[
            Path | None,
            typer.Option("--out", help="Write the verifiable pack to this directory (or a .zip)"),
        ] = None,
        force: Annotated[bool, typer.Option("--force", help="Overwrite a pack in --out")] = False,
        as_user: Annotated[str | None, typer.Option("--as", help="Who reports (audited)")] = None,
        json_out: JsonOpt = False,
    ) -> None:
        """Per requirement: the checks and their results, findings, reviews, approvals and
        executions of the period, each pointing at its audit records."""
        from opsbook.errors import ValidationError  # noqa: PLC0415
        from opsbook.secops.compliance import build_report, write_pack  # noqa: PLC0415
        from opsbook.secops.pci import STANDARD, parse_period  # noqa: PLC0415

        if standard != STANDARD:
            raise ValidationError(
                f"unknown standard {standard!r}", field="--standard", hint=f"use {STANDARD}"
            )
        start, end, label = parse_period(period)
        if out is not None:
            from opsbook.secops.compliance import check_out  # noqa: PLC0415

            check_out(out, force=force)
        st: AppState = ctx.obj
        ws = st.workspace()
        db = open_db(ws, st.settings)
        try:
            report = build_report(
                db, start=start, end=end, label=label, requirements=requirement or ()
            )
            pack = None
            if out is not None:
                from opsbook.cli.audit_cmd import witness_config  # noqa: PLC0415

                pack = write_pack(
                    db,
                    report=report,
                    out_dir=out,
                    actor=st.user(as_user),
                    witness=witness_config(st),
                    force=force,
                )
        finally:
            db.close()
        if json_out:
            print_json({**report, "pack": pack})
            return
        _print(report)
        if pack is not None:
            typer.echo(
                f"pack: {pack['out']} (report sha256 {pack['sha256'][:16]}…,"
                f" {pack['audit_records']} audit records; verify offline:"
                f" opsbook compliance verify {pack['out']}, or python3 verify_compliance.py"
                " in the unpacked pack)"
            )

    @co.command("verify")
    def verify_cmd(
        pack: Annotated[Path, typer.Argument(help="The pack directory or .zip")],
        json_out: JsonOpt = False,
    ) -> None:
        """Check a pack: every file against its manifest, the audit chain, and the report's
        digest against the one the chain recorded. Exit 1 when anything differs."""
        from opsbook.secops.compliance import verify  # noqa: PLC0415

        problems = verify(pack)
        if json_out:
            print_json({"pack": str(pack), "ok": not problems, "problems": problems})
        else:
            typer.echo(f"{pack}: {'OK' if not problems else 'DOES NOT VERIFY'}")
            for p in problems:
                typer.echo(f"  {p}")
        if problems:
            raise typer.Exit(1)

    @co.command("requirements")
    def requirements_cmd(json_out: JsonOpt = False) -> None:
        """The PCI DSS 4.0.1 requirements opsbook gathers evidence for, and their checks."""
        from opsbook.secops.catalogue import CATALOGUE  # noqa: PLC0415
        from opsbook.secops.pci import REQUIREMENTS  # noqa: PLC0415

        rows = [
            {
                "requirement": r,
                "title": t,
                "checks": [c.id for c in CATALOGUE.values() if r in c.requirements],
            }
            for r, t in REQUIREMENTS.items()
        ]
        if json_out:
            print_json({"standard": "pci-dss-4.0.1", "requirements": rows})
            return
        for row in rows:
            typer.echo(f"{row['requirement']:<9} {row['title']}  [{', '.join(row['checks'])}]")
