"""`opsbook doctor --env ENV`'s tools and access checks (issue 15) with recorded tool answers:
a directory of small executables answering as kubectl, helm, git and curl do (a current one, one
too old, one missing), `kubectl auth can-i` answering yes / no / a refused connection, and real
HTTP servers standing for Grafana and Kibana (one up, one down)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from opsbook.workspace import Workspace, load_environment
from opsbook.workspace.doctor_tools import tools_and_access
from opsbook.workspace.init import init_workspace
from tests.conftest import serving

RECORDED = {  # what the real tools print (recorded from their current releases)
    "kubectl": 'case "$1" in version) echo "Client Version: v1.31.2";'
    ' echo "Kustomize Version: v5.4.2";;'
    ' auth) while IFS= read -r l; do echo "$l"; done < "${0%/*}/can-i";'
    ' read -r rc < "${0%/*}/can-i.rc"; exit "$rc";; esac',
    "helm": 'echo "v3.10.3+g835b733"',  # older than 3.12
    "git": 'echo "git version 2.43.0"',
    "curl": 'echo "curl 8.5.0 (x86_64-pc-linux-gnu) libcurl/8.5.0"',
}


def tool_dir(tmp_path: Path, *, can_i: str = "yes", rc: int = 0) -> Path:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    for name, body in RECORDED.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/sh\n{body}\n", encoding="utf-8")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    (bin_dir / "can-i").write_text(can_i + "\n", encoding="utf-8")
    (bin_dir / "can-i.rc").write_text(str(rc), encoding="utf-8")
    return bin_dir


class Up(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(302)  # a sign-in redirect still means it answers
        self.send_header("Location", "/login")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


class Down(Up):
    def do_GET(self) -> None:
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    init_workspace(target=root)
    return Workspace.load(root)


def set_monitoring(ws: Workspace, grafana: str, kibana: str) -> None:
    path = ws.environments_dir / "production.yaml"
    text = path.read_text(encoding="utf-8")
    text = text.replace("https://grafana.banking-platform.com", grafana)
    text = text.replace("https://kibana.banking-platform.com", kibana)
    path.write_text(text, encoding="utf-8")


def test_versions_cluster_access_and_monitoring(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tool_dir(tmp_path)))
    with serving(Up) as grafana, serving(Down) as kibana:
        set_monitoring(ws, grafana, kibana)
        got = {n: (s, d, h) for n, s, d, h in tools_and_access(load_environment(ws, "production"))}
    assert got["tool kubectl"][0] == "ok" and "1.31.2 (>= 1.27)" in got["tool kubectl"][1]
    assert got["tool helm"][:2] == ("failed", "3.10.3 is older than 3.12")
    assert "get-helm-3" in got["tool helm"][2]  # the fix is the install command
    assert got["tool az"][:2] == ("failed", "not found on PATH")
    assert "InstallAzureCLIDeb" in got["tool az"][2]
    assert got["tool git"][0] == "ok" and got["tool curl"][0] == "ok"
    assert got["cluster access"][:2] == (
        "ok",
        "can get deployments in banking-platform-prod",
    )
    assert got["monitoring grafana"][0] == "ok" and "HTTP 302" in got["monitoring grafana"][1]
    assert got["monitoring kibana"][:2] == ("failed", f"{kibana}: HTTP 503")
    assert "monitoring azure_monitor" not in got  # "Azure Portal" is no URL to try


def test_cluster_access_refused_or_unreachable_says_what_to_do(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tool_dir(tmp_path, can_i="no", rc=1)))
    env = load_environment(ws, "production")
    got = {n: (s, d, h) for n, s, d, h in tools_and_access(env)}
    assert (
        got["cluster access"][0] == "failed"
        and "cannot get deployments" in got["cluster access"][1]
    )
    (tmp_path / "bin" / "can-i").write_text(
        "The connection to the server localhost:8080 was refused - did you specify the right"
        " host or port?\n",
        encoding="utf-8",
    )
    got = {n: (s, d, h) for n, s, d, h in tools_and_access(env)}
    status, detail, hint = got["cluster access"]
    assert status == "failed" and "was refused" in detail
    assert hint == (
        "az login; az aks get-credentials --resource-group banking-platform-prod-rg"
        " --name banking-platform-prod-aks"
    )
    (tmp_path / "bin" / "kubectl").unlink()
    got = {n: (s, d, h) for n, s, d, h in tools_and_access(env)}
    assert got["cluster access"][:2] == ("warning", "not checked: kubectl is not installed")


def test_a_minimum_version_from_the_environment_file(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tool_dir(tmp_path)))
    path = ws.environments_dir / "production.yaml"
    path.write_text(
        path.read_text(encoding="utf-8").replace(
            "required_tools: [kubectl, helm, az, git, curl]",
            'required_tools: ["kubectl>=1.32", git]',
        ),
        encoding="utf-8",
    )
    got = {n: (s, d) for n, s, d, _ in tools_and_access(load_environment(ws, "production"))}
    assert got["tool kubectl"] == ("failed", "1.31.2 is older than 1.32")
    assert "tool helm" not in got


def test_doctor_env_production_from_the_command_line(ws: Workspace, tmp_path: Path) -> None:
    bin_dir = tool_dir(tmp_path)
    with serving(Up) as grafana, serving(Up) as kibana:
        set_monitoring(ws, grafana, kibana)
        out = subprocess.run(
            [sys.executable, "-m", "opsbook.cli.main", "doctor", "--env", "production", "--json"],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            cwd=ws.root,
            env={
                **os.environ,
                "OPSBOOK_WORKSPACE": str(ws.root),
                "PATH": f"{bin_dir}{os.pathsep}/usr/bin{os.pathsep}/bin",
            },
        )
    assert out.returncode == 1, out.stderr  # helm too old, az missing: failed checks
    checks = {c["name"]: c for c in json.loads(out.stdout)["checks"]}
    assert checks["tool helm"]["status"] == "failed"
    assert checks["tools"]["status"] == "failed" and "az" in checks["tools"]["detail"]
    assert checks["cluster access"]["status"] == "ok"
    assert checks["monitoring grafana"]["status"] == "ok"
    assert checks["monitoring kibana"]["status"] == "ok"
