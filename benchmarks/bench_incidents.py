"""Incident response numbers (issue 5), against one real `opsbook serve` process:

- escalation timers: 1,000 open incidents whose acknowledgement timers all come due at the same
  instant (the worst case); every timer must fire within 10 s of due. Reports max and p99
  lateness and the server's RSS.
- declare-to-first-page: POST /api/v1/incidents, then wait for the page's email at a local SMTP
  server (aiosmtpd); p99 must be <= 1 s.

Prints one JSON line per metric; exits 1 when a goal is missed.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
from _common import OPSBOOK, report

N_TIMERS = int(os.environ.get("BENCH_INCIDENT_TIMERS", "1000"))
N_DECLARES = int(os.environ.get("BENCH_INCIDENT_DECLARES", "100"))


class Sink:
    def __init__(self) -> None:
        self.seen: dict[str, float] = {}  # subject -> monotonic time of the first mail
        self.count = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        text = envelope.content.decode("utf-8", "replace")
        for line in text.splitlines():
            if line.startswith("Subject:"):
                self.seen.setdefault(line[8:].strip(), time.monotonic())
        self.count += 1
        return "250 OK"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def p(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[max(1, math.ceil(q / 100 * len(s))) - 1]


def setup(root: Path, smtp_port: int) -> None:
    from opsbook.workspace.init import init_workspace

    init_workspace(target=root)
    policy = root / "incident_policy.yaml"
    text = policy.read_text().replace("port: 25,", f"port: {smtp_port},")
    text = text.replace("host: localhost,", "host: 127.0.0.1,").replace(
        "ack_target: 4h", "ack_target: 1h"
    )
    policy.write_text(text)


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(url + "/api/v1/health").status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit("opsbook serve did not start")
        time.sleep(0.1)


def main() -> int:
    from aiosmtpd.controller import Controller

    from opsbook.db import open_database
    from opsbook.incidents.config import load_config
    from opsbook.incidents.service import declare
    from opsbook.users import accounts, tokens
    from opsbook.workspace import Workspace

    sink = Sink()
    smtp_port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "ws"
        setup(root, smtp_port)
        ws = Workspace.load(root)
        ws.state_dir.mkdir(parents=True, exist_ok=True)
        db = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
        config = load_config(ws)
        t = time.perf_counter()
        for i in range(N_TIMERS):
            declare(
                db=db,
                config=config,
                title=f"Bench {i}",
                actor="bench",
                severity="SEV4",
                services=["account"],
            )
        declare_rate = N_TIMERS / (time.perf_counter() - t)
        # the first pages are not what this measures: mark them delivered
        db.execute("UPDATE notifications SET state = 'sent'")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = open(Path(tmp) / "serve.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [*OPSBOOK, "serve", "--port", str(port), "--no-schedules"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OPSBOOK_WORKSPACE": str(root)},
        )
        try:
            wait_up(url, proc)
            due = datetime.now(UTC) + timedelta(seconds=3)
            due_s = due.isoformat(timespec="microseconds").replace("+00:00", "Z")
            db.execute("UPDATE incident_timers SET due_at = ? WHERE kind = 'escalate'", (due_s,))
            deadline = time.monotonic() + 120
            while True:
                row = db.one(
                    "SELECT COUNT(*) AS n FROM incident_timers WHERE kind = 'escalate'"
                    " AND state = 'fired'"
                )
                if (row and row["n"] >= N_TIMERS) or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
            rows = db.query(
                "SELECT fired_at FROM incident_timers WHERE kind = 'escalate' AND state = 'fired'"
            )
            late = [
                (datetime.fromisoformat(r["fired_at"].replace("Z", "+00:00")) - due).total_seconds()
                for r in rows
            ]
            rss = psutil.Process(proc.pid).memory_info().rss / 2**20
            ok = len(late) == N_TIMERS and max(late) <= 10
            failed += report(
                "incident_escalation_timers",
                ok,
                timers=N_TIMERS,
                fired=len(late),
                max_lateness_s=round(max(late), 3) if late else None,
                p99_lateness_s=round(p(late, 99), 3) if late else None,
                goal_max_lateness_s=10,
                server_rss_mib=round(rss, 1),
                declares_per_s=round(declare_rate, 1),
            )
            # resolve them so the second measurement is not competing with 3,000 emails
            db.execute("UPDATE incidents SET status = 'resolved'")
            db.execute("UPDATE incident_timers SET state = 'cancelled' WHERE state = 'pending'")
            accounts.create_account(
                db=db,
                actor="bench",
                username="benchop",
                roles=["operator"],
                known=accounts.known_roles(),
            )
            _, secret = tokens.create_token(
                db=db, actor="bench", username="benchop", name="bench", scopes=["read", "run"]
            )
            deadline = time.monotonic() + 120
            while (
                db.one("SELECT id FROM notifications WHERE state IN ('pending', 'sending') LIMIT 1")
                and time.monotonic() < deadline
            ):
                time.sleep(0.2)
            lat = []
            with httpx.Client(
                base_url=url, headers={"Authorization": f"Bearer {secret}"}, timeout=30
            ) as client:
                for i in range(N_DECLARES):
                    t0 = time.monotonic()
                    r = client.post(
                        "/api/v1/incidents", json={"title": f"Latency {i}", "severity": "SEV4"}
                    )
                    r.raise_for_status()
                    subject = f"[SEV4] {r.json()['ref']} Latency {i}"
                    while subject not in sink.seen and time.monotonic() - t0 < 10:
                        time.sleep(0.002)
                    lat.append(sink.seen.get(subject, t0 + 10) - t0)
            ok = p(lat, 99) <= 1.0
            failed += report(
                "incident_declare_to_first_page",
                ok,
                declares=N_DECLARES,
                p50_s=round(p(lat, 50), 3),
                p99_s=round(p(lat, 99), 3),
                max_s=round(max(lat), 3),
                goal_p99_s=1.0,
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            log.close()
            db.close()
            controller.stop()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
