"""Console pages for training (issue 15): /training lists people's progress, certifications due
and drills; /training/drills/{id} renders a drill's debrief (Markdown, escaped) under the CSP."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.api.harness import Served, serve
from tests.web.console import signin

PW = "correct horse battery staple"
DEBRIEF = "# Drill debrief: The payment service has crashed\n\n- <script>alert(1)</script> ran\n"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = Path(tmp_path_factory.mktemp("training-pages")) / "ws"
    with serve(root) as s:
        s.account("vic", ["viewer"], password=PW)
        db = s.db
        db.insert(
            "INSERT INTO training_drills (scenario, area, trainee, environment, state, started_at,"
            " started_by, faults, ended_at, score, passed, debrief) VALUES ('payment-crash',"
            " 'platform-operations', 'tina', 'sandbox', 'ended', '2026-12-01T10:00:00.000Z',"
            " 'lead', '[]', '2026-12-01T10:05:00.000Z', 92.5, 1, ?)",
            (DEBRIEF,),
        )
        db.insert(
            "INSERT INTO training_certifications (person, area, earned_at, expires_at, granted_by)"
            " VALUES ('olaf', 'incident-response', '2025-01-01T00:00:00Z', '2026-01-01T00:00:00Z',"
            " 'lead')"
        )
        yield s


def test_training_overview_and_a_drills_debrief(site: Served) -> None:
    c, _ = signin(site.url, "vic", PW)
    with closing(c):
        page = c.get("/training")
        assert page.status_code == 200, page.text
        assert '<a href="/training"' in page.text  # in the nav
        assert "tina" in page.text and "92.5 (passed)" in page.text
        assert "olaf: incident-response expired (2026-01-01)" in page.text
        drill = c.get("/training/drills/1")
        assert drill.status_code == 200, drill.text
        assert "<h1>Drill debrief: The payment service has crashed</h1>" in drill.text
        assert "<script>alert(1)</script>" not in drill.text  # Markdown without raw HTML
        assert "style-src 'self'" in drill.headers["content-security-policy"]
        assert c.get("/training/drills/99").status_code == 404
