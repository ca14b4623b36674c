"""The entry point registers only the command being run; every command must be mapped."""

from __future__ import annotations

import subprocess
import sys

from opsbook.cli.main import COMMAND_MODULES, _command_of


def test_the_command_is_found_after_global_options() -> None:
    assert _command_of(["--workspace", "ws", "run", "x#y"]) == "run"
    assert _command_of(["-w", "ws", "audit", "verify"]) == "audit"
    assert _command_of(["--help"]) is None
    assert _command_of([]) is None


def test_every_top_level_command_is_mapped_to_its_module() -> None:
    # A fresh interpreter: register everything, then compare with the map.
    code = (
        "from opsbook.cli import main\n"
        "main._register(['--help'])\n"
        "import typer.main\n"
        "cmd = typer.main.get_command(main.app)\n"
        "print(' '.join(sorted(cmd.commands)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    assert sorted(out) == sorted(COMMAND_MODULES)
