"""Answers read from the database, reused until the database changes (ADR 0008).

The console polls the executions list and automation scrapes it; between two changes every
one of those requests would read and serialise the same rows. :class:`ReadCache` keeps the
finished answer under a key and drops everything as soon as :meth:`Database.change_marker`
moves, i.e. after any write by this process or any commit by another (CLI runs, replicas,
workers): SQLite's data version, PostgreSQL's current snapshot (ADR 0017 §7). An answer is
stored only when the marker is the same before and after computing it, so a commit during the
computation is never cached. Permission checks stay outside:
callers check the caller's access before asking the cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from opsbook.db import Database

T = TypeVar("T")

DEFAULT_SIZE = 256


class ReadCache:
    def __init__(self, db: Database, *, size: int = DEFAULT_SIZE) -> None:
        self._db = db
        self._size = size
        self._marker: Hashable | None = None
        self._entries: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The answer stored under ``key`` if nothing changed since it was computed, else
        ``compute()`` (stored when nothing changed while it ran)."""
        marker = self._db.change_marker()
        if marker is None:
            self.misses += 1
            return compute()
        if marker != self._marker:
            self._entries.clear()
            self._marker = marker
        elif key in self._entries:
            self._entries.move_to_end(key)
            self.hits += 1
            found: T = self._entries[key]
            return found
        self.misses += 1
        value = compute()
        if self._db.change_marker() == marker:
            self._entries[key] = value
            if len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return value
