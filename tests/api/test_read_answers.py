"""The read cache seen through the API: answers follow changes made elsewhere, and every
request is still checked (ADR 0008). The cache itself: tests/executions/test_readcache.py."""

from __future__ import annotations

import uuid
from pathlib import Path

import httpx

from tests.api.harness import Served


def test_execution_list_shows_a_run_recorded_by_another_process(
    served: Served, tmp_path: Path
) -> None:
    viewer = served.user("vera", ["viewer"])
    before = viewer.get("/api/v1/executions", params={"limit": 5}).json()
    hits = served.ctx.reads.hits
    assert viewer.get("/api/v1/executions", params={"limit": 5}).json() == before
    assert served.ctx.reads.hits == hits + 1  # nothing changed: the page was reused
    eid = uuid.uuid4().hex[:12]
    ts = "2999-01-01T00:00:00.000000Z"  # newest of all
    with served.db.transaction():  # the test's own connection: "another process"
        served.db.execute(
            "INSERT INTO executions (id, runbook_id, runbook_path, runbook_hash, procedure_id,"
            " environment, params, digest, state, state_name, cursor, dry_run, started_by,"
            " created_at, updated_at) VALUES (?, 'checks', 'runbooks/checks.md', ?, 'quick',"
            " 'sandbox', '{}', ?, 'succeeded', 'Succeeded', 0, 0, 'cli-user', ?, ?)",
            (eid, "0" * 64, "d" * 64, ts, ts),
        )
    after = viewer.get("/api/v1/executions", params={"limit": 5}).json()
    assert after["items"][0]["id"] == eid


def test_every_request_is_still_checked(served: Served) -> None:
    reader = served.user("rita", ["viewer"])
    assert reader.get("/api/v1/executions").status_code == 200
    no_read = served.api(served.token("rita", scopes=["audit"]))
    assert no_read.get("/api/v1/executions").status_code == 403
    assert httpx.get(served.url + "/api/v1/executions").status_code == 401


def test_runbook_list_follows_the_files(served: Served) -> None:
    import time

    reader = served.user("rob", ["viewer"])
    before = reader.get("/api/v1/runbooks").json()
    assert reader.get("/api/v1/runbooks").json() == before  # the kept answer
    source = (served.ws.runbooks_dir / "checks.md").read_text(encoding="utf-8")
    extra = served.ws.runbooks_dir / "extra.md"
    extra.write_text(source.replace("id: checks", "id: extra", 1), encoding="utf-8")
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            ids = [r["id"] for r in reader.get("/api/v1/runbooks").json()]
            if "extra" in ids:
                break
            time.sleep(0.2)
        assert "extra" in ids and len(ids) == len(before) + 1
        tagged = reader.get("/api/v1/runbooks", params={"q": "no such words anywhere"}).json()
        assert tagged == []
    finally:
        extra.unlink()
