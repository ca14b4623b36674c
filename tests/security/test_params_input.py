"""Issue 16 §3 (params): text that is not UTF-8 and oversized values are refused by name, with
exit 2 from the CLI and 422 from the API, never a traceback or a 500."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from opsbook.config import DEFAULT_PARAM_MAX_BYTES, Settings
from opsbook.engine.approvals import compute_digest
from opsbook.errors import ParameterError, UsageError
from opsbook.runbooks.params import check_text
from tests.api.harness import Served, serve
from tests.engine.conftest import make_workspace

RUNBOOK = """\
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
  count: {type: integer, default: 1}
```

### Echo it

```sh
echo {{ params.target }}
```
"""


@pytest.fixture
def ws_root(tmp_path: Path) -> Path:
    root = make_workspace(tmp_path / "ws").root
    (root / "runbooks" / "params.md").write_text(RUNBOOK)
    return root


def ob(ws_root: Path, *args: str | bytes, **env: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", *args],
        capture_output=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws_root), **env},
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize(
    ("arg", "said"),
    [
        (b"target=\xff", "byte 0xff at character 0"),
        (b"target=ok\xc3", "byte 0xc3 at character 2"),
        (b"count=\xff1", "byte 0xff"),
        (b"\xff=1", "not valid UTF-8"),
    ],
)
def test_cli_refuses_bytes_that_are_not_utf8_by_name(ws_root: Path, arg: bytes, said: str) -> None:
    res = ob(ws_root, "run", "params#echo", "--param", arg)
    err = res.stderr.decode("utf-8", "replace")
    assert res.returncode == 2, err
    assert "Traceback" not in err and said in err, err
    if arg.startswith(b"target") or arg.startswith(b"count"):
        assert f"--param {arg.split(b'=')[0].decode()}" in err


def test_cli_param_size_limit_from_the_environment_and_the_workspace(ws_root: Path) -> None:
    res = ob(
        ws_root, "run", "params#echo", "--param", "target=" + "x" * 11, OPSBOOK_PARAM_MAX_BYTES="10"
    )
    err = res.stderr.decode()
    assert res.returncode == 2, err
    assert "--param target" in err and "11 bytes" in err and "limit of 10 bytes" in err
    assert "param_max_bytes" in err
    toml = ws_root / "opsbook.toml"
    toml.write_text(toml.read_text() + "\n[limits]\nparam_max_bytes = 4\n")
    res = ob(ws_root, "run", "params#echo", "--param", "target=abcde")
    assert res.returncode == 2 and b"limit of 4 bytes" in res.stderr
    res = ob(ws_root, "run", "params#echo", "--param", "target=abcd")
    assert res.returncode == 0, res.stderr  # exactly the limit is fine
    res = ob(ws_root, "run", "params#echo", "--param", "target=" + "é" * 3)
    assert res.returncode == 2 and b"6 bytes" in res.stderr  # bytes, not characters
    res = ob(ws_root, "run", "params#echo", "--param", "target=abcde", OPSBOOK_PARAM_MAX_BYTES="x")
    assert res.returncode == 2 and b"OPSBOOK_PARAM_MAX_BYTES" in res.stderr


def test_the_limit_setting_and_a_bad_workspace_value() -> None:
    assert Settings().param_max_bytes_for({}) == DEFAULT_PARAM_MAX_BYTES == 65536
    assert Settings().param_max_bytes_for({"limits": {"param_max_bytes": 9}}) == 9
    assert Settings(param_max_bytes=3).param_max_bytes_for({"limits": {"param_max_bytes": 9}}) == 3
    for bad in (0, -1, "64k", True, 1.5):
        with pytest.raises(UsageError, match=r"\[limits\] param_max_bytes"):
            Settings().param_max_bytes_for({"limits": {"param_max_bytes": bad}})


def test_check_text_names_the_parameter_and_never_repeats_the_value() -> None:
    with pytest.raises(ParameterError) as info:
        check_text("p", "ab\ud800cd")
    assert info.value.field == "p" and "lone surrogate U+D800 at character 2" in info.value.message
    with pytest.raises(ParameterError) as info:
        check_text("p", "z" * 20, max_bytes=19)
    assert "20 bytes" in info.value.message and "z" * 5 not in info.value.render()
    check_text("p", "z" * 20, max_bytes=None)
    check_text("p", "")


def test_a_digest_over_any_text_never_raises() -> None:
    digest = compute_digest(
        runbook_hash="h", procedure_id="p", params={"p": "\ud800x"}, environment="sandbox"
    )
    plain = compute_digest(
        runbook_hash="h", procedure_id="p", params={"p": "x"}, environment="sandbox"
    )
    assert len(digest) == 64 and digest != plain


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serve(Path(tmp_path_factory.mktemp("params")) / "ws") as s:
        s.account("olivia", ["operator"])
        yield s


@pytest.mark.parametrize(
    ("body", "field", "said"),
    [
        (rb'{"ref": "checks#quick", "params": {"service": "\ud800x"}}', "params.service", "U+D800"),
        (rb'{"ref": "checks#quick", "params": {"service": "a\udfff"}}', "params.service", "U+DFFF"),
        (rb'{"ref": "checks#quick", "params": {"\ud800": "x"}}', "params.", "UTF-8"),
    ],
)
def test_api_refuses_lone_surrogates_with_422(
    served: Served, body: bytes, field: str, said: str
) -> None:
    api = served.api(served.token("olivia"))
    r = api.post("/api/v1/executions", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["field"].startswith(field) and said in problem["detail"], problem


def test_api_refuses_an_oversized_param_naming_the_limit(served: Served) -> None:
    api = served.api(served.token("olivia"))
    big = "a" * (DEFAULT_PARAM_MAX_BYTES + 1)
    r = api.post("/api/v1/executions", json={"ref": "checks#quick", "params": {"service": big}})
    assert r.status_code == 422, r.text[:500]
    problem = r.json()
    assert problem["field"] == "params.service"
    assert f"limit of {DEFAULT_PARAM_MAX_BYTES} bytes" in problem["detail"]
    assert "param_max_bytes" in problem["detail"] and big not in r.text
