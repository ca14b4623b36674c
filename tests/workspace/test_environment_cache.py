"""Environments are parsed once per file version: a changed file is read again, and every
caller gets data of its own."""

from __future__ import annotations

import os
from pathlib import Path

from opsbook.workspace import Workspace, load_environment
from opsbook.workspace.init import init_workspace


def test_a_changed_environment_file_is_read_again(tmp_path: Path) -> None:
    init_workspace(target=tmp_path / "ws")
    ws = Workspace.load(tmp_path / "ws")
    first = load_environment(ws, "sandbox")
    assert isinstance(first.data, dict)
    first.data["platform"] = "changed by a caller"
    again = load_environment(ws, "sandbox")
    assert again.data["platform"] != "changed by a caller"  # a copy each time
    path = ws.environments_dir / "sandbox.yaml"
    path.write_text(path.read_text() + "\nextra_setting: 42\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert load_environment(ws, "sandbox").data["extra_setting"] == 42
