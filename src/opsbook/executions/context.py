"""What every request handler needs: settings, workspace, database, engine factory, the
runbook catalogue (re-read when a file changes), background runs and change notifications,
and, when a broker is configured (ADR 0017), the dispatcher that hands runs to the workers.

One :class:`AppContext` per server process. The database connection is used only from the
event loop's thread, one statement at a time, and no transaction spans an ``await``, so the
engine's background runs and the request handlers share it safely.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.config import Settings
from opsbook.db import Database
from opsbook.errors import OpsbookError
from opsbook.executions.readcache import ReadCache
from opsbook.executions.settings import ServerSettings
from opsbook.users import accounts
from opsbook.users.access import roles_resolver
from opsbook.workspace import Workspace

if TYPE_CHECKING:
    from opsbook.cluster.dispatch import DispatchMetrics
    from opsbook.cluster.leader import LeaderLock
    from opsbook.cluster.settings import ClusterSettings
    from opsbook.db.checkpoints import Checkpointer
    from opsbook.engine._executor import Engine
    from opsbook.engine._hooks import Dispatcher, Reporter
    from opsbook.engine.secrets import Redactor, SecretResolver
    from opsbook.runbooks.catalogue import Catalogue
    from opsbook.runbooks.model import Runbook

CATALOGUE_CHECK = 1.0  # seconds between checks of the runbook files' mtimes


class Broadcaster:
    """Wakes up live-event streams when this process changed something; streams also poll
    the journal, so changes made elsewhere (CLI, other replicas) arrive within a second."""

    def __init__(self) -> None:
        self.version = 0
        self._event: asyncio.Event | None = None

    def notify(self) -> None:
        self.version += 1
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, timeout: float) -> None:
        if self._event is None:
            self._event = asyncio.Event()
        event = self._event
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return


@dataclass(frozen=True)
class BrokenRunbook:
    path: Path
    error: OpsbookError


ANSWERS_PER_CATALOGUE = 128


@dataclass
class LoadedCatalogue:
    catalogue: Catalogue
    broken: tuple[BrokenRunbook, ...]
    stamp: tuple[tuple[str, int, int], ...]
    #: Finished answers computed from this catalogue (e.g. a search), gone with it when a
    #: runbook file changes.
    answers: dict[Hashable, bytes] = field(default_factory=dict)

    def answer(self, key: Hashable, compute: Callable[[], bytes]) -> bytes:
        found = self.answers.get(key)
        if found is None:
            found = compute()
            if len(self.answers) >= ANSWERS_PER_CATALOGUE:
                self.answers.clear()
            self.answers[key] = found
        return found


@dataclass
class AppContext:
    settings: Settings
    server: ServerSettings
    workspace: Workspace
    db: Database
    resolver: SecretResolver
    redactor: Redactor
    changes: Broadcaster = field(default_factory=Broadcaster)
    tasks: dict[str, asyncio.Task[Any]] = field(default_factory=dict)
    cache: dict[str, Any] = field(default_factory=dict)  # e.g. OIDC provider metadata
    #: The lock of the background loops only one replica runs (set by the server's lifespan).
    leader: LeaderLock | None = None
    _loaded: LoadedCatalogue | None = None
    _checked: float = 0.0
    _reads: ReadCache | None = None
    _checkpointer: Checkpointer | None = None
    _cluster: ClusterSettings | None = None
    _dispatcher: Dispatcher | None = None

    @property
    def reads(self) -> ReadCache:
        """Read answers reused until the database changes (see
        :mod:`opsbook.executions.readcache`)."""
        if self._reads is None:
            self._reads = ReadCache(self.db)
        return self._reads

    # -- database threads ------------------------------------------------------------------
    def start_checkpoints(self) -> None:
        """SQLite's WAL checkpoints from a thread, not inside a request's commit."""
        from opsbook.db.checkpoints import Checkpointer  # noqa: PLC0415

        if self._checkpointer is None:
            self._checkpointer = Checkpointer(self.db)
            self._checkpointer.start()

    def stop_database_threads(self) -> None:
        if self._checkpointer is not None:
            self._checkpointer.stop()
            self._checkpointer = None

    # -- cluster (ADR 0017) -----------------------------------------------------------------
    @property
    def cluster(self) -> ClusterSettings:
        """The cluster's timings (``OPSBOOK_WORKER_*``, ``OPSBOOK_REDISPATCH_AFTER``,
        ``OPSBOOK_LEADER_POLL``) with this context's broker URL, read once."""
        if self._cluster is None:
            from dataclasses import replace  # noqa: PLC0415

            from opsbook.cluster.settings import ClusterSettings  # noqa: PLC0415

            # the broker URL is the settings object's (already checked): not parsed twice
            timings = ClusterSettings.from_env({**os.environ, "OPSBOOK_BROKER_URL": ""})
            self._cluster = replace(timings, broker_url=self.settings.broker_url)
        return self._cluster

    @property
    def dispatcher(self) -> Dispatcher | None:
        """How runs reach the workers: a Celery dispatcher when ``broker_url`` is set (built
        on first use: Celery is imported then), else None and every run is driven here."""
        if self.settings.broker_url is None:
            return None
        if self._dispatcher is None:
            from opsbook.cluster.celery_app import make_app  # noqa: PLC0415
            from opsbook.cluster.dispatch import CeleryDispatcher  # noqa: PLC0415

            self._dispatcher = CeleryDispatcher(make_app(self.settings.broker_url))
        return self._dispatcher

    @property
    def dispatch_metrics(self) -> DispatchMetrics | None:
        """This process's dispatch counters (``opsbook_dispatch_*_total``); None without a
        broker."""
        metrics: DispatchMetrics | None = getattr(self.dispatcher, "metrics", None)
        return metrics

    def close_dispatcher(self) -> None:
        """Close the broker connections of the dispatcher (at shutdown)."""
        dispatcher, self._dispatcher = self._dispatcher, None
        app = getattr(dispatcher, "app", None)
        if app is not None:
            with contextlib.suppress(Exception):  # any broker error: the process is stopping
                app.close()

    # -- policies --------------------------------------------------------------------------
    @property
    def lockout(self) -> accounts.LockoutPolicy:
        return accounts.LockoutPolicy(
            max_failures=self.server.lockout_failures,
            lockout_seconds=self.server.lockout_minutes * 60,
        )

    @property
    def session_ttl(self) -> timedelta:
        return timedelta(hours=self.server.session_hours)

    @property
    def idle_timeout(self) -> timedelta:
        return timedelta(minutes=self.server.idle_minutes)

    def known_roles(self) -> tuple[str, ...]:
        extra: list[str] = []
        for rb in self.catalogue().runbooks:
            for p in rb.procedures:
                extra.extend(p.permissions)
                for s in p.steps:
                    if s.approval:
                        extra.extend(s.approval.roles)
        return accounts.known_roles(workspace_config=self.workspace.config, extra=extra)

    def roles_of(self) -> Callable[[str], tuple[str, ...]]:
        return roles_resolver(db=self.db, fallback=self.workspace.roles_of)

    # -- engine ----------------------------------------------------------------------------
    def engine(self, *, reporter: Reporter | None = None) -> Engine:
        """A fresh engine (cheap) so each operation can have its own reporter."""
        from opsbook.engine._executor import Engine  # noqa: PLC0415
        from opsbook.lifecycle.guards import start_guards  # noqa: PLC0415

        return Engine(
            db=self.db,
            workspace=self.workspace,
            resolver=self.resolver,
            redactor=self.redactor,
            reporter=reporter,
            interaction=None,  # the server never prompts: runs park where people must act
            load_runbook=self.runbook_at,
            resolve_ref=lambda ref: self.catalogue().resolve(ref),
            roles_of=self.roles_of(),
            start_guards=start_guards(),
            dispatcher=self.dispatcher,  # for Engine.create; the server drives no slices
        )

    # -- catalogue -------------------------------------------------------------------------
    def _stamp(self) -> tuple[tuple[str, int, int], ...]:
        from opsbook.runbooks.catalogue import runbook_files  # noqa: PLC0415

        directory = self.workspace.runbooks_dir
        if not directory.is_dir():
            return ()
        out = []
        for p in runbook_files(directory):
            st = p.stat()
            out.append((p.name, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def loaded(self) -> LoadedCatalogue:
        """The catalogue, re-read when a runbook file changed. A runbook that does not parse
        is left out and listed in ``broken`` (the console shows its error) rather than taking
        the whole catalogue down."""
        now = time.monotonic()
        if self._loaded is not None and now - self._checked < CATALOGUE_CHECK:
            return self._loaded
        self._checked = now
        stamp = self._stamp()
        if self._loaded is not None and self._loaded.stamp == stamp:
            return self._loaded
        from opsbook.runbooks.catalogue import Catalogue, runbook_files  # noqa: PLC0415
        from opsbook.runbooks.parser import parse_file  # noqa: PLC0415

        runbooks: list[Runbook] = []
        broken: list[BrokenRunbook] = []
        directory = self.workspace.runbooks_dir
        for path in runbook_files(directory) if directory.is_dir() else []:
            try:
                rb = parse_file(path)
            except OpsbookError as exc:
                broken.append(BrokenRunbook(path, exc))
                continue
            if any(r.id == rb.id for r in runbooks):
                broken.append(
                    BrokenRunbook(path, OpsbookError(f"runbook id {rb.id!r} is used twice"))
                )
                continue
            runbooks.append(rb)
        self._loaded = LoadedCatalogue(Catalogue(tuple(runbooks)), tuple(broken), stamp)
        return self._loaded

    def catalogue(self) -> Catalogue:
        return self.loaded().catalogue

    def runbook_at(self, path: Path) -> Runbook:
        """The catalogue's parse of the runbook file at ``path`` while the file is as it was
        then (same modification time and size), else a fresh parse. Every resume reloads
        its runbook, and parsing it again (Markdown, YAML, CEL) was most of a resume."""
        from opsbook.runbooks.parser import parse_file  # noqa: PLC0415

        loaded = self.loaded()
        for rb in loaded.catalogue.runbooks:
            if rb.path == path:
                try:
                    st = path.stat()
                except OSError:
                    break
                if (path.name, st.st_mtime_ns, st.st_size) in loaded.stamp:
                    return rb
                break
        return parse_file(path)


def build_context(
    *, settings: Settings, server: ServerSettings, workspace: Workspace, db: Database
) -> AppContext:
    from opsbook.engine.secrets import (  # noqa: PLC0415
        EnvSecretProvider,
        FileSecretProvider,
        Redactor,
        SecretProvider,
        SecretResolver,
    )

    redactor = Redactor()
    providers: list[SecretProvider] = [
        EnvSecretProvider(),
        FileSecretProvider(settings.secrets_dir_for(workspace.state_dir)),
    ]
    resolver = SecretResolver(providers, redactor)
    context = AppContext(
        settings=settings,
        server=server,
        workspace=workspace,
        db=db,
        resolver=resolver,
        redactor=redactor,
    )
    _ = context.cluster  # bad OPSBOOK_WORKER_* timings: a UsageError now, not at start-up
    return context
