"""Card numbers where they must not be: the services' logs and the ledger's free-text columns
(issuer prefix, length and Luhn; only masked numbers are reported)."""

from __future__ import annotations

import asyncio

from opsbook.secops.checks._base import CheckContext, Failure, Outcome
from opsbook.secops.checks.logs import tail_bytes
from opsbook.secops.pan import find_pans

LEDGER_COLUMNS = (
    ("transfers", "reference"),
    ("payments", "payee"),
    ("payments", "network_ref"),
    ("payments", "error"),
    ("outbox", "message"),
    ("accounts", "owner"),
)


def _scan_logs(cx: CheckContext) -> tuple[list[Failure], int]:
    assert cx.logs_dir is not None
    failures: list[Failure] = []
    files = sorted(p for p in cx.logs_dir.glob("*.log") if p.is_file())
    for path in files:
        data, first_line = tail_bytes(path)
        hits = find_pans(data)
        if not hits:
            continue
        seen: set[tuple[int | None, str]] = set()
        for offset, masked in hits[:40]:
            line = data.count(b"\n", 0, offset) + first_line if first_line else None
            if (line, masked) in seen:  # one line may carry the number twice (message, field)
                continue
            seen.add((line, masked))
            where = f"logs/{path.name}:{line}" if line else f"logs/{path.name}"
            failures.append(
                Failure(
                    subject=f"{path.name} {masked}",
                    text=f"card number {masked} in {where}",
                    location=where,
                    detail={"file": path.name, "line": line, "pan": masked},
                )
            )
    return failures, len(files)


async def pan_in_logs(cx: CheckContext) -> Outcome:
    if cx.logs_dir is None:
        return Outcome.skipped("reads the sandbox's logs; production: the log store's DLP rule")
    failures, files = await asyncio.to_thread(_scan_logs, cx)
    return Outcome.of(failures, files_scanned=files)


def _scan_ledger(url: str) -> tuple[list[Failure], int]:
    from opsbook.sandbox.ledger import Ledger  # noqa: PLC0415

    ledger = Ledger(url)
    failures: list[Failure] = []
    rows = 0
    try:
        with ledger._tx(write=False) as q:
            values = [
                (table, column, r)
                for table, column in LEDGER_COLUMNS
                for r in q(
                    f"SELECT id, {column} AS v FROM {table}"  # noqa: S608 - fixed names
                    f" WHERE {column} IS NOT NULL AND length({column}) >= 13"
                )
            ]
        for table, column, r in values:
            if True:
                rows += 1
                for _, masked in find_pans(str(r["v"]).encode()):
                    failures.append(
                        Failure(
                            subject=f"{table}.{column} id {r['id']}",
                            text=f"card number {masked} in {table}.{column} (row {r['id']})",
                            location=f"ledger {table}.{column} id={r['id']}",
                            detail={
                                "table": table,
                                "column": column,
                                "row": r["id"],
                                "pan": masked,
                            },
                        )
                    )
    finally:
        ledger.close()
    return failures, rows


async def pan_in_ledger(cx: CheckContext) -> Outcome:
    if cx.ledger_url is None:
        return Outcome.skipped("reads the sandbox ledger; production: the database DLP scan")
    failures, rows = await asyncio.to_thread(_scan_ledger, cx.ledger_url)
    return Outcome.of(failures, values_scanned=rows)
