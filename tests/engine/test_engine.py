"""The engine end to end over real subprocesses and a real SQLite journal."""

from __future__ import annotations

import pytest

from opsbook import audit
from opsbook.engine import _journal as journal
from opsbook.engine import approvals
from opsbook.engine._hooks import Reporter
from opsbook.engine.states import State
from opsbook.errors import ConflictError, PermissionDenied
from opsbook.runbooks.model import ApprovalSpec

from .conftest import Harness

BASIC = """
---
id: basic
title: Basic
owner: ops
review_interval: 30d
last_reviewed: 2026-11-20
---

# Basic

## Simple

```yaml procedure
permissions: [operator]
params:
  service: {type: choice, choices: [account, payment], default: payment}
  count: {type: integer, default: 2, min: 1, max: 5}
```

### Say hello

Print JSON.

```sh
printf '{"status": "UP", "service": "%s"}' {{ params.service }}
```

```expect
exit_code == 0
json.status == "UP"
json.service == "payment"
```

### Use the previous result

```sh {name=echo-prev}
echo {{ steps["say-hello"].result.json.service }}
```

```expect
stdout.contains("payment")
```

### Skipped when false

```sh {when="params.count > 3"}
exit 1
```

### Every service

```sh {for_each=env.services}
echo {{ item.name }}
```

```expect
exit_code == 0
```
"""


async def test_a_procedure_runs_and_is_journaled(harness: Harness) -> None:
    harness.write("basic.md", BASIC)
    out = await harness.run("basic#simple")
    assert out.state is State.SUCCEEDED
    runs = journal.step_runs(db=harness.db, execution_id=out.execution_id)
    assert [(r.step_id, r.state) for r in runs] == [
        ("say-hello", State.SUCCEEDED),
        ("echo-prev", State.SUCCEEDED),
        ("skipped-when-false", State.SKIPPED),
        ("every-service", State.SUCCEEDED),
    ]
    assert [i["fields"]["stdout"].strip() for i in runs[3].result["items"]] == [
        "account",
        "payment",
    ]
    actions = [e["action"] for e in journal.events(db=harness.db, execution_id=out.execution_id)]
    assert actions[:3] == ["execution.created", "execution.started", "execution.step.started"]
    assert actions[-1] == "execution.succeeded"
    assert audit.verify(db=harness.db).ok


FAILING = """
---
id: failing
title: Failing
---

# Failing

## Proc

```yaml procedure
permissions: [operator]
```

### Check the status

```sh
echo '{"status": "DOWN"}'
```

```expect
json.status == "UP"
```

### Never reached

```sh
echo no
```
"""


async def test_a_failed_expectation_reports_expression_and_actual_value(harness: Harness) -> None:
    harness.write("failing.md", FAILING)
    out = await harness.run("failing#proc")
    assert out.state is State.FAILED
    runs = journal.step_runs(db=harness.db, execution_id=out.execution_id)
    assert len(runs) == 1
    assert 'json.status == "UP"' in (runs[0].reason or "")
    assert "DOWN" in (runs[0].reason or "")
    outcome = runs[0].result["expectations"][0]
    assert outcome["passed"] is False and outcome["actual"]["json"] == {"status": "DOWN"}


MANUAL = """
---
id: manual
title: Manual
---

# Manual

## Proc

```yaml procedure
permissions: [operator]
```

### Check the dashboards

Look at Grafana.

- [ ] No red panels
- [ ] Alerts acknowledged

### After

```sh
echo done
```
"""


async def test_manual_step_parks_and_continues_after_attestation(harness: Harness) -> None:
    harness.write("manual.md", MANUAL)
    out = await harness.run("manual#proc")
    assert out.state is State.WAITING and out.state_name == "AwaitingInput"
    engine = harness.engine()
    # Resuming without an attestation leaves it parked and writes nothing.
    before = len(journal.events(db=harness.db, execution_id=out.execution_id))
    again = await engine.resume(execution_id=out.execution_id, actor="alice")
    assert again.state is State.WAITING
    assert len(journal.events(db=harness.db, execution_id=out.execution_id)) == before
    engine.attest(execution_id=out.execution_id, actor="bob", note="CHG-1")
    done = await engine.resume(execution_id=out.execution_id, actor="bob")
    assert done.state is State.SUCCEEDED
    attested = [
        e
        for e in journal.events(db=harness.db, execution_id=out.execution_id)
        if e["action"] == "execution.step.attested"
    ]
    assert attested[0]["actor"] == "bob"
    assert attested[0]["payload"]["items"] == ["No red panels", "Alerts acknowledged"]


APPROVAL = """
---
id: risky
title: Risky
---

# Risky

## Change

```yaml procedure
permissions: [operator]
risk: high
```

### Get approval

```approval
quorum: 2
roles: [approver]
```

### Make the change

```sh
echo changed
```
"""


async def test_four_eyes_quorum_and_no_self_approval(harness: Harness) -> None:

    harness.write("risky.md", APPROVAL)
    out = await harness.run("risky#change", user="bob")
    assert out.state_name == "AwaitingApproval"
    row = journal.get_execution(db=harness.db, execution_id=out.execution_id)
    run = journal.step_runs(db=harness.db, execution_id=row.id)[-1]
    spec = ApprovalSpec(quorum=2, roles=("approver",))

    def approve(user: str, roles: tuple[str, ...]) -> None:
        # The documented calling pattern: the refusal's audit record is committed, then raised.
        denied: PermissionDenied | None = None
        with harness.db.transaction():
            try:
                approvals.decide(
                    db=harness.db,
                    execution=row,
                    step_seq=run.seq,
                    step_id=run.step_id,
                    step_state=run.state,
                    spec=spec,
                    approver=user,
                    approver_roles=roles,
                    decision="approved",
                    digest=row.digest,
                )
            except PermissionDenied as exc:
                denied = exc
        if denied is not None:
            raise denied

    with pytest.raises(PermissionDenied, match="cannot approve"):
        approve("bob", ("approver", "admin"))  # the starter, even with admin
    with pytest.raises(PermissionDenied, match="needs one of"):
        approve("alice", ("operator",))
    approve("carol", ("approver",))
    with pytest.raises(ConflictError):
        approve("carol", ("approver",))  # the same person twice does not make a quorum
    mid = await harness.engine().resume(execution_id=row.id, actor="bob")
    assert mid.state_name == "AwaitingApproval"
    approve("root", ("admin", "approver"))
    done = await harness.engine().resume(execution_id=row.id, actor="bob")
    assert done.state is State.SUCCEEDED
    denied = [
        e
        for e in journal.events(db=harness.db, execution_id=row.id)
        if e["action"] == "execution.approval.denied"
    ]
    assert len(denied) == 2


async def test_an_approval_stops_counting_when_the_runbook_changes(harness: Harness) -> None:
    path = harness.write("risky.md", APPROVAL.replace("quorum: 2", "quorum: 1"))
    out = await harness.run("risky#change", user="bob")
    path.write_text(path.read_text().replace("echo changed", "echo changed; rm -rf /tmp/x"))
    with pytest.raises(ConflictError, match="changed since"):
        await harness.engine().resume(execution_id=out.execution_id, actor="bob")


async def test_rejection_fails_the_run(harness: Harness) -> None:

    harness.write("risky.md", APPROVAL.replace("quorum: 2", "quorum: 1"))
    out = await harness.run("risky#change", user="bob")
    row = journal.get_execution(db=harness.db, execution_id=out.execution_id)
    run = journal.step_runs(db=harness.db, execution_id=row.id)[-1]
    with harness.db.transaction():
        approvals.decide(
            db=harness.db,
            execution=row,
            step_seq=run.seq,
            step_id=run.step_id,
            step_state=run.state,
            spec=ApprovalSpec(roles=("approver",)),
            approver="carol",
            approver_roles=("approver",),
            decision="rejected",
            digest=row.digest,
        )
    done = await harness.engine().resume(execution_id=row.id, actor="bob")
    assert done.state is State.FAILED and "rejected by carol" in (done.reason or "")


async def test_permissions_are_checked_and_denials_audited(harness: Harness) -> None:
    harness.write("risky.md", APPROVAL.replace("permissions: [operator]", "permissions: [manager]"))
    with pytest.raises(PermissionDenied):
        await harness.run("risky#change", user="alice")
    assert harness.db.one("SELECT action FROM events ORDER BY id DESC LIMIT 1") == {
        "action": "execution.start.denied"
    }


FLOW = """
---
id: flow
title: Flow
---

# Flow

## Branching

```yaml procedure
permissions: [operator]
```

### Probe

```sh
echo '{"state": "down"}'
```

### Decide

```decide
- if: steps.probe.result.json.state == "up"
  goto: healthy
- else: restart
```

### Restart

```sh {on_failure=continue}
exit 3
```

### Healthy

```sh
echo fine
```
"""


async def test_decide_branches_and_on_failure_continue(harness: Harness) -> None:
    harness.write("flow.md", FLOW)
    out = await harness.run("flow#branching")
    assert out.state is State.SUCCEEDED
    runs = journal.step_runs(db=harness.db, execution_id=out.execution_id)
    assert [(r.step_id, r.state) for r in runs] == [
        ("probe", State.SUCCEEDED),
        ("decide", State.SUCCEEDED),
        ("restart", State.FAILED),
        ("healthy", State.SUCCEEDED),
    ]


async def test_dry_run_renders_and_runs_nothing(harness: Harness, tmp_path) -> None:  # type: ignore[no-untyped-def]
    marker = tmp_path / "touched"
    harness.write(
        "dry.md",
        f"""
        ---
        id: dry
        title: Dry
        ---

        # Dry

        ## Proc

        ```yaml procedure
        permissions: [operator]
        ```

        ### Touch

        ```sh
        touch {marker}
        ```

        ### Wait

        ```action
        core.sleep: {{seconds: 30}}
        ```

        ```expect
        result.slept == 30
        ```

        ### Confirm

        - [ ] looked
        """,
    )
    out = await harness.run("dry#proc", dry_run=True)
    assert out.state is State.SUCCEEDED
    assert not marker.exists()
    runs = journal.step_runs(db=harness.db, execution_id=out.execution_id)
    assert runs[0].state_name == "DryRun" and str(marker) in runs[0].result["would_run"]
    # The action answers what it would do; its expectations are not checked in a dry run.
    assert runs[1].state is State.SUCCEEDED and runs[1].result["expectations"] == []
    assert runs[1].result["fields"]["result"] == {"would_sleep": 30}
    assert runs[2].state is State.SKIPPED and runs[2].state_name == "DryRun"


async def test_retries_then_fail_are_journaled(harness: Harness, tmp_path) -> None:  # type: ignore[no-untyped-def]
    harness.write(
        "retry.md",
        """
        ---
        id: retry
        title: Retry
        ---

        # Retry

        ## Proc

        ```yaml procedure
        permissions: [operator]
        ```

        ### Flaky

        ```sh {retries=2 retry_delay=0.01}
        exit 1
        ```
        """,
    )
    out = await harness.run("retry#proc")
    assert out.state is State.FAILED
    runs = journal.step_runs(db=harness.db, execution_id=out.execution_id)
    assert runs[0].attempts == 3
    retries = [
        e
        for e in journal.events(db=harness.db, execution_id=out.execution_id)
        if e["action"] == "execution.step.retrying"
    ]
    assert len(retries) == 2


async def test_a_finished_execution_cannot_be_resumed(harness: Harness) -> None:
    harness.write("basic.md", BASIC)
    out = await harness.run("basic#simple")
    with pytest.raises(ConflictError, match="already finished"):
        await harness.engine().resume(execution_id=out.execution_id, actor="alice")


PARENT = """
---
id: parent
title: Parent
---

# Parent

## Main

```yaml procedure
permissions: [operator]
```

### Choose

```decide
- else: {run: "manual#proc"}
```

### Last

```sh
echo parent-done
```
"""


async def test_a_decide_child_that_waits_parks_the_parent_until_it_finishes(
    harness: Harness,
) -> None:
    harness.write("manual.md", MANUAL)
    harness.write("parent.md", PARENT)
    out = await harness.run("parent#main")
    assert out.state is State.WAITING and out.state_name == "AwaitingChild"
    child_id = journal.step_runs(db=harness.db, execution_id=out.execution_id)[0].result["child"]
    child = journal.get_execution(db=harness.db, execution_id=child_id)
    assert child.parent_id == out.execution_id and child.state_name == "AwaitingInput"
    engine = harness.engine()
    # Resuming the parent while the child still waits keeps both parked.
    again = await engine.resume(execution_id=out.execution_id, actor="alice")
    assert again.state_name == "AwaitingChild"
    # Finishing the child (attest, resume it) continues the parent to the end.
    engine.attest(execution_id=child_id, actor="bob")
    done = await engine.resume(execution_id=child_id, actor="bob")
    assert done.state is State.SUCCEEDED
    parent = journal.get_execution(db=harness.db, execution_id=out.execution_id)
    assert parent.state is State.SUCCEEDED
    runs = journal.step_runs(db=harness.db, execution_id=parent.id)
    assert [(r.step_id, r.state) for r in runs] == [
        ("choose", State.SUCCEEDED),
        ("last", State.SUCCEEDED),
    ]
    assert runs[0].result["child_state"] == "succeeded"
    assert audit.verify(db=harness.db).ok


async def test_a_waiting_child_continued_through_its_parent(harness: Harness) -> None:
    harness.write("manual.md", MANUAL)
    harness.write("parent.md", PARENT)
    out = await harness.run("parent#main")
    child_id = journal.step_runs(db=harness.db, execution_id=out.execution_id)[0].result["child"]
    engine = harness.engine()
    engine.attest(execution_id=child_id, actor="bob")
    done = await engine.resume(execution_id=out.execution_id, actor="bob")
    assert done.state is State.SUCCEEDED
    assert journal.get_execution(db=harness.db, execution_id=child_id).state is State.SUCCEEDED


async def test_answers_after_an_approval_expires_do_not_count(harness: Harness) -> None:
    harness.write("risky.md", APPROVAL.replace("quorum: 2\n", "quorum: 1\nexpires: 10m\n"))
    out = await harness.run("risky#change", user="bob")
    row = journal.get_execution(db=harness.db, execution_id=out.execution_id)
    run = journal.step_runs(db=harness.db, execution_id=row.id)[-1]
    spec = ApprovalSpec(quorum=1, roles=("approver",), expires=600)
    # The request was made an hour ago: it expired 50 minutes ago.
    harness.db.execute(
        "UPDATE step_runs SET started_at = '2020-01-01T10:00:00Z' WHERE execution_id = ?",
        (row.id,),
    )
    with pytest.raises(ConflictError, match="expired"), harness.db.transaction():
        approvals.decide(
            db=harness.db,
            execution=row,
            step_seq=run.seq,
            step_id=run.step_id,
            step_state=run.state,
            spec=spec,
            approver="carol",
            approver_roles=("approver",),
            decision="approved",
            digest=row.digest,
            requested_at="2020-01-01T10:00:00Z",
        )
    # An answer recorded after the deadline (e.g. by an older client) is not counted either.
    harness.db.execute(
        "INSERT INTO approvals (execution_id, step_seq, approver, decision, digest, comment,"
        " created_at) VALUES (?, ?, 'carol', 'approved', ?, NULL, '2020-01-01T10:11:00Z')",
        (row.id, run.seq, row.digest),
    )
    st = approvals.status(
        db=harness.db,
        execution_id=row.id,
        step_seq=run.seq,
        spec=spec,
        digest=row.digest,
        requested_at="2020-01-01T10:00:00Z",
    )
    assert st.verdict == "expired" and st.approvers == ()
    done = await harness.engine().resume(execution_id=row.id, actor="bob")
    assert done.state is State.FAILED and "expired" in (done.reason or "")


UNKNOWN_WHEN = """
---
id: badwhen
title: Bad when
---

# Bad when

## Proc

```yaml procedure
permissions: [operator]
```

### Guarded

```sh {when="params.nope == 1" on_failure=continue}
echo never
```

### After

```sh
echo after
```
"""


async def test_a_when_that_cannot_be_evaluated_fails_the_step_not_the_engine(
    harness: Harness,
) -> None:
    harness.write("badwhen.md", UNKNOWN_WHEN)
    out = await harness.run("badwhen#proc")
    # on_failure=continue applies; the run is never left "running".
    assert out.state is State.SUCCEEDED
    runs = journal.step_runs(db=harness.db, execution_id=out.execution_id)
    assert [(r.step_id, r.state) for r in runs] == [
        ("guarded", State.FAILED),
        ("after", State.SUCCEEDED),
    ]
    assert "nope" in (runs[0].reason or "")
    harness.write("badwhen.md", UNKNOWN_WHEN.replace(" on_failure=continue", ""))
    out = await harness.run("badwhen#proc")
    assert out.state is State.FAILED
    row = journal.get_execution(db=harness.db, execution_id=out.execution_id)
    assert row.state is State.FAILED


async def test_a_dry_run_renders_past_a_decide_it_cannot_evaluate(harness: Harness) -> None:
    harness.write("flow.md", FLOW)
    out = await harness.run("flow#branching", dry_run=True)
    assert out.state is State.SUCCEEDED
    runs = journal.step_runs(db=harness.db, execution_id=out.execution_id)
    # Every step after the decide is still shown (rendered, not run).
    assert [r.step_id for r in runs] == ["probe", "decide", "restart", "healthy"]
    assert runs[1].state_name == "DryRun" and runs[1].result["dry_run"] is True


ACTION_FAILS = """
---
id: actfail
title: Action fails
---

# Action fails

## Proc

```yaml procedure
permissions: [operator]
```

### Restart

```action
core.fail: {message: "the sandbox is not up"}
```

```expect
result.state == "running"
```
"""


async def test_a_block_that_cannot_run_fails_with_its_own_error(harness: Harness) -> None:
    harness.write("actfail.md", ACTION_FAILS)
    out = await harness.run("actfail#proc")
    assert out.state is State.FAILED
    # The cause, not a CEL error about a missing result.
    assert "the sandbox is not up" in (out.reason or "")
    run = journal.step_runs(db=harness.db, execution_id=out.execution_id)[0]
    assert run.result["expectations"] == []


class RetryWatcher(Reporter):
    """A reporter that keeps what the engine says about each failed attempt."""

    def __init__(self) -> None:
        self.attempts: list[dict[str, object]] = []

    def step_retrying(self, **kw: object) -> None:  # keeps every keyword as given
        self.attempts.append(kw)


async def test_each_failed_attempt_is_reported_with_its_reason_and_the_wait(
    harness: Harness,
) -> None:
    harness.write(
        "retry.md",
        """
        ---
        id: retry
        title: Retry
        ---

        # Retry

        ## Proc

        ```yaml procedure
        permissions: [operator]
        ```

        ### Flaky

        ```sh {retries=2 retry_delay=0.01}
        echo '{"status": "DOWN"}'
        ```

        ```expect
        json.status == "UP"
        ```
        """,
    )
    watcher = RetryWatcher()
    out = await harness.run("retry#proc", reporter=watcher)
    assert out.state is State.FAILED
    assert [(a["attempt"], a["of"], a["retry_in"]) for a in watcher.attempts] == [
        (1, 3, 0.01),
        (2, 3, 0.02),
    ]
    reason = str(watcher.attempts[0]["reason"])
    assert 'expected json.status == "UP"' in reason and "'DOWN'" in reason
    events = [
        e["payload"]
        for e in journal.events(db=harness.db, execution_id=out.execution_id)
        if e["action"] == "execution.step.retrying"
    ]
    assert [(p["attempt"], p["of"], p["retry_in"]) for p in events] == [(1, 3, 0.01), (2, 3, 0.02)]
    assert "'DOWN'" in events[0]["failure"]
    (run,) = journal.step_runs(db=harness.db, execution_id=out.execution_id)
    assert run.attempts == 3
    assert [a["attempt"] for a in run.result["failed_attempts"]] == [1, 2]


class OutputWatcher(Reporter):
    """A reporter that keeps the order of what it is told."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, ...]] = []

    def step_output(self, *, step: object, seq: int, stream: str, line: str) -> None:
        self.seen.append(("output", stream, line))

    def step_finished(self, report: object) -> None:
        self.seen.append(("finished",))


async def test_output_is_reported_line_by_line_redacted_before_the_step_ends(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSBOOK_SECRET_LIVE_TOKEN", "s3cr3t-live-value")
    harness.write(
        "out.md",
        """
        ---
        id: out
        title: Out
        ---

        # Out

        ## Proc

        ```yaml procedure
        permissions: [operator]
        ```

        ### Talk

        ```sh
        echo "token is {{ secret('live-token') }}"; printf 'warn\\n' >&2
        t={{ secret('live-token') }}; printf 'split %s' "${t%%-*}"; sleep 0.2; echo "-${t#*-}"
        printf 'tail'
        ```
        """,
    )
    watcher = OutputWatcher()
    out = await harness.run("out#proc", reporter=watcher)
    assert out.state is State.SUCCEEDED
    outputs = [s for s in watcher.seen if s[0] == "output"]
    assert ("output", "stderr", "warn") in outputs
    assert ("output", "stdout", "tail") in outputs  # the last piece, without a newline
    (token,) = [s for s in outputs if s[2].startswith("token is")]
    assert "s3cr3t-live-value" not in token[2]
    (split,) = [s for s in outputs if s[2].startswith("split")]  # written in two pieces
    assert "s3cr3t" not in split[2] and "live-value" not in split[2]
    assert watcher.seen[-1] == ("finished",)


async def test_an_action_reports_progress_live_before_its_step_ends(harness: Harness) -> None:
    from tests.actions.fakes import FakeServer, Reply

    calls = {"n": 0}

    def flaky(req: object) -> Reply:
        calls["n"] += 1
        return Reply(503, "starting") if calls["n"] <= 2 else Reply(200, {"status": "UP"})

    with FakeServer({"/health": flaky}) as srv:
        harness.write(
            "wait.md",
            f"""
            ---
            id: wait
            title: Wait
            ---

            # Wait

            ## Proc

            ```yaml procedure
            permissions: [operator]
            ```

            ### Wait for health

            ```action
            http.wait_until: {{url: "{srv.url}/health", interval: 0.01}}
            ```
            """,
        )
        watcher = OutputWatcher()
        out = await harness.run("wait#proc", reporter=watcher)
    assert out.state is State.SUCCEEDED
    assert watcher.seen == [
        ("output", "stdout", "attempt 1: HTTP 503"),
        ("output", "stdout", "attempt 2: HTTP 503"),
        ("finished",),
    ]
