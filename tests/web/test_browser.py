"""The console in a real browser (Debian's chromium driven by Playwright) against a real
`opsbook serve` process on the banking workspace from `opsbook init`: sign in with the printed
admin password, run the smoke test with a parameter and attest its manual step, start the
high-risk approval demo that the starter cannot approve, have a second account approve it,
watch it finish live, verify the audit chain. A screenshot is saved when a step fails."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import free_port

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]
APPROVER_PW = "second pair of eyes 42"

pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(),
    reason="Debian's chromium is not installed (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    base = Path(tmp_path_factory.mktemp("browser"))
    ws = base / "ws"
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(ws)}
    subprocess.run([*OPSBOOK, "init", str(ws)], check=True, capture_output=True, env=env)
    port = free_port()
    log = (base / "serve.log").open("w")
    proc = subprocess.Popen(
        [*OPSBOOK, "serve", "--port", str(port), "--no-schedules"],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ws,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(url + "/api/v1/health").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert proc.poll() is None, (base / "serve.log").read_text()
            assert time.monotonic() < deadline, "opsbook serve did not start"
            time.sleep(0.1)
        printed = (base / "serve.log").read_text()
        password = re.search(r"password: (\S+)", printed)
        assert password, printed
        add = subprocess.run(
            [
                *OPSBOOK,
                "users",
                "add",
                "approver1",
                "--role",
                "operator",
                "--role",
                "approver",
                "--password-stdin",
            ],
            input=APPROVER_PW + "\n",
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        assert add.returncode == 0, add.stderr
        yield {"url": url, "password": password.group(1), "artifacts": str(base), "ws": str(ws)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield b
        finally:
            b.close()


def _shots(pages: dict[str, Any], where: str) -> list[str]:
    out = []
    for name, page in pages.items():
        path = Path(where) / f"failure-{name}.png"
        try:
            page.screenshot(path=str(path), full_page=True)
        except Exception:
            continue
        keep = os.environ.get("OPSBOOK_TEST_ARTIFACTS")
        if keep:
            Path(keep).mkdir(parents=True, exist_ok=True)
            shutil.copy(path, Path(keep) / path.name)
        out.append(str(path))
    return out


def sign_in(page: Any, url: str, username: str, password: str) -> None:
    page.goto(url + "/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Dashboard").wait_for()


def test_run_attest_approve_and_verify_in_the_browser(server: dict[str, str], browser: Any) -> None:
    url = server["url"]
    first = browser.new_context().new_page()
    second = browser.new_context(viewport={"width": 390, "height": 844}).new_page()  # a phone
    first.set_default_timeout(20_000)
    second.set_default_timeout(20_000)
    pages = {"admin": first, "approver": second}
    try:
        sign_in(first, url, "admin", server["password"])

        # Run the smoke test with a parameter, then attest its manual step.
        first.get_by_role("link", name="Runbooks").click()
        first.get_by_role("link", name="opsbook demo").click()
        first.locator("#proc-smoke-test").get_by_role("link", name="Run…").click()
        first.get_by_label("service").select_option("account")
        first.get_by_role("button", name="Start").click()
        first.get_by_role("heading", name="Waiting: Sign off the smoke test").wait_for()
        assert "service=account" in first.content()
        for box in first.get_by_role("checkbox").all():
            box.check()
        first.get_by_label("Note (optional, e.g. a ticket number)").fill("DEMO-1")
        first.get_by_role("button", name="Attest and continue").click()
        first.locator(".summary .state-succeeded").wait_for()

        # The high-risk demo: the starter attests, then must wait for someone else.
        first.goto(url + "/runbooks/demo/approval-demo/run")
        first.get_by_label("I confirm this run").check()
        first.get_by_role("button", name="Start").click()
        first.get_by_role("button", name="Attest and continue").wait_for()
        first.get_by_role("checkbox").first.check()
        first.get_by_role("button", name="Attest and continue").click()
        first.get_by_text("someone else must approve").wait_for()
        assert first.get_by_role("button", name="Approve").count() == 0
        execution_url = first.url

        # A second person, on a phone, approves from the dashboard.
        sign_in(second, url, "approver1", APPROVER_PW)
        second.get_by_role("link", name=re.compile("Approve.*approval-demo")).click()
        second.get_by_label("Comment (optional)").fill("looks right")
        second.get_by_role("button", name="Approve").click()
        second.get_by_text("Approved by approver1", exact=True).wait_for()

        # The starter's page follows the run live (Server-Sent Events) to the end.
        assert first.url == execution_url
        first.locator(".summary .state-succeeded").wait_for()
        assert "approver1" in first.content()

        # The audit chain verifies.
        first.get_by_role("link", name="Audit").click()
        first.get_by_role("link", name="Verify chain").click()
        first.get_by_text("Audit chain OK").wait_for()
    except Exception as exc:
        shots = _shots(pages, server["artifacts"])
        raise AssertionError(f"browser flow failed: {exc}; screenshots: {shots}") from exc


def test_morning_health_check_on_the_sandbox_from_the_browser(
    server: dict[str, str], browser: Any
) -> None:
    """The issue's "done when": the morning health check runs on the sandbox from the console,
    stops at its checklists for the operator, and finishes."""
    env = {**os.environ, "OPSBOOK_WORKSPACE": server["ws"]}
    up = subprocess.run(
        [*OPSBOOK, "sandbox", "up"], capture_output=True, text=True, env=env, check=False
    )
    assert up.returncode == 0, up.stderr
    page = browser.new_context().new_page()
    page.set_default_timeout(30_000)
    try:
        sign_in(page, server["url"], "admin", server["password"])
        page.goto(server["url"] + "/runbooks/system-monitoring/morning-health-check/run")
        page.get_by_label("Environment").select_option("sandbox")
        page.get_by_role("button", name="Start").click()
        # Automated checks pass against the live sandbox, then each checklist is attested.
        for _ in range(2):
            page.get_by_role("button", name="Attest and continue").wait_for()
            for box in page.get_by_role("checkbox").all():
                box.check()
            page.get_by_role("button", name="Attest and continue").click()
            page.wait_for_load_state()
        page.locator(".summary .state-succeeded").wait_for()
        text = page.content()
        assert "Every service answers its health check" in text
    except Exception as exc:
        shots = _shots({"health": page}, server["artifacts"])
        raise AssertionError(f"browser flow failed: {exc}; screenshots: {shots}") from exc
    finally:
        subprocess.run(
            [*OPSBOOK, "sandbox", "down"], capture_output=True, text=True, env=env, check=False
        )
