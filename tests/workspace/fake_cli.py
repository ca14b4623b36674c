"""``python -m tests.workspace.fake_cli ARGS``: the real ``opsbook`` CLI with the fake
``platform.*`` actions of :mod:`tests.workspace.fake_platform` registered (they replace any
installed ones of the same name)."""

from __future__ import annotations

from opsbook.actions import _registry
from opsbook.cli.main import run
from tests.workspace.fake_platform import ACTIONS


def main() -> None:
    installed = _registry.load_registry()
    specs = {name: installed.get(name) for name in installed.names()}
    _registry._cached = _registry.ActionRegistry({**specs, **ACTIONS})
    run()


if __name__ == "__main__":
    main()
