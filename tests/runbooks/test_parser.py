"""Parsing good runbooks into the model."""

from __future__ import annotations

import hashlib
from pathlib import Path

from opsbook.runbooks.model import (
    ApprovalSpec,
    Block,
    ChecklistItem,
    DecideRule,
    Expectation,
    OnFailure,
    Param,
    Step,
    StepKind,
    StepOptions,
)
from opsbook.runbooks.parser import parse_file, parse_text
from tests.runbooks.conftest import FRONT, PATH, line_of, parse, proc, proc_doc

DESIGN_EXAMPLE = """\
---
id: system-monitoring
title: System Monitoring
purpose: Proactive monitoring and health management
owner: operations
review_interval: 30d
last_reviewed: 2026-11-20
---

# System Monitoring

## Morning health check routine

```yaml procedure
when_to_use: proactive
schedule: "0 7 * * *"
permissions: [operator]
```

### Every service is running

```action {timeout=30s}
platform.status: {}
```

```expect
result.services.all(s, s.state == "running")
```

### Every service answers its health check

```http {for_each=env.services timeout=5s retries=2}
GET {{ item.health_url }}
Accept: application/json
```

```expect
status == 200
json.status == "UP"
```

### Review the dashboards

- [ ] Grafana overview shows no red panels
- [ ] Overnight alerts were each acknowledged or raised as incidents

### Troubleshooting

A service that fails its health check: run the Troubleshooting Guide's service connectivity
procedure for it before restarting anything.
"""


def test_design_example_parses_to_the_expected_model() -> None:
    rb = parse_text(DESIGN_EXAMPLE, path=Path("rb/system.md"))
    assert rb.id == "system-monitoring"
    assert rb.meta.title == "System Monitoring"
    assert rb.meta.purpose == "Proactive monitoring and health management"
    assert rb.meta.owner == "operations"
    assert rb.meta.review_interval == "30d"
    assert rb.meta.last_reviewed == "2026-11-20"
    assert rb.path == Path("rb/system.md")
    assert rb.source == DESIGN_EXAMPLE
    assert rb.content_hash == hashlib.sha256(DESIGN_EXAMPLE.encode()).hexdigest()
    assert rb.doc_sections == ()
    (p,) = rb.procedures
    assert (p.id, p.title, p.line, p.meta_line) == (
        "morning-health-check-routine",
        "Morning health check routine",
        12,
        14,
    )
    assert p.when_to_use == "proactive"
    assert p.schedule == "0 7 * * *"
    assert p.permissions == ("operator",)
    assert p.risk == "low"
    assert p.params == () and p.prerequisites == () and p.environments == ()
    assert [d.title for d in p.doc_sections] == ["Troubleshooting"]
    assert p.troubleshooting[0].body.startswith("A service that fails its health check")
    assert p.troubleshooting[0].line == 47
    running, health, review = p.steps
    assert running == Step(
        id="every-service-is-running",
        title="Every service is running",
        kind=StepKind.ACTION,
        line=20,
        block=Block("action", "platform.status: {}\n", {"timeout": "30s"}, 22),
        options=StepOptions(timeout=30.0),
        expectations=(Expectation('result.services.all(s, s.state == "running")', 27),),
        action_name="platform.status",
        action_args={},
    )
    assert health.kind is StepKind.HTTP
    assert health.id == "every-service-answers-its-health-check"
    assert health.options == StepOptions(timeout=5.0, retries=2, for_each="env.services")
    assert health.block is not None
    assert health.block.body == "GET {{ item.health_url }}\nAccept: application/json\n"
    assert health.expectations == (
        Expectation("status == 200", 38),
        Expectation('json.status == "UP"', 39),
    )
    assert review == Step(
        id="review-the-dashboards",
        title="Review the dashboards",
        kind=StepKind.MANUAL,
        line=42,
        checklist=(
            ChecklistItem("Grafana overview shows no red panels", 44),
            ChecklistItem("Overnight alerts were each acknowledged or raised as incidents", 45),
        ),
    )


def test_parse_file_hashes_the_bytes(tmp_path: Path) -> None:
    path = tmp_path / "rb.md"
    data = DESIGN_EXAMPLE.replace("\n", "\r\n").encode()
    path.write_bytes(data)
    rb = parse_file(path)
    assert rb.content_hash == hashlib.sha256(data).hexdigest()
    assert rb.path == path
    assert rb.procedures[0].steps[1].expectations[1].line == 39  # CRLF keeps line numbers


def test_front_matter_lists_and_extra_keys() -> None:
    text = (
        "---\nid: rb-1\ntitle: Runbook\nuse_cases: [a, b]\ntags: ops\nservices:\n  - account\n"
        "team_channel: '#ops'\n---\n"
    )
    meta = parse(text).meta
    assert meta.use_cases == ("a", "b")
    assert meta.tags == ("ops",)
    assert meta.services == ("account",)
    assert meta.extra == {"team_channel": "#ops"}
    assert meta.review_interval is None and meta.last_reviewed is None


def test_sections_without_procedure_block_are_documentation() -> None:
    text = FRONT + "## Overview\n\nSome text.\n\n### Sub\n\nMore.\n\n## Escalation\n\nCall.\n"
    rb = parse(text)
    assert rb.procedures == ()
    assert [(d.title, d.line) for d in rb.doc_sections] == [("Overview", 8), ("Escalation", 16)]
    assert rb.doc_sections[0].body == "Some text.\n\n### Sub\n\nMore."


def test_procedure_id_description_and_metadata() -> None:
    meta = (
        "id: restart\nwhen_to_use: reactive\npermissions: [operator, admin]\n"
        "prerequisites:\n  - doctor passes\nenvironments: [sandbox]\nrisk: medium\n"
    )
    text = FRONT + "## Restart a service\n\nWhy we restart.\n\n```yaml procedure\n" + meta
    text += "```\n\nMore intro.\n\n### Go\n\nDo it.\n"
    (p,) = parse(text).procedures
    assert p.id == "restart"
    assert p.when_to_use == "reactive"
    assert p.permissions == ("operator", "admin")
    assert p.prerequisites == ("doctor passes",)
    assert p.environments == ("sandbox",)
    assert p.risk == "medium"
    assert p.description == "Why we restart.\n\nMore intro."
    assert p.steps[0].instruction == "Do it."


def test_github_slugs_for_ids() -> None:
    p = proc("### Check `pods` & restart (v2)!\n\nx\n\n### Ünïcode step\n\ny\n")
    assert [s.id for s in p.steps] == ["check-pods--restart-v2", "ünïcode-step"]
    assert p.steps[0].title == "Check pods & restart (v2)!"


def test_instruction_keeps_prose_and_examples_but_not_the_blocks() -> None:
    body = """\
    ### Check pods

    Look at the pods.

    ```console
    $ kubectl get pods
    NAME   READY
    ```

    ```sh {name=pods}
    kubectl get pods
    ```

    ```expect
    # a comment line
    exit_code == 0

    stdout.contains("Running")
    ```

    Afterwards, tell the channel.
    """
    (s,) = proc(body).steps
    assert s.id == "pods"
    assert s.instruction == (
        "Look at the pods.\n\n```console\n$ kubectl get pods\nNAME   READY\n```\n\n"
        "Afterwards, tell the channel."
    )
    assert [e.expr for e in s.expectations] == ["exit_code == 0", 'stdout.contains("Running")']
    text = proc_doc(body)
    assert s.expectations[0].line == line_of(text, "exit_code == 0")
    assert s.expectations[1].line == line_of(text, "stdout.contains")


def test_bash_sets_the_interpreter_and_sh_does_not() -> None:
    p = proc("### A\n\n```bash\necho a\n```\n\n### B\n\n```sh\necho b\n```\n")
    assert p.steps[0].options.interpreter == "bash"
    assert p.steps[0].block is not None and p.steps[0].block.info == "bash"
    assert p.steps[1].options.interpreter is None
    assert p.steps[0].kind is p.steps[1].kind is StepKind.SH


def test_all_attributes_runme_style() -> None:
    body = (
        "### A\n\n```sql {name=lag timeout=1m retries=3 retry_delay=500ms "
        "when=\"params.x > 1\" for_each='[1, 2]' on_failure=continue idempotent=true "
        "risk=medium cwd=scripts env=A=1,B=two db=replica write=true}\nSELECT 1\n```\n"
    )
    (s,) = proc(body).steps
    assert s.id == "lag"
    assert s.kind is StepKind.SQL
    assert s.options == StepOptions(
        timeout=60.0,
        retries=3,
        retry_delay=0.5,
        when="params.x > 1",
        for_each="[1, 2]",
        on_failure=OnFailure("continue"),
        idempotent=True,
        risk="medium",
        cwd="scripts",
        env={"A": "1", "B": "two"},
        db="replica",
        write=True,
    )
    assert s.changes_state
    assert s.block is not None and s.block.attrs["when"] == "params.x > 1"


def test_json_attributes() -> None:
    body = (
        '### A\n\n```sh {"name": "check-pods", "timeout": 30, "retries": 2, "idempotent": true, '
        '"when": "params.n > 1", "env": {"A": "1", "N": 2}}\nls\n```\n'
    )
    (s,) = proc(body).steps
    assert s.id == "check-pods"
    assert s.options.timeout == 30.0
    assert s.options.retries == 2
    assert s.options.idempotent is True
    assert s.options.when == "params.n > 1"
    assert s.options.env == {"A": "1", "N": "2"}


def test_quoted_attribute_values_with_escapes_and_braces() -> None:
    body = (
        '### A\n\n```sh {when=\'item.name == "a b"\' name="x" '
        'env=\'{"K": "v w"}\' for_each="[\\"a}\\", \'b\']"}\nls\n```\n'
    )
    (s,) = proc(body).steps
    assert s.id == "x"
    assert s.options.when == 'item.name == "a b"'
    assert s.options.env == {"K": "v w"}
    assert s.options.for_each == "[\"a}\", 'b']"


def test_durations_in_every_unit() -> None:
    units = {"500ms": 0.5, "30s": 30, "5m": 300, "1h": 3600, "1d": 86400, "12": 12, "1.5": 1.5}
    for text, seconds in units.items():
        (s,) = proc(f"### A\n\n```sh {{timeout={text}}}\nls\n```\n").steps
        assert s.options.timeout == seconds


def test_on_failure_goto_and_run() -> None:
    body = (
        "### A\n\n```sh {on_failure=goto:c}\nls\n```\n\n"
        "### B\n\n```sh {on_failure=run:other#fix}\nls\n```\n\n### C\n\nManual.\n"
    )
    a, b, _ = proc(body).steps
    assert a.options.on_failure == OnFailure("goto", "c")
    assert b.options.on_failure == OnFailure("run", "other#fix")


def test_examples_never_run() -> None:
    body = """\
    ### Look

    Read this.

    ```console
    $ ls
    ```

    ```text
    output
    ```

    ```yaml
    a: 1
    ```

    ```json
    {"a": 1}
    ```

    ```shh
    typo is an example
    ```

    ```sh {ignore=true}
    rm -rf /
    ```

    ```sh {"ignore": true}
    also an example
    ```

    ```
    no info at all
    ```
    """
    (s,) = proc(body).steps
    assert s.kind is StepKind.MANUAL
    assert s.block is None
    assert "rm -rf /" in s.instruction


def test_nested_fences_are_documentation() -> None:
    body = "### A\n\n1. Run this:\n\n   ```sh\n   ls\n   ```\n"
    (s,) = proc(body).steps
    assert s.kind is StepKind.MANUAL
    assert "ls" in s.instruction


def test_checklist_mixed_list_and_done_marker() -> None:
    body = (
        "### A\n\nPrepare.\n\n- [ ] first\n- [x] second\n  continued here\n\n"
        "* plain item\n* [ ] third\n"
    )
    text = proc_doc(body)
    (s,) = proc(body).steps
    assert [(c.text, c.line) for c in s.checklist] == [
        ("first", line_of(text, "[ ] first")),
        ("second continued here", line_of(text, "[x] second")),
        ("third", line_of(text, "[ ] third")),
    ]
    assert "plain item" in s.instruction and "first" not in s.instruction


def test_action_approval_and_decide() -> None:
    body = """\
    ### Restart

    ```action
    platform.restart: {service: "{{ params.service }}", wait: true}
    ```

    ### Approve

    ```approval
    quorum: 2
    roles: [approver, manager]
    expires: 1h
    ```

    ### Branch

    ```decide
    - if: steps.restart.result.ok == true
      goto: done
    - {if: 'params.force', run: "troubleshooting#connectivity"}
    - else: {run: escalation}
    ```

    ### Done

    Tell the channel.
    """
    text = proc_doc(body)
    restart, approve, branch, done = proc(body).steps
    assert restart.action_name == "platform.restart"
    assert restart.action_args == {"service": "{{ params.service }}", "wait": True}
    assert approve.kind is StepKind.APPROVAL
    assert approve.approval == ApprovalSpec(quorum=2, roles=("approver", "manager"), expires=3600)
    assert not approve.changes_state
    assert branch.kind is StepKind.DECIDE
    assert branch.decide == (
        DecideRule("steps.restart.result.ok == true", "done", None, line_of(text, "- if:")),
        DecideRule("params.force", None, "troubleshooting#connectivity", line_of(text, "{if:")),
        DecideRule(None, None, "escalation", line_of(text, "- else")),
    )
    assert done.kind is StepKind.MANUAL


def test_empty_approval_block_uses_defaults_and_else_with_a_step() -> None:
    body = "### Ok\n\n```approval\n```\n\n### D\n\n```decide\n- else: ok\n```\n"
    ok, d = proc(body).steps
    assert ok.approval == ApprovalSpec()
    assert d.decide == (DecideRule(None, "ok", None, line_of(proc_doc(body), "- else")),)


def test_params_are_typed_with_defaults() -> None:
    meta = """\
params:
  service: {type: choice, choices: [account, payment], default: account}
  replicas: {type: integer, min: 1, max: 20, default: 3, description: how many}
  ratio: {type: number, default: 0.5}
  dry: {type: boolean, default: yes}
  wait: {type: duration, min: 1s, max: 1h, default: 5m}
  ticket: {type: string, pattern: "INC-[0-9]+", required: true}
  note: {}
  db_password: {type: secret, from: db-password}
"""
    p = proc("### A\n\nx\n", meta=meta)
    by = {x.name: x for x in p.params}
    text = proc_doc("### A\n\nx\n", meta=meta)
    assert by["service"] == Param(
        "service",
        "choice",
        line_of(text, "service:"),
        default="account",
        choices=("account", "payment"),
    )
    assert by["replicas"].default == 3 and by["replicas"].min == 1 and by["replicas"].max == 20
    assert by["replicas"].description == "how many"
    assert by["ratio"].default == 0.5
    assert by["dry"].default is True
    assert by["wait"].default == 300.0 and by["wait"].min == 1.0 and by["wait"].max == 3600.0
    assert by["ticket"].required and by["ticket"].pattern == "INC-[0-9]+"
    assert by["note"].type == "string"
    assert by["db_password"].secret_from == "db-password"
    assert [x.name for x in p.params] == list(by)


def test_procedures_and_doc_headings() -> None:
    text = FRONT + (
        "## One\n\n```yaml procedure\nid: one\n```\n\n### Step\n\nx\n\n### Common issues\n\n"
        "It breaks.\n\n### notes\n\nN.\n\n## Two\n\n```yaml procedure\n```\n\n### See Also\n\n"
        "Y.\n\n# Appendix\n\n```yaml\nnot: a procedure\n```\n"
    )
    rb = parse(text)
    one, two = rb.procedures
    assert one.id == "one" and [s.id for s in one.steps] == ["step"]
    assert [d.title for d in one.doc_sections] == ["Common issues", "notes"]
    assert [d.title for d in one.troubleshooting] == ["Common issues"]
    assert two.id == "two" and two.steps == () and two.doc_sections[0].title == "See Also"
    assert rb.procedure("two") is two and rb.procedure("three") is None


def test_setext_headings_and_bom() -> None:
    text = "\ufeff" + FRONT + "Proc\n----\n\n```yaml procedure\n```\n\n### A\n\nx\n"
    (p,) = parse(text).procedures
    assert p.id == "proc"
    assert p.steps[0].line == line_of(text, "### A")


def test_path_is_kept() -> None:
    assert parse(FRONT).path == PATH
