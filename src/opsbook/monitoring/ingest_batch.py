"""Group commit for webhook deliveries, on the event loop.

Alertmanager delivers in bursts, and several deliveries often arrive in the same turn of the
event loop. Each handler checks its delivery, then :meth:`IngestBatch.submit` queues it and
schedules one flush for the end of that turn. The flush stores every delivery queued by then
in one transaction, and each handler answers once that transaction has committed, so every
acknowledged alert is durable. Alerts are keyed by fingerprint, which is random, so each
commit rewrites index pages scattered over the file; sharing a commit shares those pages.

Each delivery still gets its own result and its own audit record. If the group's transaction
fails, each delivery is stored again in a transaction of its own, so a bad delivery fails only
itself. Everything runs on the event loop's thread: an earlier design with a writer thread
was slower, because SQLite drops and retakes the GIL on every step (ADR 0009).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from opsbook.db import Database
from opsbook.monitoring import alerts

MAX_GROUP = 32  # deliveries per transaction


@dataclass
class _Pending:
    incoming: Sequence[alerts.IncomingAlert]
    meta: Mapping[str, Any]
    actor: str
    future: asyncio.Future[alerts.IngestResult]


class IngestBatch:
    def __init__(
        self,
        *,
        db: Database,
        runbook_for: Callable[[], alerts.RunbookFor],
        source: str = "alertmanager",
    ) -> None:
        self._db = db
        self._runbook_for = runbook_for
        self._source = source
        self._queue: list[_Pending] = []
        self._scheduled = False
        self.commits = 0  # transactions that stored a group (for tests and metrics)

    async def submit(
        self, *, incoming: Sequence[alerts.IncomingAlert], meta: Mapping[str, Any], actor: str
    ) -> alerts.IngestResult:
        """Store one checked delivery with whatever else arrived in this turn of the loop;
        returns once it is committed."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[alerts.IngestResult] = loop.create_future()
        self._queue.append(_Pending(incoming, meta, actor, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue:
            group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            self._store(group)

    def _store(self, group: list[_Pending]) -> None:
        # One resolver per group: it looks at each environment's file once (a stat).
        runbook_for = self._runbook_for()
        try:
            with self._db.transaction():
                results = [self._one(p, runbook_for) for p in group]
        except Exception as exc:  # each delivery alone, so only a bad one fails
            if len(group) == 1:
                if not group[0].future.done():
                    group[0].future.set_exception(exc)
                return
            for p in group:
                self._store([p])
            return
        self.commits += 1
        for p, result in zip(group, results, strict=True):
            if not p.future.done():  # the client may have gone; the alerts are stored
                p.future.set_result(result)

    def _one(self, p: _Pending, runbook_for: alerts.RunbookFor) -> alerts.IngestResult:
        return alerts.ingest(
            self._db,
            alerts=p.incoming,
            source=self._source,
            actor=p.actor,
            meta=p.meta,
            runbook_for=runbook_for,
            now=datetime.now(UTC),
        )
