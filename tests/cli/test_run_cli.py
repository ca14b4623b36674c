"""`opsbook run` and friends as a user calls them: exit codes, messages, JSON, no tracebacks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from opsbook.db import open_database

from .conftest import OPSBOOK, Run


def write(ws: Path, name: str, text: str) -> Path:
    p = ws / "runbooks" / name
    p.write_text(textwrap.dedent(text).lstrip())
    return p


PARAMS = """
---
id: params
title: Params
---

# Params

## Echo

```yaml procedure
permissions: [operator]
params:
  target: {type: string, required: true}
```

### Echo it

```sh
echo {{ params.target }}
```
"""


def test_injection_through_a_parameter_cannot_run_commands(
    ob: Run, ws_root: Path, tmp_path: Path
) -> None:
    write(ws_root, "params.md", PARAMS)
    pwned = tmp_path / "pwned"
    for payload in (
        f"$(touch {pwned}); rm -rf /nonexistent",
        f"`touch {pwned}`",
        f"x; touch {pwned}",
        f"x\ntouch {pwned}",
        f"' ; touch {pwned} ; '",
        f'" && touch {pwned} && "',
    ):
        res = ob("run", "params#echo", "--param", f"target={payload}", "--json")
        assert res.returncode == 0, res.stderr
        out = json.loads(res.stdout)
        assert out["steps"][0]["result"]["fields"]["stdout"].rstrip("\n") == payload
        assert not pwned.exists()


def test_bad_input_gets_a_message_and_exit_2_without_traceback(ob: Run, ws_root: Path) -> None:
    write(ws_root, "params.md", PARAMS)
    cases = [
        (["run", "params#echo"], "target"),  # missing required parameter
        (["run", "params#echo", "--param", "nope=1", "--param", "target=x"], "nope"),
        (["run", "params#echo", "--param", "target"], "="),
        (["run", "params#nope", "--param", "target=x"], "nope"),
        (["run", "nosuch#echo"], "nosuch"),
        (["run", "params#echo", "--env", "mars", "--param", "target=x"], "mars"),
        (["executions", "show", "doesnotexist"], "doesnotexist"),
    ]
    for args, needle in cases:
        res = ob(*args)
        assert res.returncode == 2, (args, res.stdout, res.stderr)
        assert needle in res.stderr, (args, res.stderr)
        assert "Traceback" not in res.stderr


def test_malformed_runbook_names_file_and_line(ob: Run, ws_root: Path) -> None:
    write(
        ws_root,
        "broken.md",
        """
        ---
        id: broken
        title: Broken
        ---

        # Broken

        ## Proc

        ```yaml procedure
        permissions: [operator]
        ```

        ### Step

        ```sh {timeout=30s bogus=1}
        echo hi
        ```
        """,
    )
    res = ob("run", "broken#proc")
    assert res.returncode == 2
    assert "broken.md:16" in res.stderr and "bogus" in res.stderr
    assert "Traceback" not in res.stderr
    lint = ob("lint", str(ws_root / "runbooks" / "broken.md"))
    assert lint.returncode == 1 and "broken.md:16" in lint.stdout


def test_no_workspace_is_a_clear_error(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "OPSBOOK_WORKSPACE"}
    res = subprocess.run(
        [*OPSBOOK, "runbooks", "list"], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert res.returncode == 2 and "opsbook init" in res.stderr


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

### Look

- [ ] all green

### Then

```sh
echo after
```
"""


def test_non_interactive_run_parks_with_exit_3_and_confirm_finishes(ob: Run, ws_root: Path) -> None:
    write(ws_root, "manual.md", MANUAL)
    res = ob("run", "manual#proc", "--yes", "--as", "alice")
    assert res.returncode == 3, res.stderr
    ex_id = json.loads(ob("executions", "list", "--json").stdout)[0]["id"]
    shown = json.loads(ob("executions", "show", ex_id, "--json").stdout)
    assert shown["state"] == "waiting" and shown["state_name"] == "AwaitingInput"
    done = ob("executions", "confirm", ex_id, "--as", "bob", "--note", "CHG-9", "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["state"] == "succeeded"
    assert ob("audit", "verify").returncode == 0


def test_secret_never_reaches_the_database_output_or_export(
    ob: Run, ws_root: Path, tmp_path: Path
) -> None:
    canary = "CANARY-s3cr3t-7f9a"
    write(
        ws_root,
        "secret.md",
        """
        ---
        id: secret
        title: Secret
        ---

        # Secret

        ## Proc

        ```yaml procedure
        permissions: [operator]
        params:
          token: {type: secret, from: api-token}
        ```

        ### Use it

        ```sh
        echo "token is {{ params.token }}"; echo "also {{ secret('api-token') }}" >&2; exit 1
        ```
        """,
    )
    res = ob("run", "secret#proc", "--json", env={"OPSBOOK_SECRET_API_TOKEN": canary})
    assert res.returncode == 1
    assert canary not in res.stdout and canary not in res.stderr
    assert "***" in res.stdout
    ob("audit", "export", "--out", str(tmp_path / "pack"))
    for f in (tmp_path / "pack").iterdir():
        assert canary not in f.read_text()
    for f in (ws_root / ".opsbook").rglob("*"):
        if f.is_file():
            assert canary.encode() not in f.read_bytes(), f


CRASH = """
---
id: crash
title: Crash
---

# Crash

## Proc

```yaml procedure
permissions: [operator]
```

### First

```sh
echo first
```

### Long

```sh {IDEMPOTENT}
sleep 30
```

### Last

```sh
echo last
```
"""


def _wait_for_step(ws_root: Path, step: str, timeout: float = 20) -> str:
    db = open_database(f"sqlite:///{ws_root / '.opsbook' / 'opsbook.db'}")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            row = db.one(
                "SELECT execution_id FROM step_runs WHERE step_id = ? AND state = 'running'",
                (step,),
            )
            if row:
                return str(row["execution_id"])
            time.sleep(0.05)
    finally:
        db.close()
    raise AssertionError(f"step {step} never started")


def _wait_for_pid(ws_root: Path, ex_id: str, timeout: float = 20) -> None:
    db = open_database(f"sqlite:///{ws_root / '.opsbook' / 'opsbook.db'}")
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            row = db.one(
                "SELECT pid FROM step_runs WHERE execution_id = ? AND state = 'running'",
                (ex_id,),
            )
            if row and row["pid"]:
                return
            time.sleep(0.05)
    finally:
        db.close()
    raise AssertionError("the running step's pid was never journaled")


def _kill9_mid_step(ws_root: Path) -> str:
    env = {**os.environ, "OPSBOOK_WORKSPACE": str(ws_root)}
    proc = subprocess.Popen(
        [*OPSBOOK, "run", "crash#proc"],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    ex_id = _wait_for_step(ws_root, "long")
    _wait_for_pid(ws_root, ex_id)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=10)
    os.killpg(proc.pid, signal.SIGKILL) if _group_alive(proc.pid) else None
    return ex_id


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_kill_9_mid_step_then_resume_asks_for_a_decision(ob: Run, ws_root: Path) -> None:
    write(ws_root, "crash.md", CRASH.replace(" {IDEMPOTENT}", ""))
    ex_id = _kill9_mid_step(ws_root)
    shown = json.loads(ob("executions", "show", ex_id, "--json").stdout)
    assert shown["state"] == "running"  # nobody has noticed yet ...
    listed = json.loads(ob("executions", "list", "--json").stdout)
    assert [e["engine_gone"] for e in listed if e["id"] == ex_id] == [True]  # ... but list can
    # The step's own process group (sleep 30) outlived the engine (its pid was journaled
    # once the step had run a moment) ...
    db = open_database(f"sqlite:///{ws_root / '.opsbook' / 'opsbook.db'}")
    try:
        row = db.one(
            "SELECT pid FROM step_runs WHERE execution_id = ? AND step_id = 'long'", (ex_id,)
        )
    finally:
        db.close()
    assert row is not None and row["pid"] and _group_alive(int(row["pid"]))
    parked = ob("executions", "resume", ex_id, "--json")
    assert parked.returncode == 3, parked.stderr
    assert json.loads(parked.stdout)["state_name"] == "AwaitingRecoveryDecision"
    # ... and is stopped when the crash is noticed, before anyone chooses to retry it.
    assert not _group_alive(int(row["pid"]))
    events = json.loads(ob("executions", "show", ex_id, "--events", "--json").stdout)["events"]
    assert "execution.step.leftovers_stopped" in [e["action"] for e in events]
    res = ob("executions", "resume", ex_id, "--decision", "skip", "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [(s["step"], s["state"]) for s in data["steps"]] == [
        ("first", "succeeded"),
        ("long", "skipped"),
        ("last", "succeeded"),
    ]
    assert ob("audit", "verify").returncode == 0


def test_kill_9_mid_idempotent_step_reruns_it(ob: Run, ws_root: Path) -> None:
    write(
        ws_root,
        "crash.md",
        CRASH.replace(" {IDEMPOTENT}", " {idempotent=true}").replace(
            "sleep 30", f"if [ -f {ws_root}/done ]; then exit 0; fi; touch {ws_root}/done; sleep 30"
        ),
    )
    ex_id = _kill9_mid_step(ws_root)
    res = ob("executions", "resume", ex_id, "--json")
    assert res.returncode == 0, res.stderr
    data = json.loads(res.stdout)
    assert [(s["step"], s["state"], s["state_name"]) for s in data["steps"]] == [
        ("first", "succeeded", "Succeeded"),
        ("long", "failed", "Crashed"),
        ("long", "succeeded", "Succeeded"),
        ("last", "succeeded", "Succeeded"),
    ]


def test_approve_via_cli_refuses_the_starter(ob: Run, ws_root: Path) -> None:
    write(
        ws_root,
        "risky.md",
        """
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

        ### Approve

        ```approval
        roles: [approver]
        ```

        ### Change it

        ```sh
        echo changed
        ```
        """,
    )
    res = ob("run", "risky#change", "--yes", "--as", "bob")
    assert res.returncode == 3
    ex_id = json.loads(ob("executions", "list", "--json").stdout)[0]["id"]
    self_ = ob("approve", ex_id, "--as", "bob")
    assert self_.returncode == 2 and "cannot approve" in self_.stderr
    ok = ob("approve", ex_id, "--as", "carol")
    assert ok.returncode == 0, ok.stderr
    done = ob("executions", "resume", ex_id, "--as", "bob", "--json")
    assert done.returncode == 0 and json.loads(done.stdout)["state"] == "succeeded"


def test_risky_run_needs_yes_when_not_interactive(ob: Run, ws_root: Path) -> None:
    write(
        ws_root,
        "risky.md",
        """
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

        ### Approve

        ```approval
        {}
        ```
        """,
    )
    res = ob("run", "risky#change")
    assert res.returncode == 2 and "--yes" in res.stderr


def test_help_lists_the_commands() -> None:
    res = subprocess.run([*OPSBOOK, "--help"], capture_output=True, text=True)
    assert res.returncode == 0
    for cmd in ("run", "executions", "approve", "audit", "lint", "runbooks", "init"):
        assert cmd in res.stdout
    assert sys.executable


def test_unknown_option_or_command_is_a_usage_error(ob: Run) -> None:
    for argv in (("run", "--bogus"), ("nosuch",), ("run",)):
        res = ob(*argv)
        assert res.returncode == 2, argv
        assert "Traceback" not in res.stderr
        assert "Error:" in res.stderr


FAILS_WITH_HELP = """
---
id: fails
title: Fails
---

# Fails

## Proc

```yaml procedure
permissions: [operator]
params:
  service: {type: string, default: payment}
```

### Check it

```sh
printf '{"name": "payment"}'
```

```expect
json.name == params.service
```

### Break

```sh
exit 4
```

### Troubleshooting

Restart the widget with `widgetctl restart`.
"""


def test_a_failure_shows_the_runbooks_troubleshooting_and_expect_sees_params(
    ob: Run, ws_root: Path
) -> None:
    write(ws_root, "fails.md", FAILS_WITH_HELP)
    res = ob("run", "fails#proc")
    assert res.returncode == 1
    assert "✔ Check it" in res.stdout  # `params.service` is in scope for expect
    assert "Troubleshooting" in res.stdout and "widgetctl restart" in res.stdout


def test_errors_are_json_when_json_was_asked_for(ob: Run) -> None:
    res = ob("run", "nosuch#proc", "--json")
    assert res.returncode == 2
    err = json.loads(res.stderr)
    assert err["error"] and "nosuch" in err["message"] and err["exit_code"] == 2
    plain = ob("run", "nosuch#proc")
    assert plain.stderr.startswith("error: ")
