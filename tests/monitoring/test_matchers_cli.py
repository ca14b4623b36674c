"""``opsbook alerts silence --match`` takes Alertmanager's matcher lists (issue 18): one
option may hold several matchers, and what does not parse is refused naming ``--match``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.engine.conftest import make_workspace


def ob(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "opsbook.cli.main", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(root)},
        stdin=subprocess.DEVNULL,
        timeout=60,
    )


def test_one_match_option_with_several_matchers(tmp_path: Path) -> None:
    root = make_workspace(tmp_path / "ws").root
    silence = ("alerts", "silence", "--for", "2h", "--comment", "CHG-1", "--json")
    done = ob(root, *silence, "--match", '{service="payment", pod=~"pay-.*"}')
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["matchers"] == ["service=payment", "pod=~pay-.*"]
    for bad in ('a="x', 'service="pay"ment', "a=b,,c=d", '{invalid-name="x"}'):
        refused = ob(root, *silence, "--match", bad)
        assert refused.returncode == 2, bad
        assert "--match" in refused.stderr and "Traceback" not in refused.stderr
