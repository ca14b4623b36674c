"""The console's /backups page (issue 13): the catalogue with each backup's verification by
restore, the freshness checks and where the ledger runs; read-only and escaped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from tests.api.harness import Served, serve
from tests.web.console import signin

PW = "correct horse battery staple"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = Path(tmp_path_factory.mktemp("backup-pages")) / "ws"
    with serve(root) as s:
        s.account("vic", ["viewer"], password=PW)
        env = s.ws.default_environment
        row = {
            "id": "bk-20261204T060000Z-abc123",
            "environment": env,
            "database": "ledger",
            "method": "pgbackrest-full",
            "state": "bad",
            "retention": "daily",
            "started_at": "2026-12-04T06:00:00.000000Z",
            "finished_at": "2026-12-04T06:00:03.000000Z",
            "duration_s": 3.0,
            "raw_bytes": 222_000_000,
            "stored_bytes": 21_000_000,
            "sha256": "0" * 64,
            "key_id": "k1",
            "manifest": "{}",
            "copies": json.dumps(
                [{"location": "primary", "path": "/x"}, {"location": "dr", "path": "/y"}]
            ),
            "created_by": "pytest",
            "verified_at": "2026-12-04T06:00:05.000000Z",
            "verify_ok": 0,
            "verify_duration_s": 2.0,
            "verify_result": json.dumps({"ok": False, "problems": ["primary copy <b>damaged</b>"]}),
            "error": None,
        }
        with s.db.transaction():
            cols = list(row)
            s.db.execute(
                f"INSERT INTO backups ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                [row[c] for c in cols],
            )
        yield s


def test_the_backup_page_lists_the_catalogue_checks_and_regions(site: Served) -> None:
    c, _ = signin(site.url, "vic", PW)
    with closing(c):
        page = c.get("/backups")
        assert page.status_code == 200, page.text
        assert '<a href="/backups"' in page.text  # in the nav
        assert "bk-20261204T060000Z-abc123" in page.text and "pgbackrest-full" in page.text
        assert "211.7 MiB" in page.text and "primary, dr" in page.text
        assert "FAILED" in page.text
        assert "&lt;b&gt;damaged&lt;/b&gt;" in page.text and "<b>damaged</b>" not in page.text
        assert "last backup ok" in page.text  # the checks: the newest backup is bad
        assert "Where the ledger runs" in page.text
