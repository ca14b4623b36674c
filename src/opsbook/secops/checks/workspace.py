"""opsbook's own house: credentials in workspace files, state file permissions, the audit
chain; and the platform's: health endpoints that leak, transfers that do not balance."""

from __future__ import annotations

import asyncio
import re
import stat
from pathlib import Path

from opsbook.secops.checks._base import CheckContext, Failure, Outcome

_ASSIGNMENT = re.compile(
    r"(password|passwd|secret|api[_-]?key|token|client[_-]?secret)\s*[:=]\s*['\"]?"
    r"(?!\{\{|secret://|keyvault://|env://|\$\{)[A-Za-z0-9/+_.-]{8,}",
    re.I,
)
_URL_CREDENTIALS = re.compile(r"://[^:/\s'\"@{}]+:[^@/\s'\"{}]+@")
_PRIVATE_KEY = re.compile(r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----")
_LEAK = re.compile(r"(?i)password|secret|\btoken\b|private key")


def _workspace_files(cx: CheckContext) -> list[Path]:
    root = cx.workspace.root
    files = [root / "opsbook.toml", root / "contacts.yaml", root / "incident_policy.yaml"]
    files += sorted(cx.workspace.environments_dir.glob("*.yaml"))
    return [p for p in files if p.is_file()]


def _secrets(cx: CheckContext) -> tuple[list[Failure], int]:
    failures = []
    files = _workspace_files(cx)
    for path in files:
        rel = path.relative_to(cx.workspace.root)
        for number, line in enumerate(
            path.read_text(encoding="utf-8", errors="replace").splitlines(), 1
        ):
            if line.lstrip().startswith("#"):
                continue
            kind = (
                "a private key"
                if _PRIVATE_KEY.search(line)
                else "credentials in a URL"
                if _URL_CREDENTIALS.search(line)
                else "a credential assignment"
                if _ASSIGNMENT.search(line)
                else None
            )
            if kind:
                failures.append(
                    Failure(
                        subject=f"{rel}:{number}",
                        text=f"{rel}:{number} holds {kind} (value not shown)",
                        location=f"{rel}:{number}",
                        detail={"file": str(rel), "line": number, "kind": kind},
                    )
                )
    return failures, len(files)


async def secrets_in_files(cx: CheckContext) -> Outcome:
    failures, files = await asyncio.to_thread(_secrets, cx)
    return Outcome.of(failures, files_checked=files)


def _permissions(cx: CheckContext) -> tuple[list[Failure], int]:
    from opsbook.workspace.doctor_files import file_mode_checks  # noqa: PLC0415

    failures = []
    for name, status, detail, hint in file_mode_checks(
        workspace=cx.workspace, settings=cx.settings
    ):
        if status != "ok":
            failures.append(
                Failure(
                    subject=f"state files ({name})",
                    text=f"{detail} (fix: {hint})",
                    location=str(cx.workspace.state_dir),
                    detail={"detail": detail, "fix": hint},
                    severity="low" if status == "warning" else None,
                )
            )
    checked = 0
    state = cx.workspace.state_dir
    if state.is_dir():
        for path in state.rglob("*"):
            checked += 1
            try:
                mode = path.lstat().st_mode
            except OSError:
                continue
            if not stat.S_ISLNK(mode) and mode & stat.S_IWOTH:
                rel = path.relative_to(cx.workspace.root)
                failures.append(
                    Failure(
                        subject=f"world-writable {rel}",
                        text=f"{rel} is world-writable ({stat.S_IMODE(mode):04o})",
                        location=str(rel),
                        detail={"path": str(rel), "mode": f"{stat.S_IMODE(mode):04o}"},
                    )
                )
    return failures, checked


async def file_permissions(cx: CheckContext) -> Outcome:
    failures, checked = await asyncio.to_thread(_permissions, cx)
    return Outcome.of(failures, paths_checked=checked)


async def audit_chain(cx: CheckContext) -> Outcome:
    if cx.db is None:
        return Outcome.skipped("no opsbook database")
    from opsbook.audit import verify  # noqa: PLC0415

    report = verify(db=cx.db)
    evidence = {"records_checked": report.checked}
    if report.ok:
        return Outcome.of([], **evidence)
    return Outcome.of(
        [
            Failure(
                subject="audit chain",
                text=f"the audit trail does not verify: {report.problem}",
                detail={"problem": report.problem, "first_bad_id": report.first_bad_id},
            )
        ],
        **evidence,
    )


async def health_exposure(cx: CheckContext) -> Outcome:
    import httpx  # noqa: PLC0415

    urls = {
        str(s.get("name")): str(s["health_url"])
        for s in cx.environment.services
        if s.get("health_url")
    }
    if not urls:
        return Outcome.skipped("no health_url in the environment")

    async def one(client: httpx.AsyncClient, name: str, url: str) -> Failure | str | None:
        try:
            r = await client.get(url, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            return f"{name}: {type(exc).__name__}"
        m = _LEAK.search(r.text)
        if m:
            return Failure(
                subject=f"health of {name}",
                text=f"{name}'s health answer contains {m.group().lower()!r}",
                location=url,
                detail={"service": name, "word": m.group().lower()},
            )
        return None

    async with httpx.AsyncClient(timeout=3.0) as client:
        answers = await asyncio.gather(*(one(client, n, u) for n, u in urls.items()))
    failures = [a for a in answers if isinstance(a, Failure)]
    unreachable = [a for a in answers if isinstance(a, str)]
    if unreachable and len(unreachable) == len(urls):
        return Outcome("error", error="no health endpoint answered: " + "; ".join(unreachable))
    return Outcome.of(failures, services=len(urls), unreachable=unreachable)


async def ledger_integrity(cx: CheckContext) -> Outcome:
    if cx.ledger_url is None:
        return Outcome.skipped("the sandbox ledger only; production: the database's own job")
    from opsbook.sandbox.ledger import Ledger  # noqa: PLC0415

    def run() -> tuple[list[dict[str, int]], int]:
        ledger = Ledger(cx.ledger_url)  # type: ignore[arg-type]
        try:
            with ledger._tx(write=False) as q:
                bad = q(
                    "SELECT transfer_id, SUM(amount_cents) AS s FROM entries"
                    " GROUP BY transfer_id HAVING SUM(amount_cents) <> 0 LIMIT 50"
                )
                n = q("SELECT COUNT(*) AS n FROM transfers")
            return [{k: int(v) for k, v in r.items()} for r in bad], int(n[0]["n"])
        finally:
            ledger.close()

    bad, transfers = await asyncio.to_thread(run)
    return Outcome.of(
        [
            Failure(
                subject=f"transfer {b['transfer_id']}",
                text=f"transfer {b['transfer_id']} does not balance ({b['s']} cents)",
                location=f"ledger transfers id={b['transfer_id']}",
                detail=b,
            )
            for b in bad
        ],
        transfers=transfers,
    )
