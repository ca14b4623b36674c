"""`opsbook known-errors` as a real process: JSON output, exit codes, errors naming the field."""

from __future__ import annotations

import json

from tests.cli.conftest import Run


def test_add_list_show_retire(ob: Run) -> None:
    r = ob(
        "known-errors",
        "add",
        "--title",
        "Payment crash loop",
        "--cause",
        "crash",
        "--service",
        "payment",
        "--symptoms",
        '[{"log": "worker exited"}, {"evidence": "platform"}]',
        "--json",
        "--as",
        "alice",
    )
    assert r.returncode == 0, r.stderr
    made = json.loads(r.stdout)
    assert made["id"].startswith("ke-") and made["params"] == {"service": "payment"}

    r = ob("known-errors", "list", "--json")
    assert r.returncode == 0, r.stderr
    assert [k["id"] for k in json.loads(r.stdout)["items"]] == [made["id"]]

    r = ob("known-errors", "show", made["id"])
    assert r.returncode == 0, r.stderr
    assert "Payment crash loop" in r.stdout and '{"log": "worker exited"}' in r.stdout

    r = ob("known-errors", "retire", made["id"], "--reason", "fixed for good", "--json")
    assert r.returncode == 0 and json.loads(r.stdout)["retired_at"]
    assert json.loads(ob("known-errors", "list", "--json").stdout)["items"] == []


def test_bad_input_exits_2_naming_the_field(ob: Run) -> None:
    r = ob("known-errors", "add", "--title", "t", "--cause", "crash", "--symptoms", '[{"x": 1}]')
    assert r.returncode == 2
    assert "symptoms[0]" in r.stderr and "Traceback" not in r.stderr
    r = ob("known-errors", "add", "--title", "t", "--cause", "crash", "--symptoms", "[{")
    assert r.returncode == 2 and "symptoms" in r.stderr and "Traceback" not in r.stderr
    r = ob(
        "known-errors", "add", "--title", "t", "--cause", "gremlins", "--symptoms", '[{"log": "x"}]'
    )
    assert r.returncode == 2 and "cause" in r.stderr
    r = ob("known-errors", "show", "ke-nothere")
    assert r.returncode != 0 and "no known error" in r.stderr and "Traceback" not in r.stderr
    r = ob("known-errors", "confirm", "dg-000000000000", "ex-none")
    assert r.returncode != 0 and "no diagnosis" in r.stderr and "Traceback" not in r.stderr
