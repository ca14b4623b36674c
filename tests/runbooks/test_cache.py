"""The parsed-runbook cache: hits are the same runbook, any change is a miss, and only entries
signed with the workspace's key are ever unpickled."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsbook.errors import RunbookFormatError
from opsbook.runbooks.cache import parse_cached
from opsbook.runbooks.parser import parse_file

TEXT = """---
id: cached
title: Cached
---

# Cached

## Proc

```yaml procedure
permissions: [operator]
```

### Say hello

```sh
echo hello
```
"""


def entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*.pickle"))


def test_a_hit_is_the_same_runbook_and_a_change_is_a_miss(tmp_path: Path) -> None:
    path, cache = tmp_path / "cached.md", tmp_path / "cache"
    path.write_text(TEXT)
    first = parse_cached(path, cache_dir=cache)
    assert first == parse_file(path) and len(entries(cache)) == 1
    assert parse_cached(path, cache_dir=cache) == first
    path.write_text(TEXT.replace("echo hello", "echo bye"))
    changed = parse_cached(path, cache_dir=cache)
    assert changed.procedures[0].steps[0].block is not None
    assert "bye" in changed.procedures[0].steps[0].block.body
    assert len(entries(cache)) == 2
    assert (cache / ".key").stat().st_mode & 0o077 == 0  # the key is the owner's only


def test_tampered_or_foreign_entries_are_never_unpickled(tmp_path: Path) -> None:
    path, cache = tmp_path / "cached.md", tmp_path / "cache"
    path.write_text(TEXT)
    parse_cached(path, cache_dir=cache)
    (entry,) = entries(cache)
    import pickle

    # A valid pickle that would run code, without this workspace's signature.
    entry.write_bytes(b"\0" * 32 + pickle.dumps(ZeroDivisionError("not a runbook")))
    assert parse_cached(path, cache_dir=cache) == parse_file(path)
    # A different key (another workspace's cache copied in) is a miss too.
    (cache / ".key").write_bytes(b"k" * 32)
    assert parse_cached(path, cache_dir=cache) == parse_file(path)


def test_parse_errors_are_not_cached(tmp_path: Path) -> None:
    path, cache = tmp_path / "broken.md", tmp_path / "cache"
    path.write_text(TEXT.replace("```sh", "```sh {bogus=1}"))
    for _ in range(2):
        with pytest.raises(RunbookFormatError):
            parse_cached(path, cache_dir=cache)
    assert entries(cache) == []
