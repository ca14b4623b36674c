"""Runbook change management end to end over a real workspace on disk, real SQLite, real git
and real engine runs (opsbook.executions.local, the CLI's engine wiring with the lifecycle's
start guards): a change from proposal to publication with two reviewers and a recorded sandbox
run, the refusals (self-review, publish without a test, a file that does not lint), and the
production gate (an unpublished digest refused and audited, the published one accepted, an
emergency override approved by a second person)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from opsbook.config import Settings
from opsbook.db import Database, open_database
from opsbook.engine.states import State
from opsbook.errors import ConflictError, PermissionDenied, ValidationError
from opsbook.executions.local import make_engine
from opsbook.lifecycle import change_guard, changes, diffs, gitrepo
from opsbook.lifecycle.changes import ChangeState
from opsbook.runbooks.parser import parse_file
from opsbook.users.roles import expand
from opsbook.workspace import Workspace, load_environment

TOML = """\
[workspace]
name = "changes-tests"
default_environment = "sandbox"
default_roles = ["operator"]

[users]
alice = ["operator", "engineer"]
tess = ["engineer"]
olga = ["approver"]
mia = ["manager"]
root = ["admin"]
viv = ["viewer"]

[changes]
require_published = true
"""

SANDBOX = "name: sandbox\nplatform: local\n"
PRODUCTION = "name: production\nclass: production\nplatform: local\n"

RUNBOOK = """\
---
id: hello
title: Hello
owner: operations
review_interval: 90d
last_reviewed: {reviewed}
tags: [incident]
---

# Hello

## Greet

```yaml procedure
permissions: [operator]
when_to_use: reactive
```

### Say hello

Print a greeting.

```sh
echo {greeting}
```

```expect
exit_code == 0
```
"""


def write_runbook(ws: Workspace, greeting: str = "hello", reviewed: str = "2026-11-20") -> Path:
    path = ws.runbooks_dir / "hello.md"
    path.write_text(RUNBOOK.format(greeting=greeting, reviewed=reviewed), encoding="utf-8")
    return path


@pytest.fixture
def ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    for key in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        monkeypatch.setenv(key, "opsbook tests")
    for key in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        monkeypatch.setenv(key, "tests@opsbook.invalid")
    root = tmp_path / "ws"
    (root / "runbooks").mkdir(parents=True)
    (root / "environments").mkdir()
    (root / "opsbook.toml").write_text(TOML, encoding="utf-8")
    (root / "environments" / "sandbox.yaml").write_text(SANDBOX, encoding="utf-8")
    (root / "environments" / "production.yaml").write_text(PRODUCTION, encoding="utf-8")
    workspace = Workspace.load(root)
    write_runbook(workspace)
    return workspace


@pytest.fixture
def db(ws: Workspace) -> Iterator[Database]:
    database = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
    yield database
    database.close()


def roles(user: str, ws: Workspace) -> tuple[str, ...]:
    return expand(list(ws.roles_of(user)))


async def run(
    ws: Workspace, db: Database, env: str, *, user: str = "alice", dry_run: bool = False
) -> Any:
    rb = parse_file(ws.runbooks_dir / "hello.md")
    engine = make_engine(ws, Settings.from_env(), db)
    return await engine.start(
        runbook=rb,
        procedure=rb.procedures[0],
        environment=load_environment(ws, env),
        params={},
        started_by=user,
        dry_run=dry_run,
    )


def events(db: Database, action: str) -> list[dict[str, Any]]:
    return db.query("SELECT * FROM events WHERE action = ? ORDER BY id", (action,))


def state_of(db: Database, cid: int) -> str:
    row = db.one("SELECT state FROM runbook_changes WHERE id = ?", (cid,))
    assert row is not None
    return str(row["state"])


async def reviewed_and_tested(ws: Workspace, db: Database) -> int:
    cid = changes.propose(
        db=db, workspace=ws, path=ws.runbooks_dir / "hello.md", reason="INC-7", actor="alice"
    ).change.id
    for kind, who in (("technical", "tess"), ("operational", "olga")):
        changes.review(
            db=db, workspace=ws, change_id=cid, kind=kind, actor=who, actor_roles=roles(who, ws)
        )
    out = await run(ws, db, "sandbox")
    assert out.state is State.SUCCEEDED
    changes.record_test(db=db, workspace=ws, change_id=cid, actor="alice")
    return cid


async def publish_current(ws: Workspace, db: Database) -> changes.Change:
    cid = await reviewed_and_tested(ws, db)
    changes.approve(db=db, workspace=ws, change_id=cid, actor="mia", actor_roles=roles("mia", ws))
    return changes.publish(
        db=db,
        workspace=ws,
        change_id=cid,
        actor="alice",
        actor_roles=roles("alice", ws),
        inform=["tess", "viv"],
    )


async def test_a_change_from_proposal_to_training(ws: Workspace, db: Database) -> None:
    proposed = changes.propose(
        db=db, workspace=ws, path=ws.runbooks_dir / "hello.md", reason="INC-7", actor="alice"
    )
    assert proposed.git_initialised and gitrepo.is_repository(ws.root)
    cid = proposed.change.id
    digest = parse_file(ws.runbooks_dir / "hello.md").content_hash
    assert proposed.change.content_hash == digest and proposed.change.state is ChangeState.DRAFT

    changes.review(
        db=db,
        workspace=ws,
        change_id=cid,
        kind="technical",
        actor="tess",
        actor_roles=roles("tess", ws),
        comment="commands checked",
    )
    assert state_of(db, cid) == "draft"  # one review is not enough
    after = changes.review(
        db=db,
        workspace=ws,
        change_id=cid,
        kind="operational",
        actor="olga",
        actor_roles=roles("olga", ws),
    )
    assert after.state is ChangeState.REVIEWED

    run_out = await run(ws, db, "sandbox")
    assert run_out.state is State.SUCCEEDED
    tested = changes.record_test(db=db, workspace=ws, change_id=cid, actor="alice")
    assert (tested.test_execution_id, tested.test_environment) == (run_out.execution_id, "sandbox")
    assert tested.state is ChangeState.TESTED

    approved = changes.approve(
        db=db, workspace=ws, change_id=cid, actor="mia", actor_roles=roles("mia", ws)
    )
    assert approved.state is ChangeState.APPROVED and approved.approved_by == "mia"

    pub = changes.publish(
        db=db,
        workspace=ws,
        change_id=cid,
        actor="alice",
        actor_roles=roles("alice", ws),
        inform=["tess", "viv"],
    )
    assert pub.state is ChangeState.PUBLISHED and pub.version == 1
    assert pub.git_tag == "runbook/hello/v1"
    tags = gitrepo.git(ws.root, "tag", "--list").stdout.split()
    assert tags == ["runbook/hello/v1"]
    message = gitrepo.git(ws.root, "log", "-1", "--format=%B").stdout
    assert "Technical-review: tess" in message and "Operational-review: olga" in message
    assert f"Tested-by-execution: {run_out.execution_id} (sandbox)" in message
    committed = gitrepo.git(ws.root, "show", "runbook/hello/v1:runbooks/hello.md").stdout
    assert committed == (ws.runbooks_dir / "hello.md").read_text(encoding="utf-8")
    assert changes.published(db=db, runbook_id="hello", content_hash=digest) is not None

    # Step 7: the people informed acknowledge; the last one makes it trained.
    changes.acknowledge(db=db, change_id=cid, person="tess")
    assert state_of(db, cid) == "published"
    done = changes.acknowledge(db=db, change_id=cid, person="viv", note="read it")
    assert done.state is ChangeState.TRAINED and done.pending_acks == ()
    assert all(s["done"] for s in done.steps())

    actions = [
        e["action"]
        for e in db.query(
            "SELECT action FROM events WHERE subject = ? ORDER BY id", (f"runbook-change:{cid}",)
        )
    ]
    assert actions == [
        "runbook.change.proposed",
        "runbook.change.review.approved",
        "runbook.change.review.approved",
        "runbook.change.reviewed",
        "runbook.change.tested",
        "runbook.change.approved",
        "runbook.change.published",
        "runbook.change.acknowledged",
        "runbook.change.acknowledged",
        "runbook.change.trained",
    ]


async def test_nobody_reviews_or_approves_their_own_change(ws: Workspace, db: Database) -> None:
    cid = changes.propose(
        db=db, workspace=ws, path=ws.runbooks_dir / "hello.md", reason="x", actor="root"
    ).change.id
    for kind in ("technical", "operational"):
        with pytest.raises(PermissionDenied, match="nobody reviews their own change"):
            changes.review(
                db=db,
                workspace=ws,
                change_id=cid,
                kind=kind,
                actor="root",  # an admin holds every role, and still may not
                actor_roles=roles("root", ws),
            )
    assert db.query("SELECT * FROM runbook_change_reviews") == []
    assert state_of(db, cid) == "draft"
    denied = events(db, "runbook.change.denied")
    assert len(denied) == 2 and denied[0]["actor"] == "root"

    # The two reviews need two people, each holding the reviewing role.
    changes.review(
        db=db,
        workspace=ws,
        change_id=cid,
        kind="technical",
        actor="mia",
        actor_roles=roles("mia", ws),
    )
    with pytest.raises(PermissionDenied, match="two people"):
        changes.review(
            db=db,
            workspace=ws,
            change_id=cid,
            kind="operational",
            actor="mia",
            actor_roles=roles("mia", ws),
        )
    with pytest.raises(PermissionDenied, match="manager, approver"):
        changes.review(
            db=db,
            workspace=ws,
            change_id=cid,
            kind="operational",
            actor="tess",
            actor_roles=roles("tess", ws),
        )
    changes.review(
        db=db,
        workspace=ws,
        change_id=cid,
        kind="operational",
        actor="olga",
        actor_roles=roles("olga", ws),
    )
    assert (await run(ws, db, "sandbox")).state is State.SUCCEEDED
    changes.record_test(db=db, workspace=ws, change_id=cid, actor="tess")
    with pytest.raises(PermissionDenied, match="nobody approves their own change"):
        changes.approve(
            db=db, workspace=ws, change_id=cid, actor="root", actor_roles=roles("root", ws)
        )
    with pytest.raises(PermissionDenied, match="approving needs one of the roles"):
        changes.approve(
            db=db, workspace=ws, change_id=cid, actor="tess", actor_roles=roles("tess", ws)
        )
    assert state_of(db, cid) == "tested"


async def test_publish_without_a_recorded_test_run_is_refused(ws: Workspace, db: Database) -> None:
    cid = changes.propose(
        db=db, workspace=ws, path=ws.runbooks_dir / "hello.md", reason="x", actor="alice"
    ).change.id
    for kind, who in (("technical", "tess"), ("operational", "olga")):
        changes.review(
            db=db, workspace=ws, change_id=cid, kind=kind, actor=who, actor_roles=roles(who, ws)
        )
    with pytest.raises(ValidationError, match="no recorded test run") as err:
        changes.publish(
            db=db, workspace=ws, change_id=cid, actor="alice", actor_roles=roles("alice", ws)
        )
    assert err.value.exit_code == 2 and "changes test" in (err.value.hint or "")
    with pytest.raises(ValidationError, match="no recorded test run"):
        changes.approve(
            db=db, workspace=ws, change_id=cid, actor="mia", actor_roles=roles("mia", ws)
        )
    # A dry run, or a run on production, is no test.
    await run(ws, db, "sandbox", dry_run=True)
    with pytest.raises(ValidationError, match="no succeeded run"):
        changes.record_test(db=db, workspace=ws, change_id=cid, actor="alice")
    assert state_of(db, cid) == "reviewed"
    assert db.query("SELECT * FROM runbook_publications") == []
    assert gitrepo.git(ws.root, "tag", "--list").stdout == ""


async def test_a_test_run_must_be_of_exactly_the_proposed_text(ws: Workspace, db: Database) -> None:
    cid = changes.propose(
        db=db, workspace=ws, path=ws.runbooks_dir / "hello.md", reason="x", actor="alice"
    ).change.id
    for kind, who in (("technical", "tess"), ("operational", "olga")):
        changes.review(
            db=db, workspace=ws, change_id=cid, kind=kind, actor=who, actor_roles=roles(who, ws)
        )
    write_runbook(ws, greeting="edited-after-review")
    other = await run(ws, db, "sandbox")
    with pytest.raises(ValidationError, match="not the proposed"):
        changes.record_test(
            db=db, workspace=ws, change_id=cid, actor="alice", execution_id=other.execution_id
        )
    with pytest.raises(ValidationError, match="no succeeded run"):
        changes.record_test(db=db, workspace=ws, change_id=cid, actor="alice")
    assert state_of(db, cid) == "reviewed"


def test_a_runbook_that_does_not_lint_is_not_proposed(ws: Workspace, db: Database) -> None:
    path = ws.runbooks_dir / "hello.md"
    path.write_text(
        RUNBOOK.format(greeting="hi", reviewed="2026-11-20").replace(
            "permissions: [operator]", "permissions: [operator]\nrisk: extreme"
        ),
        encoding="utf-8",
    )
    with pytest.raises(ValidationError, match="does not lint") as err:
        changes.propose(db=db, workspace=ws, path=path, reason="x", actor="alice")
    assert err.value.exit_code == 2 and err.value.location is not None
    assert str(err.value.location).startswith(str(path))
    assert db.query("SELECT * FROM runbook_changes") == []
    assert not (ws.root / ".git").exists()  # nothing changed: not even git init
    with pytest.raises(ValidationError, match="reason"):
        changes.propose(db=db, workspace=ws, path=write_runbook(ws), reason="  ", actor="alice")
    with pytest.raises(ValidationError, match="not a runbook of this workspace"):
        changes.propose(db=db, workspace=ws, path=ws.root / "opsbook.toml", reason="x", actor="a")


async def test_production_runs_only_published_digests(ws: Workspace, db: Database) -> None:
    # Unpublished: refused before an execution exists, and audited.
    with pytest.raises(PermissionDenied, match="not a published runbook") as err:
        await run(ws, db, "production")
    assert "opsbook changes propose" in (err.value.hint or "")
    assert db.query("SELECT * FROM executions WHERE environment = 'production'") == []
    (denied,) = events(db, "execution.start.denied")
    assert denied["subject"] == "hello#greet" and "unpublished" in denied["payload"]
    # Dry runs and the sandbox are never refused.
    assert (await run(ws, db, "production", dry_run=True)).state is State.SUCCEEDED
    assert (await run(ws, db, "sandbox")).state is State.SUCCEEDED

    await publish_current(ws, db)
    assert (await run(ws, db, "production")).state is State.SUCCEEDED

    # An edit after publication is a new digest: refused again until it is published.
    write_runbook(ws, greeting="hello again")
    with pytest.raises(PermissionDenied):
        await run(ws, db, "production")
    assert len(events(db, "execution.start.denied")) == 2


async def test_the_gate_is_off_without_require_published(ws: Workspace, db: Database) -> None:
    (ws.root / "opsbook.toml").write_text(
        TOML.replace("require_published = true", "require_published = false"), encoding="utf-8"
    )
    relaxed = Workspace.load(ws.root)
    assert (await run(relaxed, db, "production")).state is State.SUCCEEDED


async def test_an_emergency_override_needs_a_second_person(ws: Workspace, db: Database) -> None:
    ov = change_guard.request_override(
        db=db, workspace=ws, runbook="hello", reason="INC-12", actor="alice"
    )
    assert ov.state == "requested"
    with pytest.raises(PermissionDenied):  # requested is not approved
        await run(ws, db, "production")
    with pytest.raises(PermissionDenied, match="own override"):
        change_guard.decide_override(
            db=db, workspace=ws, override_id=ov.id, actor="alice", actor_roles=roles("root", ws)
        )
    with pytest.raises(PermissionDenied, match="roles"):
        change_guard.decide_override(
            db=db, workspace=ws, override_id=ov.id, actor="tess", actor_roles=roles("tess", ws)
        )
    approved = change_guard.decide_override(
        db=db, workspace=ws, override_id=ov.id, actor="olga", actor_roles=roles("olga", ws)
    )
    assert approved.state == "approved" and approved.expires_at is not None
    out = await run(ws, db, "production")
    assert out.state is State.SUCCEEDED
    (marked,) = events(db, "execution.start.override")
    assert '"approved_by":"olga"' in marked["payload"] and '"reason":"INC-12"' in marked["payload"]
    assert change_guard.get_override(db=db, override_id=ov.id).uses == 1
    # The override is for that digest only.
    write_runbook(ws, greeting="something else")
    with pytest.raises(PermissionDenied):
        await run(ws, db, "production")


async def test_git_tags_and_the_diff_between_published_versions(
    ws: Workspace, db: Database
) -> None:
    first = await publish_current(ws, db)
    assert first.version == 1
    # Version 2: a different command and a new step.
    path = write_runbook(ws, greeting="hello world", reviewed="2026-12-01")
    path.write_text(
        path.read_text(encoding="utf-8") + "\n### Say goodbye\n\nSay it.\n\n```sh\necho bye\n```\n",
        encoding="utf-8",
    )
    second = await publish_current(ws, db)
    assert second.version == 2 and second.base_version == 1
    assert gitrepo.versions(ws.root, "hello") == [1, 2]

    d = diffs.published_diff(db=db, workspace=ws, runbook="hello")
    assert (d.old_label, d.new_label) == ("runbook/hello/v1", "runbook/hello/v2")
    assert "-echo hello\n" in d.unified and "+echo hello world\n" in d.unified
    assert "procedure greet: step say-goodbye added (sh)" in d.summary
    assert "procedure greet: step say-hello: command changed" in d.summary
    assert "front matter: last_reviewed changed" in d.summary
    first_only = diffs.published_diff(db=db, workspace=ws, runbook="hello", to_version="v1")
    assert first_only.old_label.startswith("(nothing") and "+echo hello\n" in first_only.unified

    # A proposal made from v1 cannot publish over v2.
    stale = changes.list_changes(db=db, runbook_id="hello")
    assert [c.version for c in stale] == [2, 1]
    with pytest.raises(ConflictError):
        changes.publish(
            db=db, workspace=ws, change_id=first.id, actor="alice", actor_roles=roles("alice", ws)
        )


async def test_publish_refuses_a_file_edited_since_it_was_proposed(
    ws: Workspace, db: Database
) -> None:
    cid = await reviewed_and_tested(ws, db)
    changes.approve(db=db, workspace=ws, change_id=cid, actor="mia", actor_roles=roles("mia", ws))
    write_runbook(ws, greeting="sneaky")
    with pytest.raises(ConflictError, match="edited since"):
        changes.publish(
            db=db, workspace=ws, change_id=cid, actor="alice", actor_roles=roles("alice", ws)
        )
    assert state_of(db, cid) == "approved"
    assert gitrepo.git(ws.root, "tag", "--list").stdout == ""


async def test_a_workspace_inside_a_larger_repository(ws: Workspace, db: Database) -> None:
    top = ws.root.parent
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    (top / "README.md").write_text("the team's repository\n", encoding="utf-8")
    subprocess.run(["git", "-C", str(top), "add", "README.md"], check=True)  # staged, not ours
    pub = await publish_current(ws, db)
    assert pub.version == 1 and not (ws.root / ".git").exists()  # no repository of its own
    (proposed,) = events(db, "runbook.change.proposed")
    assert '"git_initialised":false' in proposed["payload"]
    shown = gitrepo.git(top, "show", "--stat", "--format=%s", "runbook/hello/v1").stdout
    assert "ws/runbooks/hello.md" in shown and "README.md" not in shown  # only the runbook
    status = gitrepo.git(top, "status", "--porcelain").stdout
    assert "A  README.md" in status  # what the team had staged stays staged
    d = diffs.published_diff(db=db, workspace=ws, runbook="hello", to_version="working")
    assert d.unified == "" and d.old_label == "runbook/hello/v1"


def test_reviews_and_drills_due(ws: Workspace, db: Database) -> None:
    from datetime import date

    from opsbook.lifecycle.reviews_due import drills_due, reviews_due

    write_runbook(ws, reviewed="2026-01-01")
    (due,) = reviews_due(db=db, workspace=ws, today=date(2026, 12, 3))
    assert (due.runbook_id, due.owner, due.status, due.due) == (
        "hello",
        "operations",
        "overdue",
        "2026-04-01",
    )
    write_runbook(ws, reviewed="2026-11-20")
    assert reviews_due(db=db, workspace=ws, today=date(2026, 12, 3)) == []
    # hello is tagged `incident` and its procedure is reactive: an emergency procedure.
    (drill,) = drills_due(db=db, workspace=ws)
    assert (drill.ref, drill.status) == ("hello#greet", "never")


async def test_a_drill_on_the_sandbox_counts(ws: Workspace, db: Database) -> None:
    from opsbook.lifecycle.reviews_due import drills_due

    await run(ws, db, "sandbox")
    assert drills_due(db=db, workspace=ws) == []
    (ok,) = drills_due(db=db, workspace=ws, include_ok=True)
    assert ok.status == "ok" and ok.last_execution is not None


def test_bad_changes_settings_name_the_line(ws: Workspace, db: Database) -> None:
    (ws.root / "opsbook.toml").write_text(TOML + 'override_valid_for = "soon"\n', encoding="utf-8")
    bad = Workspace.load(ws.root)
    with pytest.raises(ValidationError, match="not a duration") as err:
        changes.propose(
            db=db, workspace=bad, path=bad.runbooks_dir / "hello.md", reason="x", actor="alice"
        )
    assert err.value.location is not None and err.value.location.line == len(TOML.splitlines()) + 1


def test_new_workspaces_turn_the_gate_on_with_the_documented_defaults(tmp_path: Path) -> None:
    import tomllib

    from opsbook.lifecycle.changes_config import ChangeSettings, load_settings

    template = Path(changes.__file__).parents[1] / "workspace" / "templates" / "opsbook.toml"
    config = tomllib.loads(template.read_text(encoding="utf-8"))
    settings = load_settings(Workspace(root=tmp_path, config=config))
    assert settings.require_published is True
    assert settings == ChangeSettings(require_published=True)  # the template spells the defaults
    assert load_settings(Workspace(root=tmp_path, config={})).require_published is False


@pytest.fixture
def pg_changes_db(pg_url: str) -> Iterator[Database]:
    """A migrated PostgreSQL database of its own on the session's ephemeral cluster."""
    import uuid

    import psycopg

    name = f"chg_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    database = open_database(pg_url.rsplit("/", 1)[0] + f"/{name}")
    yield database
    database.close()
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.mark.postgres
async def test_the_whole_change_and_the_gate_on_postgresql(
    ws: Workspace, pg_changes_db: Database
) -> None:
    db = pg_changes_db
    with pytest.raises(PermissionDenied):
        await run(ws, db, "production")
    pub = await publish_current(ws, db)
    assert (pub.version, pub.state) == (1, ChangeState.PUBLISHED)
    assert (await run(ws, db, "production")).state is State.SUCCEEDED
    changes.acknowledge(db=db, change_id=pub.id, person="tess")
    assert changes.acknowledge(db=db, change_id=pub.id, person="viv").state is ChangeState.TRAINED
    ov = change_guard.request_override(
        db=db, workspace=ws, runbook="hello", reason="INC-1", actor="alice"
    )
    change_guard.decide_override(
        db=db, workspace=ws, override_id=ov.id, actor="mia", actor_roles=roles("mia", ws)
    )
    assert change_guard.list_overrides(db=db)[0].state == "approved"
    assert [c.state for c in changes.list_changes(db=db, state="trained")] == ["trained"]
