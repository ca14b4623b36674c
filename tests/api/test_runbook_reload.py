"""Resuming a run reuses the catalogue's parse of its runbook while the file is unchanged,
and parses it again once the file changed (so the engine still sees the new content)."""

from __future__ import annotations

import os
from pathlib import Path

from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.executions.context import build_context
from opsbook.executions.settings import ServerSettings
from tests.api.harness import make_workspace
from tests.server.test_schedules_parked import PARKS


def test_an_unchanged_file_is_not_parsed_again_and_a_changed_one_is(tmp_path: Path) -> None:
    ws = make_workspace(tmp_path / "ws")
    path = ws.runbooks_dir / "timed.md"
    path.write_text(PARKS)
    url = f"sqlite:///{tmp_path / 'state.db'}"
    ctx = build_context(
        settings=Settings(database_url=url), server=ServerSettings(), workspace=ws,
        db=open_database(url),
    )  # fmt: skip
    try:
        (listed,) = [rb for rb in ctx.catalogue().runbooks if rb.path == path]
        assert ctx.runbook_at(path) is listed
        path.write_text(PARKS.replace("Looked at it", "Looked at it twice"))
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        fresh = ctx.runbook_at(path)
        assert fresh is not listed and fresh.content_hash != listed.content_hash
    finally:
        ctx.db.close()
