"""`opsbook --version` and shell completion (issue 18 §6), through the real console script."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import opsbook

OPSBOOK = shutil.which("opsbook", path=str(Path(__file__).parents[2] / ".venv" / "bin"))


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert OPSBOOK, "the console script is installed in .venv"
    return subprocess.run(
        [OPSBOOK, *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **(env or {})},
    )


def test_version() -> None:
    out = _run("--version")
    assert out.returncode == 0 and out.stdout == f"opsbook {opsbook.__version__}\n"


def test_completion_script_and_completions() -> None:
    script = _run("--show-completion", "bash")
    assert script.returncode == 0 and "_OPSBOOK_COMPLETE=complete_bash" in script.stdout
    assert "--install-completion" in _run("--help").stdout

    def complete(words: str) -> list[str]:
        env = {
            "_OPSBOOK_COMPLETE": "complete_bash",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split()) - 1),
        }
        out = _run(env=env)
        assert out.returncode == 0, out.stderr
        return out.stdout.split()

    assert complete("opsbook inc") == ["incidents"]
    assert "declare" in complete("opsbook incidents dec")


def test_tokens_create_help_names_every_scope() -> None:
    from opsbook.users.roles import SCOPES

    out = _run("tokens", "create", "--help")
    assert out.returncode == 0, out.stderr
    text = " ".join(out.stdout.split())
    for scope in SCOPES:
        assert scope in text, scope
    assert "alerts: send alerts (Alertmanager's webhook)" in text
