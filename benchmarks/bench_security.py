"""Inputs that used to exhaust the server (issue 16 §3).

- ``security_health_under_big_bodies``: one real ``opsbook serve``; a separate process keeps
  sending 10 MB and 20 MB bodies to ``POST /api/v1/executions`` (with a token, half of them
  declared by Content-Length, half chunked) while this process asks ``GET /api/v1/health``
  one request at a time. Goal: health p99 < 50 ms while the bodies are refused (every one
  413). The same probe without uploads is the baseline.
- ``security_lint_<file>``: ``opsbook lint`` of the 8-level YAML alias bomb (front matter, an
  action block) and of a ``(a+)+$`` parameter pattern with an ``aaaa…ab`` default, in a child
  process. Goals: < 1 s wall and < 100 MB peak RSS each (before the fix: > 120 s and 7 GB for
  the bomb, > 120 s for the pattern).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from _common import OPSBOOK, report

HEALTH_GOAL_MS = 50.0
LINT_GOAL_S = 1.0
LINT_GOAL_MB = 100.0
PROBES = 300

UPLOADER = textwrap.dedent(
    """
    import json, sys, time, httpx
    url, token, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    statuses = {}
    def chunked(total):
        sent = 0
        while sent < total:
            yield b"x" * 65536
            sent += 65536
    stop = time.monotonic() + seconds
    with httpx.Client(base_url=url, headers={"Authorization": "Bearer " + token},
                      timeout=60) as client:
        while time.monotonic() < stop:
            for size in (10_000_000, 20_000_000):
                for body in (b"x" * size, chunked(size)):
                    code = client.post("/api/v1/executions", content=body).status_code
                    statuses[code] = statuses.get(code, 0) + 1
    print(json.dumps(statuses))
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def bomb(indent: str = "") -> str:
    lines = [f"{indent}l0: &a0 [" + ",".join(["lol"] * 9) + "]"]
    for i in range(1, 8):
        lines.append(f"{indent}l{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


FRONT = "---\nid: t\ntitle: T\n---\n\n# T\n\n"
FILES = {
    "alias_bomb_front_matter": "---\nid: bomb\ntitle: Bomb\n" + bomb() + "---\n\n# Bomb\n",
    "alias_bomb_action_block": FRONT
    + "## P\n\n```yaml procedure\nrisk: low\n```\n\n### S\n\nDo it.\n\n```action\n"
    + "platform.restart:\n"
    + bomb("  ")
    + "```\n",
    "redos_param_pattern": FRONT
    + "## P\n\n```yaml procedure\nrisk: low\nparams:\n"
    + '  code: {type: string, pattern: "(a+)+$", default: "'
    + "a" * 64
    + 'b"}\n```\n\n### S\n\nDo it.\n\n```sh\ntrue\n```\n',
}

LINT_CHILD = textwrap.dedent(
    """
    import json, resource, subprocess, sys, time
    started = time.perf_counter()
    proc = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=300)
    took = time.perf_counter() - started
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"rc": proc.returncode, "seconds": took, "maxrss_kb": rss,
                      "out": proc.stdout}))
    """
)


def lint_results(tmp: Path) -> int:
    failures = 0
    for name, text in FILES.items():
        path = tmp / f"{name}.md"
        path.write_text(text, encoding="utf-8")
        done = subprocess.run(
            [sys.executable, "-c", LINT_CHILD, *OPSBOOK, "lint", "--json", str(path)],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(done.stdout)
        codes = [f["code"] for f in json.loads(result["out"] or "[]")]
        mb = result["maxrss_kb"] / 1024
        ok = codes == ["OB001"] and result["seconds"] < LINT_GOAL_S and mb < LINT_GOAL_MB
        failures += report(
            f"security_lint_{name}",
            ok,
            seconds=round(result["seconds"], 3),
            peak_rss_mb=round(mb, 1),
            refused_as=codes,
            goal_seconds=LINT_GOAL_S,
            goal_rss_mb=LINT_GOAL_MB,
        )
    return failures


def token_for(ws: Path) -> str:
    from opsbook.db import open_database
    from opsbook.users import accounts, tokens

    db = open_database(f"sqlite:///{ws / '.opsbook' / 'opsbook.db'}")
    accounts.create_account(
        db=db,
        actor="bench",
        username="bench",
        roles=["operator"],
        known=accounts.known_roles(),
        password="bench password 123",
    )
    _, secret = tokens.create_token(
        db=db, actor="bench", username="bench", name="bench", scopes=["read", "run"]
    )
    db.close()
    return secret


def probe(base: str) -> tuple[list[float], list[float]]:
    """Health probe times seen by the client, and the app's own (Server-Timing), in ms."""
    import httpx

    seen, app = [], []
    with httpx.Client(base_url=base, timeout=10) as client:
        for _ in range(PROBES):
            started = time.perf_counter()
            response = client.get("/api/v1/health")
            seen.append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200
            app.append(float(response.headers["server-timing"].split("dur=")[1]))
            time.sleep(0.01)
    return seen, app


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def health_result(tmp: Path) -> int:
    import httpx

    ws = tmp / "ws"
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(ws)}
    subprocess.run([*OPSBOOK, "init", str(ws)], check=True, capture_output=True, env=env)
    with (ws / "opsbook.toml").open("a") as f:
        f.write("\n[monitoring]\nenvironments = []\n")
    (ws / ".opsbook").mkdir(exist_ok=True)
    token = token_for(ws)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*OPSBOOK, "serve", "--port", str(port), "--no-schedules"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/api/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("opsbook serve did not start")
            time.sleep(0.1)
        probe(base)  # warm up
        idle, _ = probe(base)
        seconds = PROBES * 0.012 + 5
        uploader = subprocess.Popen(
            [sys.executable, "-c", UPLOADER, base, token, str(seconds)],
            stdout=subprocess.PIPE,
            text=True,
        )
        time.sleep(0.5)  # the first uploads are on their way
        busy, busy_app = probe(base)
        out, _ = uploader.communicate(timeout=300)
        statuses = {int(k): v for k, v in json.loads(out.strip() or "{}").items()}
    finally:
        server.terminate()
        server.wait(timeout=30)
    busy_p99 = p99(busy)
    only_413 = bool(statuses) and set(statuses) == {413}
    return report(
        "security_health_under_big_bodies",
        busy_p99 < HEALTH_GOAL_MS and only_413,
        health_p99_ms=round(busy_p99, 2),
        health_median_ms=round(sorted(busy)[len(busy) // 2], 2),
        app_time_p99_ms=round(p99(busy_app), 2),
        idle_p99_ms=round(p99(idle), 2),
        uploads=statuses,
        goal_p99_ms=HEALTH_GOAL_MS,
    )


def main() -> int:
    tmp = Path(tempfile.mkdtemp(prefix="opsbook-bench-security-"))
    failures = lint_results(tmp)
    failures += health_result(tmp)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
