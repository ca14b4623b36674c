"""`opsbook incidents …` and `opsbook notify test` as real processes, with a real SMTP server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.incidents.harness import Env, incident_env

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    with incident_env(tmp_path_factory.mktemp("incidents-cli")) as e:
        yield e


def ob(env: Env, *args: str, user: str = "alice") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPSBOOK, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(env.ws.root), "OPSBOOK_USER": user},
    )


def js(env: Env, *args: str, user: str = "alice") -> object:
    out = ob(env, *args, "--json", user=user)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_the_whole_lifecycle_from_the_cli(env: Env) -> None:
    inc = js(
        env,
        "incidents",
        "declare",
        "Payments failing",
        "-s",
        "payment",
        "--impact",
        "significant",
        "--urgency",
        "high",
        "--impact-start",
        "2026-11-26T09:00:00Z",
    )
    assert isinstance(inc, dict)
    ref = inc["ref"]
    assert inc["severity"] == "SEV1"  # payments unavailable
    assert {p["outcome"] for p in inc["pages"]} == {"sent"}
    assert len(env.smtp.to("l1@bank.test")) == 1 and len(env.smtp.to("l3@bank.test")) == 1
    assert ob(env, "incidents", "ack", ref, user="bob").returncode == 0
    assert js(env, "incidents", "assign", ref, "commander", "carol")["roles"] == {  # type: ignore[index]
        "commander": "carol"
    }
    out = ob(env, "incidents", "update", ref, "--severity", "SEV3", "--reason", "contained")
    assert out.returncode == 0 and "waits for a second person" in out.stdout
    assert ob(env, "incidents", "update", ref, "--approve-downgrade").returncode == 2
    upd = js(
        env,
        "incidents",
        "update",
        ref,
        "--approve-downgrade",
        "--status",
        "monitoring",
        "--note",
        "fix deployed",
        user="bob",
    )
    assert upd["severity"] == "SEV3" and upd["status"] == "monitoring"  # type: ignore[index]
    assert ob(env, "incidents", "resolve", ref, "--note", "stable").returncode == 0
    review = ob(
        env,
        "incidents",
        "review",
        ref,
        "--action",
        "Alert on 5xx",
        "--owner",
        "erin",
        "--due",
        "2030-01-31",
    )
    assert review.returncode == 0
    assert "# Post-incident review: INC-1 Payments failing" in review.stdout
    assert "| Alert on 5xx | erin | 2030-01-31 | open |" in review.stdout
    assert ob(env, "incidents", "close", ref).returncode == 0
    show = js(env, "incidents", "show", ref)
    kinds = [e["kind"] for e in show["timeline"]]  # type: ignore[index]
    for kind in (
        "declared",
        "escalation.paged",
        "notification.sent",
        "acknowledged",
        "role.assigned",
        "severity.downgrade_requested",
        "severity.downgrade_approved",
        "note",
        "status.changed",
        "action.added",
    ):
        assert kind in kinds, kind
    listed = js(env, "incidents", "list", "--status", "closed")
    assert [i["ref"] for i in listed] == [ref]  # type: ignore[union-attr,index]
    report = js(env, "incidents", "report", "--since", "7d")
    assert report["by_severity"]["SEV3"]["incidents"] == 1  # type: ignore[index]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["incidents", "declare", "x", "--severity", "SEV9"], "unknown severity"),
        (["incidents", "declare", "x", "-s", "mainframe", "--severity", "1"], "unknown service"),
        (["incidents", "ack", "INC-999"], "no incident"),
        (["incidents", "update", "INC-1"], "nothing to update"),
        (["notify", "test", "nobody"], "unknown contact"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(env: Env, args: list[str], message: str) -> None:
    out = ob(env, *args)
    assert out.returncode == 2, out
    assert message in out.stderr and "Traceback" not in out.stderr


def test_acknowledging_a_closed_incident_is_refused(env: Env) -> None:
    ref = js(env, "incidents", "declare", "Drill", "--severity", "SEV4", "--drill")["ref"]  # type: ignore[index]
    ob(env, "incidents", "resolve", ref)
    ob(env, "incidents", "close", ref)
    out = ob(env, "incidents", "ack", ref)
    assert out.returncode == 2 and "closed" in out.stderr


def test_notify_test_sends_and_records(env: Env) -> None:
    out = js(env, "notify", "test", "l2")
    assert out["outcome"] == "sent"  # type: ignore[index]
    assert env.smtp.to("l2@bank.test")[-1].subject == "[TEST] opsbook test page"
    records = js(env, "notify", "list")
    assert records[0]["kind"] == "test"  # type: ignore[index]


def test_run_a_procedure_from_the_incident(env: Env, tmp_path: Path) -> None:
    ref = js(
        env,
        "incidents",
        "declare",
        "Slow payments",
        "--severity",
        "SEV3",
        "-s",
        "payment",
        "--type",
        "performance",
    )["ref"]  # type: ignore[index]
    suggestions = js(env, "incidents", "suggest", ref)
    assert any("performance" in s["ref"] for s in suggestions)  # type: ignore[union-attr,index]
    out = ob(
        env,
        "incidents",
        "run",
        ref,
        "incident-response#incident-classification",
        "-p",
        "impact=minor",
        "-p",
        "urgency=low",
        "--json",
    )
    assert out.returncode in (0, 1, 3), out.stderr
    run = json.loads(out.stdout)
    show = js(env, "incidents", "show", ref)
    steps = [e for e in show["timeline"] if e["source"] == "execution"]  # type: ignore[index]
    assert steps and all(e["payload"]["execution"] == run["execution"] for e in steps)
    assert any(e["kind"] == "execution.linked" for e in show["timeline"])  # type: ignore[index]
