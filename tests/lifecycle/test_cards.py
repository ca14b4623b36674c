"""Quick reference cards (issue 15) from a workspace `opsbook init` wrote: each card as data,
in the terminal (nothing cut), as JSON and as a printable HTML page (no script, no external
asset), a PDF through headless Chromium, a missing contacts.yaml refused naming the file (exit 2),
and the console's card pages under its Content-Security-Policy."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from opsbook.errors import ValidationError
from opsbook.lifecycle import cards
from opsbook.workspace import Workspace
from opsbook.workspace.init import init_workspace, template_files
from tests.api.harness import Served, serve
from tests.web.console import signin

PW = "correct horse battery staple"


@pytest.fixture
def ws(tmp_path: Path) -> Workspace:
    root = tmp_path / "ws"
    init_workspace(target=root)
    return Workspace.load(root)


def ob(ws: Workspace, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", "card", *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ws.root,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws.root)},
    )


def test_the_contacts_card_is_the_seeds_emergency_contacts(ws: Workspace) -> None:
    card = cards.build("contacts", workspace=ws)
    by_title = {s.title.split(" (")[0]: s for s in card.sections}
    assert list(by_title) == [
        "Level 1 Operations",
        "Level 2 Engineering",
        "Level 3 Management",
        "External support",
    ]
    lead = by_title["Level 1 Operations"].rows[0]
    assert (lead.label, lead.value, lead.note) == (
        "Operations Lead",
        "+1-555-0101 · ops-lead@bank.example",
        "primary on-call",
    )
    assert "CEO" in {r.label for r in by_title["Level 3 Management"].rows}
    assert card.sources == ("contacts.yaml",)


def test_system_and_commands_cards_come_from_the_environment_files(ws: Workspace) -> None:
    system = cards.build("system", workspace=ws, environment="production")
    rows = {r.label: r.value for s in system.sections for r in s.rows}
    assert rows["Kubernetes cluster"] == "banking-platform-prod-aks"
    assert rows["Key Vault"] == "banking-platform-prod-kv"
    assert rows["Database dr"] == "banking-platform-dr-sql.database.windows.net"
    assert rows["Regions"] == "East US (primary), West US 2 (dr)"
    commands = cards.build("commands", workspace=ws, environment="production")
    values = [r.value for s in commands.sections for r in s.rows]
    assert "kubectl rollout restart deployment/SERVICE -n banking-platform-prod" in values
    assert "helm rollback banking-platform-prod REVISION -n banking-platform-prod" in values
    assert "opsbook run system-monitoring#morning-health-check --env production" in values
    everything = cards.build("commands", workspace=ws)  # every environment
    assert {s.title.split(":")[0] for s in everything.sections} == set(ws.environment_names())


def test_the_escalation_card_has_levels_timeouts_and_severities(ws: Workspace) -> None:
    card = cards.build("escalation", workspace=ws)
    sections = {s.title: s for s in card.sections}
    levels = sections["Levels, in order"].rows
    assert [r.label for r in levels if r.label] == [
        "Level 1 Operations",
        "Level 2 Engineering",
        "Level 3 Management",
    ]
    assert any(r.note == "when: ledger database, backups, recovery, replication" for r in levels)
    assert {r.label for r in sections["When to escalate"].rows} >= {"SEV-1", "Repeat"}
    sev1 = next(r for r in sections["Severities"].rows if r.label == "SEV1")
    assert "acknowledge within 5 min" in sev1.note


def test_terminal_json_html_and_pdf(ws: Workspace, tmp_path: Path) -> None:
    text = ob(ws, "commands", "--env", "production")
    assert text.returncode == 0, text.stderr
    # commands are never cut to fit the width
    assert (
        "opsbook run deployment-procedures#emergency-rollback --env production -p service=SERVICE"
        in text.stdout
    )
    assert len(text.stdout.splitlines()) <= 40  # one screen
    data = json.loads(ob(ws, "contacts", "--json").stdout)
    assert data["kind"] == "contacts" and data["sections"][0]["rows"][0]["label"]
    page = tmp_path / "contacts.html"
    out = ob(ws, "contacts", "--html", str(page))
    assert out.returncode == 0, out.stderr
    html = page.read_text(encoding="utf-8")
    assert "+1-555-0303" in html and "@page { size: A4" in html
    assert "<script" not in html and "http" not in html.split("<body>")[0]  # no external asset
    if shutil.which("chromium") is None:
        pytest.fail("Debian chromium is needed for the PDF (apt-get install chromium)")
    pdf = tmp_path / "escalation.pdf"
    out = ob(ws, "escalation", "--pdf", str(pdf))
    assert out.returncode == 0, out.stderr
    assert pdf.read_bytes().startswith(b"%PDF")


def test_bad_input(ws: Workspace) -> None:
    unknown = ob(ws, "contcts")
    assert unknown.returncode == 2 and "did you mean contacts" in unknown.stderr
    ws.contacts_path.unlink()
    missing = ob(ws, "contacts")
    assert missing.returncode == 2
    assert "contacts.yaml" in missing.stderr and "Traceback" not in missing.stderr
    with pytest.raises(ValidationError, match=r"contacts\.yaml is missing"):
        cards.build("escalation", workspace=ws)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = Path(tmp_path_factory.mktemp("cards-pages")) / "ws"
    with serve(root) as s:
        for rel, content in template_files():
            if str(rel) in ("contacts.yaml", "incident_policy.yaml"):
                (s.ws.root / str(rel)).write_bytes(content)
        s.account("olga", ["viewer"], password=PW)
        yield s


def test_console_card_pages(site: Served) -> None:
    c, _ = signin(site.url, "olga", PW)
    with closing(c):
        index = c.get("/cards")
        assert index.status_code == 200, index.text
        assert 'href="/cards/escalation"' in index.text
        page = c.get("/cards/contacts")
        assert page.status_code == 200, page.text
        assert "Operations Lead" in page.text and "+1-555-0101" in page.text
        assert "style-src 'self'" in page.headers["content-security-policy"]
        body = page.text.split("</head>")[1]
        assert "<script" not in body and "<style" not in body and ' style="' not in body
        commands = c.get("/cards/commands?env=sandbox")
        assert "opsbook monitor check --env sandbox" in commands.text
        assert c.get("/cards/nonsense").status_code in (400, 404, 422)
        assert c.get("/cards/system?env=../etc").status_code == 422
        assert 'href="/cards/contacts"' in c.get("/reference").text
