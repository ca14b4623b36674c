"""The catalogue of a runbooks directory and ``RUNBOOK#PROCEDURE`` references."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsbook.errors import NotFoundError, RunbookFormatError, WorkspaceError
from opsbook.runbooks.catalogue import Catalogue, load_catalogue

ONE = """\
---
id: system-monitoring
title: System Monitoring
---

## Morning check

```yaml procedure
```

### Look

Look around.
"""

TWO = """\
---
id: troubleshooting
title: Troubleshooting
---

## Service connectivity

```yaml procedure
id: connectivity
```

### Ping

Ping it.

## Slow queries

```yaml procedure
```

### Explain

Explain it.
"""


@pytest.fixture
def runbooks(tmp_path: Path) -> Path:
    d = tmp_path / "runbooks"
    d.mkdir()
    (d / "04_troubleshooting.md").write_text(TWO)
    (d / "01_system_monitoring.md").write_text(ONE)
    (d / "README.md").write_text("# Runbooks\n\nAn index without front matter.\n")
    (d / "notes.txt").write_text("not markdown")
    sub = d / "drafts"
    sub.mkdir()
    (sub / "draft.md").write_text("no front matter, but not in the catalogue's directory")
    return d


@pytest.fixture
def cat(runbooks: Path) -> Catalogue:
    return load_catalogue(runbooks)


def test_runbooks_sorted_by_file_name(cat: Catalogue) -> None:
    assert [rb.path.name for rb in cat.runbooks] == [
        "01_system_monitoring.md",
        "04_troubleshooting.md",
    ]
    assert [rb.id for rb in cat] == ["system-monitoring", "troubleshooting"]
    assert cat.refs() == [
        "system-monitoring#morning-check",
        "troubleshooting#connectivity",
        "troubleshooting#slow-queries",
    ]


def test_get_by_id_or_stem(cat: Catalogue) -> None:
    assert cat.get("troubleshooting").path.name == "04_troubleshooting.md"
    assert cat.get("01_system_monitoring").id == "system-monitoring"


def test_resolve(cat: Catalogue) -> None:
    rb, p = cat.resolve("troubleshooting#connectivity")
    assert (rb.id, p.id) == ("troubleshooting", "connectivity")
    rb, p = cat.resolve("04_troubleshooting#slow-queries")
    assert (rb.id, p.id) == ("troubleshooting", "slow-queries")
    rb, p = cat.resolve("system-monitoring")  # exactly one procedure
    assert p.id == "morning-check"


def test_resolve_without_procedure_when_there_are_several(cat: Catalogue) -> None:
    with pytest.raises(NotFoundError) as info:
        cat.resolve("troubleshooting")
    assert info.value.hint is not None
    assert "troubleshooting#connectivity" in info.value.hint
    assert "troubleshooting#slow-queries" in info.value.hint


def test_unknown_runbook_suggests_close_matches(cat: Catalogue) -> None:
    with pytest.raises(NotFoundError) as info:
        cat.resolve("system-monitorin#morning-check")
    assert "system-monitorin" in info.value.message
    assert info.value.hint is not None and "did you mean: system-monitoring" in info.value.hint
    with pytest.raises(NotFoundError) as info:
        cat.get("zzz")
    assert info.value.hint is not None and "runbooks: system-monitoring, troubleshooting" in (
        info.value.hint
    )


def test_unknown_procedure_suggests_close_matches(cat: Catalogue) -> None:
    with pytest.raises(NotFoundError) as info:
        cat.resolve("troubleshooting#conectivity")
    assert info.value.hint is not None
    assert "did you mean: troubleshooting#connectivity" in info.value.hint
    with pytest.raises(NotFoundError) as info:
        cat.resolve("troubleshooting#qqq")
    assert info.value.hint is not None and "procedures: troubleshooting#connectivity" in (
        info.value.hint
    )


def test_readme_with_front_matter_is_a_runbook(runbooks: Path) -> None:
    (runbooks / "README.md").write_text(ONE.replace("system-monitoring", "readme-rb"))
    assert "readme-rb" in [rb.id for rb in load_catalogue(runbooks)]


def test_other_files_without_front_matter_are_errors(runbooks: Path) -> None:
    (runbooks / "02_notes.md").write_text("# Notes\n")
    with pytest.raises(RunbookFormatError) as info:
        load_catalogue(runbooks)
    assert info.value.location is not None
    assert info.value.location.path.endswith("02_notes.md")


def test_duplicate_ids_name_both_files(runbooks: Path) -> None:
    (runbooks / "09_copy.md").write_text("\n".join(ONE.splitlines()) + "\n")
    with pytest.raises(RunbookFormatError) as info:
        load_catalogue(runbooks)
    assert "01_system_monitoring.md" in info.value.message
    assert "09_copy.md" in info.value.message
    assert info.value.location is not None and info.value.location.line == 2


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceError):
        load_catalogue(tmp_path / "nope")


def test_empty_directory(tmp_path: Path) -> None:
    cat = load_catalogue(tmp_path)
    assert cat.runbooks == ()
    with pytest.raises(NotFoundError) as info:
        cat.get("x")
    assert info.value.hint is not None and "opsbook init" in info.value.hint
