"""Issue 16 §1: an evidence pack must not be shortened behind its own manifest.

Each forgery rewrites ``events.jsonl`` and regenerates ``manifest.sha256`` (so ``sha256sum -c``
passes, as the issue found); the bundled ``verify_chain.py`` now fails, because the signed export
checkpoint fixes the pack's first id, record count and last record. A line that is not JSON is
reported as ``events.jsonl line N``, without a traceback. Packs are written by the real CLI.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from opsbook import audit
from opsbook.config import Settings
from opsbook.db import open_database
from opsbook.workspace.init import init_workspace

OPSBOOK = [sys.executable, "-m", "opsbook.cli.main"]
RECORDS = 400


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pack") / "ws"
    init_workspace(target=root)
    db = open_database(Settings().database_url_for(root / ".opsbook"))
    cfg = audit.config_for(workspace_root=root, settings=Settings())
    for i in range(1, RECORDS + 1):
        day = "2026-11-01" if i <= 200 else "2026-11-02"
        audit.record(
            db=db,
            actor="alice",
            action="access.denied" if i % 3 == 0 else "execution.step.succeeded",
            subject=f"step:{i}",
            payload={"i": i},
            ts=f"{day}T10:00:{i % 60:02d}.{i:06d}Z",
        )
    audit.sign_own(db=db, cfg=cfg, signer="cli")
    db.close()
    return root


def _cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*OPSBOOK, *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OPSBOOK_WORKSPACE": str(root)},
        check=False,
        timeout=120,
    )


def _export(root: Path, out: Path, *args: str) -> Path:
    res = _cli(root, "audit", "export", "--out", str(out), *args)
    assert res.returncode == 0, res.stderr
    return out


def _check(pack: Path, *args: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(
        [sys.executable, "verify_chain.py", "events.jsonl", *args],
        cwd=pack,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert "Traceback" not in res.stderr, res.stderr
    return res


def _sha256sum_ok(pack: Path) -> bool:
    res = subprocess.run(["sha256sum", "-c", "manifest.sha256"], cwd=pack, capture_output=True)
    return res.returncode == 0


def _forge(pack: Path, lines: list[str]) -> None:
    """Rewrite events.jsonl and regenerate the manifest, as the issue's attacker did."""
    (pack / "events.jsonl").write_text("".join(lines), encoding="utf-8")
    names = [line.split()[1] for line in (pack / "manifest.sha256").read_text().splitlines()]
    manifest = "".join(
        f"{hashlib.sha256((pack / n).read_bytes()).hexdigest()}  {n}\n" for n in names
    )
    (pack / "manifest.sha256").write_text(manifest)
    assert _sha256sum_ok(pack)


def test_an_untouched_pack_verifies_with_either_ed25519(workspace: Path, tmp_path: Path) -> None:
    pack = _export(workspace, tmp_path / "pack")
    assert _sha256sum_ok(pack)
    for args in ((), ("--pure",)):
        res = _check(pack, *args)
        assert res.returncode == 0, res.stderr
        assert f"ok: {RECORDS} records verify (ids 1 to {RECORDS})" in res.stdout
    assert "pure-Python RFC 8032" in _check(pack, "--pure").stdout
    summary = (pack / "SUMMARY.md").read_text()
    assert (
        "full period: the pack starts at record 1" in summary and "Signed by audit key" in summary
    )


def test_a_period_pack_verifies_from_its_declared_first_record(
    workspace: Path, tmp_path: Path
) -> None:
    pack = _export(workspace, tmp_path / "period", "--since", "2026-11-02")
    res = _check(pack)
    assert res.returncode == 0, res.stderr
    assert "ok: 200 records verify (ids 201 to 400)" in res.stdout


@pytest.mark.parametrize(
    ("forgery", "message"),
    [
        ("truncated", "the pack was truncated or padded"),
        ("first-300-dropped", "records were dropped from the start"),
        ("emptied", "the pack was truncated or padded"),
    ],
)
def test_a_shortened_pack_with_a_regenerated_manifest_fails(
    workspace: Path, tmp_path: Path, forgery: str, message: str
) -> None:
    pack = _export(workspace, tmp_path / forgery)
    lines = (pack / "events.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    forged = {"truncated": lines[:-25], "first-300-dropped": lines[300:], "emptied": []}[forgery]
    _forge(pack, forged)
    res = _check(pack)
    assert res.returncode == 1 and message in res.stderr, res.stderr
    assert _check(pack, "--pure").returncode == 1


def test_a_period_pack_cut_at_both_ends_fails(workspace: Path, tmp_path: Path) -> None:
    pack = _export(workspace, tmp_path / "cut", "--since", "2026-11-02")
    lines = (pack / "events.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    _forge(pack, lines[10:-10])
    res = _check(pack)
    assert res.returncode == 1 and "dropped from the start" in res.stderr


def test_a_bad_line_is_reported_with_its_number_not_a_traceback(
    workspace: Path, tmp_path: Path
) -> None:
    pack = _export(workspace, tmp_path / "badline")
    lines = (pack / "events.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)
    _forge(pack, [*lines[:6], "this is not json\n", *lines[6:]])
    res = _check(pack)
    assert res.returncode == 1
    assert "events.jsonl line 7: not JSON" in res.stderr
    _forge(pack, [*lines[:2], '{"id": 3}\n', *lines[3:]])
    res = _check(pack)
    assert res.returncode == 1 and "events.jsonl line 3: field 'ts' is missing" in res.stderr


def test_a_pack_signed_by_another_key_or_unsigned_fails(workspace: Path, tmp_path: Path) -> None:
    pack = _export(workspace, tmp_path / "key")
    (pack / "audit-key.pub").write_text("00" * 31 + "01\n")
    res = _check(pack)
    assert res.returncode == 1 and "checkpoints.jsonl line 1" in res.stderr
    pack = _export(workspace, tmp_path / "nocp")
    (pack / "checkpoints.jsonl").write_text("")
    res = _check(pack)
    assert res.returncode == 1 and "no signed export checkpoint" in res.stderr
