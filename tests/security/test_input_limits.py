"""Issue 16 §3: request bodies cannot exhaust the server. Every body over the limit (1 MiB by
default; ``[limits] max_body_bytes`` or ``OPSBOOK_MAX_BODY_BYTES``) is answered 413 with the
limit named, whether it declares its length or arrives chunked, on the API and on console
forms, and the server keeps answering its health probe meanwhile. The Alertmanager webhook
keeps its own 1 MiB limit. Real servers: the app on uvicorn, and ``opsbook serve``."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from opsbook.config import DEFAULT_MAX_BODY_BYTES, Settings
from opsbook.errors import UsageError
from tests.api.harness import Served, serve
from tests.conftest import free_port

MIB = 1024 * 1024
OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("limits")) / "ws") as s:
        yield s


@pytest.fixture(scope="module")
def operator(served: Served) -> httpx.Client:
    return served.user("olivia", ["operator"])


def chunks(total: int, size: int = 64 * 1024, pause: float = 0.0) -> Iterator[bytes]:
    """A body without Content-Length (sent chunked), ``total`` bytes of a JSON string."""
    yield b'{"ref": "checks#quick", "dry_run": true, "params": {"service": "'
    sent = 0
    while sent < total:
        yield b"x" * size
        sent += size
        if pause:
            time.sleep(pause)
    yield b'"}}'


def assert_too_large(response: httpx.Response, limit: int = DEFAULT_MAX_BODY_BYTES) -> None:
    assert response.status_code == 413, response.text[:300]
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["code"] == "payload_too_large" and body["limit"] == limit
    assert str(limit) in body["detail"] and "max_body_bytes" in body["hint"]


def executions(served: Served) -> int:
    row = served.db.one("SELECT count(*) AS n FROM executions")
    assert row is not None
    return int(row["n"])


def test_a_20_mb_param_is_refused_413_and_nothing_is_stored(
    served: Served, operator: httpx.Client
) -> None:
    before = executions(served)
    big = {"ref": "checks#quick", "dry_run": True, "params": {"service": "x" * (20 * MIB)}}
    assert_too_large(operator.post("/api/v1/executions", json=big))
    assert_too_large(operator.post("/api/v1/executions", content=chunks(20 * MIB)))
    assert executions(served) == before
    ok = operator.post(
        "/api/v1/executions", json={"ref": "checks#quick", "dry_run": True, "params": {}}
    )
    assert ok.status_code == 201, ok.text  # the same connection pool still works


def test_a_body_at_the_limit_is_read(served: Served, operator: httpx.Client) -> None:
    """Exactly 1 MiB passes the body limit (it is then the per-parameter limit's to refuse)."""
    head = b'{"ref": "checks#quick", "dry_run": true, "params": {"service": "'
    filler = b"x" * (DEFAULT_MAX_BODY_BYTES - len(head) - 3)
    response = operator.post(
        "/api/v1/executions",
        content=head + filler + b'"}}',
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422, response.text[:300]


def test_anonymous_and_every_route_are_limited(served: Served) -> None:
    anon = served.api()
    for path in ("/api/v1/executions", "/api/v1/incidents", "/api/v1/alerts/silences"):
        assert_too_large(anon.post(path, content=b"x" * (2 * MIB)))


def test_the_webhook_keeps_its_own_limit(served: Served) -> None:
    hook = served.api(served.token(served.account("am", ["operator"]).username, ["alerts"]))
    response = hook.post("/api/v1/alerts/alertmanager", content=b"x" * (MIB + 1))
    assert response.status_code == 413
    assert response.json()["code"] == "payload_too_large"
    assert "max_alerts" in response.json()["hint"]


def test_console_forms_are_limited_with_a_page(served: Served) -> None:
    for body in (b"username=a&password=" + b"x" * (5 * MIB), chunks(5 * MIB)):
        response = httpx.post(served.url + "/signin", content=body, timeout=30)
        assert response.status_code == 413
        assert response.headers["content-type"].startswith("text/html")
        assert str(DEFAULT_MAX_BODY_BYTES) in response.text


def raw_request(url: str, head: bytes, body: bytes = b"") -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(head + body)
        out = b""
        while not out.count(b"\r\n\r\n") or len(out) < 12:
            data = conn.recv(65536)
            if not data:
                break
            out += data
        return out


def test_malformed_and_absurd_lengths_are_4xx(served: Served) -> None:
    head = b"POST /api/v1/executions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
    huge = raw_request(served.url, head + b"Content-Length: 10737418240\r\n\r\n", b"{")
    assert huge.startswith(b"HTTP/1.1 413"), huge[:200]
    absurd = raw_request(served.url, head + b"Content-Length: 99999999999999999999\r\n\r\n")
    assert absurd.startswith(b"HTTP/1.1 4"), absurd[:200]
    bad = raw_request(
        served.url, b"POST /api/v1/executions HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n"
    )
    assert bad.startswith(b"HTTP/1.1 400"), bad[:200]
    response = httpx.post(served.url + "/api/v1/executions", content=b"{not json")
    assert 400 <= response.status_code < 500


def test_health_answers_while_big_bodies_are_refused(served: Served) -> None:
    """Uploads of 20 MB (declared and chunked, sent slowly) run while the probe is asked;
    every probe answers 200. The <50 ms p99 figure is benchmarks/bench_security.py's."""
    stop = threading.Event()
    statuses: list[int] = []
    auth = {
        "Authorization": f"Bearer {served.token(served.account('uploader', ['operator']).username)}"
    }

    def upload() -> None:
        with httpx.Client(base_url=served.url, headers=auth, timeout=60) as client:
            while not stop.is_set():
                statuses.append(
                    client.post("/api/v1/executions", content=b"x" * (20 * MIB)).status_code
                )
                statuses.append(
                    client.post(
                        "/api/v1/executions", content=chunks(20 * MIB, pause=0.001)
                    ).status_code
                )

    workers = [threading.Thread(target=upload) for _ in range(2)]
    for w in workers:
        w.start()
    try:
        with httpx.Client(base_url=served.url, timeout=10) as probe:
            answers = []
            for _ in range(40):
                answers.append(probe.get("/api/v1/health").status_code)
                time.sleep(0.02)
    finally:
        stop.set()
        for w in workers:
            w.join(timeout=60)
    assert answers == [200] * 40
    assert statuses and set(statuses) == {413}


def test_limit_settings() -> None:
    assert Settings().max_body_bytes_for({}) == MIB
    assert Settings().max_body_bytes_for({"limits": {"max_body_bytes": 2048}}) == 2048
    env = Settings.from_env({"OPSBOOK_MAX_BODY_BYTES": "4096"})
    assert env.max_body_bytes_for({"limits": {"max_body_bytes": 2048}}) == 4096
    for bad in (0, -1, "1MB", True):
        with pytest.raises(UsageError) as info:
            Settings().max_body_bytes_for({"limits": {"max_body_bytes": bad}})
        assert info.value.field == "limits.max_body_bytes"
    with pytest.raises(UsageError):
        Settings.from_env({"OPSBOOK_MAX_BODY_BYTES": "lots"})


def test_opsbook_serve_takes_the_limit_from_the_workspace(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    subprocess.run([*OPSBOOK, "init", str(root)], check=True, capture_output=True, timeout=60)
    with (root / "opsbook.toml").open("a", encoding="utf-8") as toml:
        toml.write("\n[limits]\nmax_body_bytes = 4096\n")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(root)}
    proc = subprocess.Popen(
        [*OPSBOOK, "serve", "--port", str(port), "--no-schedules"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/api/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, "opsbook serve exited"
            assert time.monotonic() < deadline, "opsbook serve did not start"
            time.sleep(0.1)
        assert_too_large(httpx.post(url + "/api/v1/executions", content=b"x" * 5000), 4096)
        small = httpx.post(url + "/api/v1/executions", content=b"x" * 4000)
        assert small.status_code == 401  # under the limit: on to the route, which wants a token
    finally:
        proc.terminate()
        proc.wait(timeout=20)
