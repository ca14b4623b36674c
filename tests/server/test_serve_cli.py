"""`opsbook serve`, `opsbook users …` and `opsbook tokens …` as real processes."""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]


@pytest.fixture
def ws(tmp_path: Path) -> Path:
    root = tmp_path / "ws"
    subprocess.run([*OPSBOOK, "init", str(root)], check=True, capture_output=True)
    return root


def ob(ws: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPSBOOK, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws), "OPSBOOK_USER": "cli-admin"},
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


@contextmanager
def serving(
    ws: Path, *extra: str, scheme: str = "http", verify: str | bool = True
) -> Iterator[tuple[str, Path]]:
    port = free_port()
    log = ws.parent / f"serve-{port}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            [*OPSBOOK, "serve", "--port", str(port), "--no-schedules", *extra],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OPSBOOK_WORKSPACE": str(ws)},
        )
        url = f"{scheme}://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(url + "/api/v1/health", verify=verify).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "opsbook serve did not start"
                time.sleep(0.1)
            yield url, log
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def test_first_serve_prints_a_one_time_admin_password(ws: Path) -> None:
    with serving(ws) as (url, log):
        text = log.read_text()
        m = re.search(r"username: admin\n\s+password: (\S+)", text)
        assert m, text
        assert f"opsbook console: {url}/" in text
    with serving(ws) as (_, log2):
        assert "password:" not in log2.read_text()
    listed = ob(ws, "users", "list", "--json")
    assert '"admin"' in listed.stdout
    stored = ob(ws, "audit", "verify")
    assert stored.returncode == 0


def test_users_and_tokens_commands(ws: Path) -> None:
    r = ob(ws, "users", "add", "olga", "--role", "operator")
    assert r.returncode == 0 and "one-time password:" in r.stdout
    r = ob(ws, "users", "add", "olga")
    assert r.returncode == 2 and "already exists" in r.stderr
    r = ob(ws, "users", "add", "bad", "--role", "wizard")
    assert r.returncode == 2 and "unknown role" in r.stderr and "fix:" in r.stderr
    r = ob(ws, "users", "add", "pia", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert r.returncode == 2 and "too short" in r.stderr
    assert ob(ws, "users", "grant", "olga", "approver").returncode == 0
    assert "approver, operator" in ob(ws, "users", "list").stdout
    assert ob(ws, "users", "revoke", "olga", "approver").returncode == 0
    assert ob(ws, "users", "revoke", "olga", "approver").returncode == 2
    r = ob(ws, "tokens", "create", "--user", "olga", "--name", "ci", "--scope", "read")
    assert r.returncode == 0
    secret = r.stdout.strip().splitlines()[-1]
    token_id = secret.split("_")[1]
    assert secret.startswith("obk_")
    assert secret not in ob(ws, "tokens", "list").stdout
    with serving(ws) as (url, _):
        me = httpx.get(url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        assert me.json()["username"] == "olga"
        assert ob(ws, "tokens", "revoke", token_id).returncode == 0
        again = httpx.get(url + "/api/v1/me", headers={"Authorization": f"Bearer {secret}"})
        assert again.status_code == 401
    assert ob(ws, "users", "disable", "olga").returncode == 0
    assert "disabled" in ob(ws, "users", "list").stdout
    assert ob(ws, "users", "enable", "olga").returncode == 0
    r = ob(ws, "users", "passwd", "olga")
    assert r.returncode == 0 and "one-time password:" in r.stdout
    assert ob(ws, "tokens", "create", "--user", "nobody", "--name", "x").returncode == 2
    r = ob(ws, "tokens", "create", "--user", "olga", "--name", "x", "--scope", "god")
    assert r.returncode == 2 and "unknown scope" in r.stderr
    trail = ob(ws, "audit", "export", "--out", str(ws.parent / "ev"), "--json")
    assert trail.returncode == 0
    events = (ws.parent / "ev" / "events.jsonl").read_text()
    for action in (
        "user.created",
        "user.role.granted",
        "user.role.revoked",
        "token.created",
        "token.revoked",
        "user.disabled",
        "user.enabled",
        "user.password.changed",
    ):
        assert f'"action": "{action}"' in events, action
    assert '"actor": "cli-admin"' in events


def test_bad_settings_are_usage_errors(ws: Path) -> None:
    r = ob(ws, "serve", "--tls-cert", "cert.pem")
    assert r.returncode == 2 and "both a certificate and a key" in r.stderr
    r = subprocess.run(
        [*OPSBOOK, "serve"],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws), "OPSBOOK_SERVE_PORT": "eighty"},
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "OPSBOOK_SERVE_PORT" in r.stderr


def test_https_with_a_certificate(ws: Path, tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    import ssl

    ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
    with serving(
        ws,
        "--tls-cert",
        str(tmp_path / "cert.pem"),
        "--tls-key",
        str(tmp_path / "key.pem"),
        scheme="https",
        verify=ctx,  # type: ignore[arg-type]
    ) as (url, _):
        r = httpx.get(url + "/signin", verify=ctx)
        assert r.status_code == 200
        assert "Secure" in r.headers["set-cookie"]
        assert r.headers["strict-transport-security"].startswith("max-age=")
