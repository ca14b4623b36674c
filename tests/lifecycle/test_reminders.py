"""Owners reminded of reviews and drills due (opsbook.lifecycle.reminders) over a workspace
`opsbook init` wrote (its runbooks, contacts.yaml and [changes] owner_contacts), real SQLite and a
real SMTP server (aiosmtpd): one mail a day per owner to the owner's contact, a second pass the
same day sends nothing, the next day sends again, and `opsbook changes remind` does it from the
command line as a real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from opsbook.db import Database, open_database
from opsbook.errors import ValidationError
from opsbook.lifecycle import reminders
from opsbook.lifecycle.changes_config import load_settings
from opsbook.workspace import Workspace
from opsbook.workspace.init import init_workspace
from tests.incidents.harness import SmtpSink, policy_yaml, smtp_server

DAY = date(2026, 12, 3)


@pytest.fixture
def smtp() -> Iterator[SmtpSink]:
    with smtp_server() as sink:
        yield sink


@pytest.fixture
def ws(tmp_path: Path, smtp: SmtpSink) -> Workspace:
    root = tmp_path / "ws"
    init_workspace(target=root)
    policy = root / "incident_policy.yaml"
    policy.write_text(policy_yaml(policy.read_text(), smtp_port=smtp.port), encoding="utf-8")
    return Workspace.load(root)


@pytest.fixture
def db(ws: Workspace) -> Iterator[Database]:
    database = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
    yield database
    database.close()


def test_each_owner_gets_one_mail_a_day_at_the_contact_named_for_it(
    ws: Workspace, db: Database, smtp: SmtpSink
) -> None:
    due = reminders.due_items(db=db, workspace=ws, today=DAY)
    # A fresh workspace has emergency procedures never drilled: every tagged runbook's owner.
    assert due, "a fresh workspace has drills due"
    assert any("never drilled" in line for lines in due.values() for line in lines)

    sent = reminders.send_reminders(db=db, workspace=ws, today=DAY)
    assert {r.owner for r in sent} == set(due)
    assert all(r.state == "queued" and r.notifications for r in sent)
    by_owner = {r.owner: r for r in sent}
    # the shipped runbooks: incident response (operations) and backup-recovery (DBAs)
    assert {"operations", "database-administration"} <= set(by_owner)
    assert by_owner["operations"].recipients == ("operations-lead",)
    assert by_owner["database-administration"].recipients == ("database-administrator",)

    delivered = reminders.deliver_now(
        db=db, workspace=ws, ids=tuple(n for r in sent for n in r.notifications)
    )
    assert {d.outcome for d in delivered} == {"sent"}
    mails = smtp.wait_for(len(delivered))
    ops = smtp.to("ops-lead@bank.example")
    assert len(ops) == 1
    assert "due for operations" in ops[0].subject
    assert "opsbook changes drills-due" in ops[0].body
    for line in by_owner["operations"].items:
        assert line in ops[0].body
    assert len(smtp.to("dba@bank.example")) == 1
    assert len(mails) == len(delivered)

    again = reminders.send_reminders(db=db, workspace=ws, today=DAY)
    assert {r.state for r in again} == {"already-sent"}
    assert not any(r.notifications for r in again)

    tomorrow = reminders.send_reminders(db=db, workspace=ws, today=date(2026, 12, 4))
    assert {r.state for r in tomorrow} == {"queued"}

    audited = db.query(
        "SELECT subject FROM events WHERE action = 'lifecycle.reminder.queued' ORDER BY id"
    )
    assert len(audited) == 2 * len(sent)


def test_a_dry_run_sends_nothing_and_claims_nothing(ws: Workspace, db: Database) -> None:
    rows = reminders.send_reminders(db=db, workspace=ws, today=DAY, dry_run=True)
    assert rows and {r.state for r in rows} == {"would-send"}
    assert db.query("SELECT COUNT(*) AS n FROM notifications")[0]["n"] == 0
    assert {r.state for r in reminders.send_reminders(db=db, workspace=ws, today=DAY)} == {"queued"}


def test_an_owner_without_a_contact_falls_back_and_then_says_so(
    ws: Workspace, db: Database
) -> None:
    toml = ws.root / "opsbook.toml"
    text = toml.read_text(encoding="utf-8")
    text = text.replace('"operations=operations-lead",\n', "")
    text = text.replace('reminder_contacts = ["operations-lead"]', 'reminder_contacts = ["dba"]')
    toml.write_text(text, encoding="utf-8")
    ws = Workspace.load(ws.root)
    rows = {r.owner: r for r in reminders.send_reminders(db=db, workspace=ws, today=DAY)}
    # "operations" is no contact key and the fallback "dba" is not a contact either
    assert rows["operations"].state == "no-recipient"
    assert not rows["operations"].notifications


def test_a_malformed_owner_contacts_entry_is_named_with_its_line(ws: Workspace) -> None:
    toml = ws.root / "opsbook.toml"
    toml.write_text(
        toml.read_text(encoding="utf-8").replace(
            '"security=security-engineer",', '"security-engineer",'
        ),
        encoding="utf-8",
    )
    with pytest.raises(ValidationError) as err:
        load_settings(Workspace.load(ws.root))
    assert "owner_contacts" in str(err.value)
    assert err.value.location is not None
    assert err.value.location.line is not None


def test_changes_remind_from_the_command_line(ws: Workspace, smtp: SmtpSink) -> None:
    def ob(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "opsbook.cli.main", "changes", "remind", *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=ws.root,
            stdin=subprocess.DEVNULL,
            env={**os.environ, "OPSBOOK_WORKSPACE": str(ws.root)},
        )

    dry = ob("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would be reminded" in dry.stdout

    out = ob("--json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert rows and all(r["state"] == "queued" for r in rows)
    outcomes = [d["outcome"] for r in rows for d in r["deliveries"]]
    assert outcomes and set(outcomes) == {"sent"}
    assert len(smtp.wait_for(len(outcomes))) == len(outcomes)

    human = ob()
    assert human.returncode == 0, human.stderr
    assert "already reminded today" in human.stdout


def test_certifications_due_are_reminded_under_training(ws: Workspace, db: Database) -> None:
    db.insert(
        "INSERT INTO training_certifications (person, area, earned_at, expires_at, granted_by)"
        " VALUES ('tina', 'incident-response', '2025-12-10T00:00:00Z', '2026-12-10T00:00:00Z',"
        " 'lead')"
    )
    due = reminders.due_items(db=db, workspace=ws, today=DAY)
    assert due["training"] == [
        "recertify tina in incident-response: expires 2026-12-10"
        " (opsbook training assess --area incident-response)"
    ]
    rows = {r.owner: r for r in reminders.send_reminders(db=db, workspace=ws, today=DAY)}
    assert rows["training"].recipients == ("operations-lead",)  # the fallback contact
