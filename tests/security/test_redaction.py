"""Issue 16 §2: no configured secret reaches any stored or printed surface, in any form.

A real server and the real CLI over one workspace with ``OPSBOOK_SECRET_CANARY`` set (and a
second secret in the secrets directory). A step prints the canary raw, in base64 (whole and
inside longer base64 streams), reversed, as ``od -tx1`` and ``xxd -p`` hex, with spaces
inserted, URL-encoded and on stderr; parameters try to carry it in. Then everything is
scanned: every file under the state directory (the SQLite database, its WAL, logs), the CLI's
stdout and stderr, the API's JSON, the console's HTML and the audit export.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from tests.api.harness import Served, serve
from tests.web.console import signin

CANARY = "Kanarie/7f3a+9c1e-Zq"  # 20 bytes: od wraps it; '/' and '+' make URL forms differ
FILED = "Vogel-file-5e8d21b7"  # a secret that lives in .opsbook/secrets/, never resolved

LEAKY = f"""\
---
id: leaky
title: Leaky
purpose: A step that prints secrets in every form it can think of
owner: operations
review_interval: 90d
last_reviewed: 2026-11-20
tags: [test]
---

# Leaky

## Show

```yaml procedure
id: show
permissions: [operator]
risk: low
params:
  note: {{type: string, default: "nothing"}}
```

### Print

```sh {{timeout=30s}}
S='{{{{ secret("canary") }}}}'
echo "note={{{{ params.note }}}}"
echo "raw $S"
printf %s "$S" | base64
echo "$S" | base64
printf %s "x$S" | base64
printf %s "xy$S" | base64
printf %s "$S" | base64 | tr '+/' '-_'
printf %s "$S" | rev; echo
printf %s "$S" | od -tx1
printf %s "$S" | od -An -tx1
printf %s "$S" | xxd -p
printf %s "$S" | sed 's/./& /g'; echo
{sys.executable} -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$S"
echo "to stderr $S" >&2
echo "the filed one: $(cat SECRETS_DIR/vogel)"
```
"""


def needles(value: str) -> dict[str, str]:
    """The forms the issue names, each as it would appear in text."""
    data = value.encode()
    forms = {
        "raw": value,
        "base64": base64.b64encode(data).decode().rstrip("="),
        "base64url": base64.urlsafe_b64encode(data).decode().rstrip("="),
        "hex": data.hex(),
        "HEX": data.hex().upper(),
        "url": quote(value, safe=""),
        "reversed": value[::-1],
    }
    for offset in (1, 2):  # inside a longer base64 stream: the characters of the value alone
        encoded = base64.b64encode(b"\0" * offset + data).decode()
        forms[f"base64+{offset}"] = encoded[-(-8 * offset // 6) : (8 * offset + 8 * len(data)) // 6]
    return forms


_OD_OFFSET = re.compile(r"(?:\\n|\n)[0-7]{7,}")
_SPACE = re.compile(r"\s+|\\[nrt]")


def leaks(text: str, values: tuple[str, ...] = (CANARY, FILED)) -> list[str]:
    """Every form of every value found in ``text``, also with whitespace (and escaped
    whitespace, and od's offset column) taken out, so spaced and wrapped forms count."""
    squeezed = _SPACE.sub("", _OD_OFFSET.sub("", text))
    found = []
    for value in values:
        for name, needle in needles(value).items():
            if needle in text or needle in squeezed:
                found.append(f"{name} of {value[:4]}…")
    return found


def scan_tree(root: Path) -> dict[str, list[str]]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.parent.name != "secrets":  # where the secret lives
            found = leaks(path.read_bytes().decode("utf-8", "replace"))
            if found:
                out[str(path.relative_to(root))] = found
    return out


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    monkeypatch.setenv("OPSBOOK_SECRET_CANARY", CANARY)
    with serve(tmp_path / "ws") as s:
        secrets = s.ws.state_dir / "secrets"
        (s.ws.runbooks_dir / "leaky.md").write_text(LEAKY.replace("SECRETS_DIR", str(secrets)))
        secrets.mkdir(mode=0o700)
        (secrets / "vogel").write_text(FILED + "\n")
        s.ctx.resolver.refresh()  # the server learns secret files when a run starts, too
        s.account("olivia", ["operator", "auditor"], password="correct horse battery")
        yield s


def cli(
    s: Served, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    full = {
        **os.environ,
        "OPSBOOK_WORKSPACE": str(s.ws.root),
        "OPSBOOK_USER": "olivia",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )


def test_the_canary_is_on_no_surface_in_any_form(site: Served, tmp_path: Path) -> None:
    api = site.api(site.token("olivia"))
    printed: dict[str, str] = {}

    # 1. Parameters cannot carry a configured secret in: CLI exit 2, API 422, value not echoed.
    for value in (CANARY, f"https://svc:{CANARY}@db", FILED):
        res = cli(site, "run", "leaky#show", "--param", f"note={value}")
        assert res.returncode == 2, res.stdout + res.stderr
        assert "--param note" in res.stderr and "type: secret" in res.stderr, res.stderr
        printed[f"refused CLI {value[:8]}"] = res.stdout + res.stderr
        r = api.post("/api/v1/executions", json={"ref": "leaky#show", "params": {"note": value}})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "params.note" and "type: secret" in r.text
        printed[f"refused API {value[:8]}"] = r.text

    # 2. A run from the CLI (human and JSON output) and one from the API.
    human = cli(site, "run", "leaky#show", "--verbose")
    assert human.returncode == 0, human.stdout + human.stderr
    printed["CLI run"] = human.stdout + human.stderr
    as_json = cli(site, "run", "leaky#show", "--json", "--param", "note=hello")
    assert as_json.returncode == 0, as_json.stderr
    printed["CLI run --json"] = as_json.stdout + as_json.stderr
    r = api.post("/api/v1/executions", json={"ref": "leaky#show"})
    assert r.status_code == 201, r.text
    done = site.wait(api, r.json()["id"], ["succeeded", "failed"])
    assert done["state"] == "succeeded", done
    stdout = done["steps"][0]["result"]["fields"]["stdout"]
    assert "raw ***" in stdout and "the filed one: ***" in stdout  # the step did print them
    assert "***" in done["steps"][0]["result"]["fields"]["stderr"]

    # 3. Every way to read it back.
    ids = [row["id"] for row in site.db.query("SELECT id FROM executions")]
    assert len(ids) == 3  # the refused ones never started
    for eid in ids:
        printed[f"API {eid}"] = api.get(f"/api/v1/executions/{eid}").text
        printed[f"API events {eid}"] = api.get(f"/api/v1/executions/{eid}/events").text
        printed[f"CLI show {eid}"] = cli(site, "executions", "show", eid, "--json").stdout
    printed["API list"] = api.get("/api/v1/executions").text
    browser, _ = signin(site.url, "olivia", "correct horse battery")
    try:
        for eid in ids:
            page = browser.get(f"/executions/{eid}")
            assert page.status_code == 200
            printed[f"console {eid}"] = page.text
        printed["console audit"] = browser.get("/audit").text
    finally:
        browser.close()
    export = tmp_path / "evidence"
    res = cli(
        site, "audit", "export", "--out", str(export), "--allow-unwitnessed-tail", "3600"
    )  # the server signs its records every 10 s: the newest are not yet covered
    assert res.returncode == 0, res.stderr
    printed["audit export output"] = res.stdout + res.stderr

    found = {where: f for where, text in printed.items() if (f := leaks(text))}
    found |= scan_tree(export)
    assert (site.ws.state_dir / "opsbook.db-wal").exists()  # the WAL is scanned as well
    found |= scan_tree(site.ws.state_dir)
    assert found == {}


def test_a_secret_split_across_two_reads_of_a_pipe_is_redacted(site: Served) -> None:
    (site.ws.runbooks_dir / "split.md").write_text(
        LEAKY.replace("id: leaky", "id: split").replace(
            LEAKY[LEAKY.index("S='") : LEAKY.index("```\n", LEAKY.index("S='"))],
            f"printf %s '{CANARY[:9]}'; sleep 0.3; printf '%s\\n' '{CANARY[9:]}'\n",
        )
    )
    res = cli(site, "run", "split#show", "--json")
    assert res.returncode == 0, res.stderr
    assert '"stdout": "***\\n"' in res.stdout
    assert leaks(res.stdout) == []


def test_a_secret_file_added_while_the_server_runs_counts_from_the_next_request(
    site: Served,
) -> None:
    late = "Spaet-added-3c9e0d"
    secrets = site.ws.state_dir / "secrets"
    (secrets / "late").write_text(late)
    (site.ws.runbooks_dir / "late.md").write_text(
        LEAKY.replace("id: leaky", "id: late")
        .replace("SECRETS_DIR", str(secrets))
        .replace("vogel", "late")
    )
    api = site.api(site.token("olivia"))
    r = api.post("/api/v1/executions", json={"ref": "late#show", "params": {"note": late}})
    assert r.status_code == 422, r.text
    assert f"file {secrets / 'late'}" in r.json()["detail"]
    r = api.post("/api/v1/executions", json={"ref": "late#show"})
    assert r.status_code == 201, r.text
    done = site.wait(api, r.json()["id"], ["succeeded", "failed"])
    assert "the filed one: ***" in done["steps"][0]["result"]["fields"]["stdout"]
    assert leaks(str(done), (late, CANARY)) == []


def test_approval_comments_and_attestation_notes_are_redacted(site: Served) -> None:
    starter = site.api(site.token("olivia"))
    site.account("andy", ["engineer", "approver"])
    approver = site.api(site.token("andy"))
    eid = starter.post("/api/v1/executions", json={"ref": "checks#change", "confirm": True}).json()[
        "id"
    ]
    site.wait(starter, eid, ["AwaitingApproval"])
    r = approver.post(
        f"/api/v1/executions/{eid}/approval",
        json={"decision": "approve", "comment": f"pasted by mistake: {CANARY}"},
    )
    assert r.status_code == 200, r.text
    site.wait(starter, eid, ["succeeded", "failed"])
    mid = starter.post("/api/v1/executions", json={"ref": "checks#manual"}).json()["id"]
    site.wait(starter, mid, ["AwaitingInput"])
    r = starter.post(f"/api/v1/executions/{mid}/attest", json={"note": f"pw {CANARY}"})
    assert r.status_code == 200, r.text
    events = starter.get(f"/api/v1/executions/{eid}/events").text
    events += starter.get(f"/api/v1/executions/{mid}/events").text
    assert "pasted by mistake: ***" in events and "pw ***" in events
    assert leaks(events) == []
