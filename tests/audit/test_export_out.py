"""`opsbook audit export --out` (issue 16): an existing file, an unwritable path or a non-empty
directory is refused with a clear message and exit 2, nothing written; --force overwrites a
pack. The real CLI in a real workspace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from opsbook.workspace.init import init_workspace

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]


@pytest.fixture
def root(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    init_workspace(target=ws)
    res = _export(ws, tmp_path / "first")  # a first pack: an empty log's
    assert res.returncode == 0, res.stderr
    return ws


def _export(ws: Path, out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPSBOOK, "audit", "export", "--out", str(out), *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(ws)},
        check=False,
        timeout=120,
    )


def _refused(res: subprocess.CompletedProcess[str], words: str) -> None:
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr and words in res.stderr, res.stderr


def test_an_existing_file_is_refused_and_left_alone(root: Path, tmp_path: Path) -> None:
    target = tmp_path / "report.txt"
    target.write_text("keep me")
    for args in ((), ("--force",)):
        _refused(_export(root, target, *args), "is an existing file, not a directory")
    assert target.read_text() == "keep me"
    _refused(_export(root, target / "pack"), "is a file, not a directory")


def test_an_unwritable_path_is_refused(root: Path) -> None:
    _refused(_export(root, Path("/proc/opsbook-no/pack")), "--out /proc/opsbook-no/pack")


def test_a_directory_that_holds_a_pack_is_not_overwritten_without_force(
    root: Path, tmp_path: Path
) -> None:
    pack = tmp_path / "first"
    (pack / "events.jsonl").write_text("auditor's copy\n")
    _refused(_export(root, pack), "is a directory that is not empty")
    assert (pack / "events.jsonl").read_text() == "auditor's copy\n"
    res = _export(root, pack, "--force")
    assert res.returncode == 0, res.stderr
    assert (pack / "events.jsonl").read_bytes() != b"auditor's copy\n"


def test_an_empty_existing_directory_is_fine(root: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    res = _export(root, empty)
    assert res.returncode == 0, res.stderr
    assert (empty / "verify_chain.py").exists() and (empty / "audit-key.pub").exists()
