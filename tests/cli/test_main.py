"""The entry point loads only the command being run; `--help` lists every command without
importing them, so the static table must match what the modules register."""

from __future__ import annotations

import subprocess
import sys

import typer
import typer.main

from opsbook.cli.main import COMMANDS, load_command


def test_every_listed_command_loads_by_its_name() -> None:
    for name in COMMANDS:
        cmd = load_command(name)
        assert cmd is not None, name
        assert cmd.name == name


def test_the_modules_register_exactly_the_listed_commands() -> None:
    import importlib

    sub = typer.Typer()

    @sub.callback()
    def _group() -> None:
        pass

    for module in {m for m, _ in COMMANDS.values()} - {"sandbox"}:
        importlib.import_module(f"opsbook.cli.{module}").register(sub)
    registered = set(getattr(typer.main.get_command(sub), "commands", {})) | {"sandbox"}
    assert registered == set(COMMANDS)


def test_help_imports_no_command_module() -> None:
    code = (
        "import sys\n"
        "from opsbook.cli.main import run\n"
        "try:\n"
        "    run(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "loaded = [m for m in sys.modules if m.startswith('opsbook.cli.') and m.endswith('_cmd')]\n"
        "print('LOADED', loaded)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "LOADED []" in out
    for name in COMMANDS:
        assert f"  {name}" in out
