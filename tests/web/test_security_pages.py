"""Console pages for security operations (issue 14): /security shows the checks' latest results
with their PCI DSS requirements, open findings, JIT grants, access reviews and detections, and
/security/findings/{ref} one finding; both read-only and escaped."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from opsbook.secops import findings, jit
from opsbook.secops.model import FindingInput
from opsbook.users.accounts import known_roles
from tests.api.harness import Served, serve
from tests.web.console import signin

PW = "correct horse battery staple"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = Path(tmp_path_factory.mktemp("security-pages")) / "ws"
    with serve(root) as s:
        s.account("vic", ["viewer"], password=PW)
        findings.ingest(
            s.db,
            kind="checks",
            environment="sandbox",
            source="check",
            inputs=[
                FindingInput(
                    source="check",
                    rule_id="data.pan-in-logs",
                    title="No card number in the logs",
                    severity="critical",
                    subject="payment.log 411111******1111",
                    environment="sandbox",
                    location="logs/payment.log:7",
                    detail={"text": "card number 411111******1111 in <b>logs</b>"},
                    requirements=("3.4.1", "3.5.1"),
                )
            ],
            complete=True,
            actor="pytest",
            results=[
                {
                    "check_id": "data.pan-in-logs",
                    "status": "fail",
                    "severity": "critical",
                    "failures": 1,
                    "detail": {"failures": ["card number 411111******1111"]},
                },
            ],
        )
        jit.request(
            s.db,
            username="olga",
            role="admin",
            duration_s=3600,
            reason="INC-7",
            known_roles=known_roles(),
        )
        yield s


def test_the_security_overview_and_a_finding(site: Served) -> None:
    c, _ = signin(site.url, "vic", PW)
    with closing(c):
        page = c.get("/security")
        assert page.status_code == 200, page.text
        assert '<a href="/security"' in page.text  # in the nav
        assert "data.pan-in-logs" in page.text and "3.4.1, 3.5.1" in page.text
        assert '<a href="/security/findings/FND-1">FND-1</a>' in page.text
        assert "JIT-1 pending: olga as admin (INC-7)" in page.text
        one = c.get("/security/findings/FND-1")
        assert one.status_code == 200, one.text
        assert "logs/payment.log:7" in one.text
        assert "&lt;b&gt;logs&lt;/b&gt;" in one.text and "<b>logs</b>" not in one.text
        assert c.get("/security/findings/FND-9").status_code == 404
