"""A small known history of runs written straight into a real, migrated SQLite database:
executions, step runs, journal events, incidents and their links, feedback."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from opsbook import audit
from opsbook.db import Database, open_database
from opsbook.runbooks.catalogue import Catalogue, load_catalogue
from opsbook.workspace import Workspace

NOW = datetime(2026, 12, 1, tzinfo=UTC)

CHECKS = """\
---
id: checks
title: Checks
owner: operations
review_interval: 30d
last_reviewed: 2026-09-01
---

# Checks

## Quick

```yaml procedure
id: quick
permissions: [operator]
risk: low
prerequisites: [nothing]
```

### First

```sh {timeout=10s}
echo one
```

### Second

```sh {timeout=10s}
echo two
```

## Never

```yaml procedure
id: never
permissions: [operator]
risk: low
```

### Only

```sh {timeout=10s}
echo never
```
"""

OTHER = """\
---
id: other
title: Other
owner: operations
---

# Other

## Solo

```yaml procedure
id: solo
permissions: [operator]
risk: low
```

### Only

```sh {timeout=10s}
echo solo
```
"""

TOML = """\
[workspace]
name = "metrics"
default_environment = "sandbox"
default_roles = ["operator"]
"""


def iso(dt: datetime) -> str:
    return dt.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def workspace(root: Path) -> tuple[Workspace, Database, Catalogue]:
    (root / "runbooks").mkdir(parents=True)
    (root / "environments").mkdir()
    (root / "opsbook.toml").write_text(TOML)
    (root / "environments" / "sandbox.yaml").write_text(
        "name: sandbox\nplatform: local\nnamespace: banking-platform-sandbox\nservices: []\n"
    )
    (root / "runbooks" / "checks.md").write_text(textwrap.dedent(CHECKS))
    (root / "runbooks" / "other.md").write_text(textwrap.dedent(OTHER))
    ws = Workspace.load(root)
    db = open_database(f"sqlite:///{ws.state_dir / 'opsbook.db'}")
    return ws, db, load_catalogue(ws.runbooks_dir)


def add_run(
    db: Database,
    eid: str,
    *,
    at: datetime,
    state: str,
    seconds: float | None,
    steps: Sequence[tuple[str, str]],
    ref: str = "checks#quick",
    environment: str = "sandbox",
    dry_run: bool = False,
) -> None:
    rb, proc = ref.split("#")
    fin = iso(at + timedelta(seconds=seconds)) if seconds is not None else None
    db.execute(
        "INSERT INTO executions (id, runbook_id, runbook_path, runbook_hash, procedure_id,"
        " environment, params, digest, state, state_name, cursor, dry_run, started_by,"
        " created_at, updated_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
        (
            eid,
            rb,
            f"runbooks/{rb}.md",
            "h",
            proc,
            environment,
            "{}",
            "d",
            state,
            state,
            0,
            int(dry_run),
            "alice",
            iso(at),
            fin or iso(at),
            fin,
        ),
    )
    for seq, (step, sstate) in enumerate(steps):
        t = iso(at + timedelta(seconds=seq))
        db.execute(
            "INSERT INTO step_runs (execution_id, seq, step_id, step_index, kind, state,"
            " state_name, attempts, started_at, finished_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (eid, seq, step, seq, "sh", sstate, sstate, 1, t, t),
        )


def add_event(
    db: Database, *, at: datetime, action: str, eid: str | None, payload: dict[str, Any]
) -> None:
    """A record appended to the real audit chain, at time ``at``."""
    audit.record(
        db=db,
        actor="alice",
        action=action,
        subject="s",
        payload=payload,
        execution_id=eid,
        ts=iso(at),
    )


def add_incident(
    db: Database,
    iid: int,
    *,
    detected: datetime,
    resolved: datetime | None,
    runs: Sequence[str] = (),
    drill: bool = False,
) -> None:
    db.execute(
        "INSERT INTO incidents (id, title, type, services, severity, status, created_by,"
        " detected_at, declared_at, resolved_at, updated_at, drill)"
        " VALUES (?, 't', 'service', '[]', 'SEV3', ?, 'alice', ?, ?, ?, ?, ?)",
        (
            iid,
            "resolved" if resolved else "investigating",
            iso(detected),
            iso(detected),
            iso(resolved) if resolved else None,
            iso(detected),
            int(drill),
        ),
    )
    for eid in runs:
        db.execute(
            "INSERT INTO incident_executions (incident_id, execution_id, ref, started_by, ts)"
            " VALUES (?, ?, 'checks#quick', 'alice', ?)",
            (iid, eid, iso(detected)),
        )


def add_feedback(db: Database, eid: str, person: str, rating: int, comment: str | None) -> None:
    db.execute(
        "INSERT INTO runbook_feedback (execution_id, person, rating, comment, created_at,"
        " updated_at) VALUES (?, ?, ?, ?, ?, ?)",
        (eid, person, rating, comment, iso(NOW), iso(NOW)),
    )


def known_history(db: Database) -> None:
    """The history the tests' numbers are worked out from (checks#quick unless said):

    - x1 2026-11-05 succeeded in 10 s; its manual step attested with a note
    - x2 2026-11-10 00:30 succeeded in 20 s; step ``first`` failed and the run went on
      (during incident 1); attested without a note
    - x3 2026-11-25 failed in 30 s at ``second``
    - x4 2026-11-12 aborted after 5 s; ``second`` skipped
    - x5 2026-11-13 succeeded in 40 s: a dry run (not counted)
    - x6 2026-08-01 succeeded in 50 s: before the 90-day window
    - x7 2026-11-20 waiting (not finished)
    - x8 2026-11-14 other#solo failed on staging
    - incident 1 (detected 2026-11-10 00:00, resolved 1 h later) ran x1 and x2; incident 2
      resolved, ran nothing; incident 3 a drill that ran x3; incident 4 still open, ran x3
    - feedback: x1 5 by alice and 4 by bob ("fine"), x3 1 by alice ("second is wrong")
    """
    d = datetime
    with db.transaction():
        add_run(
            db,
            "x1",
            at=d(2026, 11, 5, tzinfo=UTC),
            state="succeeded",
            seconds=10,
            steps=[("first", "succeeded"), ("second", "succeeded")],
        )
        add_run(
            db,
            "x2",
            at=d(2026, 11, 10, 0, 30, tzinfo=UTC),
            state="succeeded",
            seconds=20,
            steps=[("first", "failed"), ("second", "succeeded")],
        )
        add_run(
            db,
            "x3",
            at=d(2026, 11, 25, tzinfo=UTC),
            state="failed",
            seconds=30,
            steps=[("first", "succeeded"), ("second", "failed")],
        )
        add_run(
            db,
            "x4",
            at=d(2026, 11, 12, tzinfo=UTC),
            state="aborted",
            seconds=5,
            steps=[("first", "succeeded"), ("second", "skipped")],
        )
        add_run(
            db,
            "x5",
            at=d(2026, 11, 13, tzinfo=UTC),
            state="succeeded",
            seconds=40,
            steps=[("first", "failed"), ("second", "succeeded")],
            dry_run=True,
        )
        add_run(
            db,
            "x6",
            at=d(2026, 8, 1, tzinfo=UTC),
            state="succeeded",
            seconds=50,
            steps=[("first", "succeeded")],
        )
        add_run(
            db,
            "x7",
            at=d(2026, 11, 20, tzinfo=UTC),
            state="waiting",
            seconds=None,
            steps=[("first", "waiting")],
        )
        add_run(
            db,
            "x8",
            at=d(2026, 11, 14, tzinfo=UTC),
            state="failed",
            seconds=7,
            steps=[("only", "failed")],
            ref="other#solo",
            environment="staging",
        )
        add_event(
            db,
            at=d(2026, 11, 5, 0, 0, 5, tzinfo=UTC),
            action="execution.step.attested",
            eid="x1",
            payload={"items": ["a"], "note": "CHG-1", "seq": 1, "step": "second"},
        )
        add_event(
            db,
            at=d(2026, 11, 10, 0, 30, 5, tzinfo=UTC),
            action="execution.step.attested",
            eid="x2",
            payload={"items": ["a"], "note": None, "seq": 1, "step": "second"},
        )
        add_incident(
            db,
            1,
            detected=d(2026, 11, 10, tzinfo=UTC),
            resolved=d(2026, 11, 10, 1, tzinfo=UTC),
            runs=["x1", "x2"],
        )
        add_incident(
            db, 2, detected=d(2026, 11, 15, tzinfo=UTC), resolved=d(2026, 11, 15, 2, tzinfo=UTC)
        )
        add_incident(
            db,
            3,
            detected=d(2026, 11, 24, 23, tzinfo=UTC),
            resolved=d(2026, 11, 24, 23, 30, tzinfo=UTC),
            runs=["x3"],
            drill=True,
        )
        add_incident(db, 4, detected=d(2026, 11, 26, tzinfo=UTC), resolved=None, runs=["x3"])
        add_feedback(db, "x1", "alice", 5, None)
        add_feedback(db, "x1", "bob", 4, "fine")
        add_feedback(db, "x3", "alice", 1, "second is wrong")
