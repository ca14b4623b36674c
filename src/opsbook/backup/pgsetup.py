"""Bring the sandbox's own PostgreSQL clusters up and down around the services (issue 13):
``opsbook sandbox up --db postgres``. The first ``up`` makes the primary (initdb, WAL archiving
to pgBackRest, the ``ledger`` database, the stanza); later ones start what the registry lists.
The encryption key reaches the servers' ``archive_command`` in their environment only."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsbook.backup import pgbackrest
from opsbook.backup.crypto import load_or_create_key
from opsbook.backup.paths import pg_repo
from opsbook.sandbox import endpoint, pgcluster

if TYPE_CHECKING:
    from opsbook.sandbox.config import SandboxConfig
    from opsbook.workspace import Workspace


def backup_key(workspace: Workspace) -> bytes:
    from opsbook.config import Settings  # noqa: PLC0415

    return load_or_create_key(Settings.from_env().secrets_dir_for(workspace.state_dir))


def server_env(key: bytes) -> dict[str, str]:
    return pgbackrest.cipher_env(key)


def configure_backrest(workspace: Workspace, config: SandboxConfig) -> None:
    """(Re)write pgbackrest.conf for the registry's current primary."""
    reg = pgcluster.load_registry(config.data_path)
    primary = reg.current()
    pgbackrest.write_config(
        data_dir=config.data_path,
        repo=pg_repo(workspace, config.env_name),
        pg_path=reg.path_of(primary.name),
        port=primary.port,
    )


def make_primary(
    *,
    workspace: Workspace,
    cfg: SandboxConfig,
    reg: pgcluster.Registry,
    cluster: pgcluster.Cluster,
    reason: str,
    note: str | None = None,
    replaced: pgcluster.Cluster | None = None,
    replaced_role: str = "retired",
    replaced_note: str = "",
) -> None:
    """Make ``cluster`` (running, out of recovery) the ledger's primary, in this order:

    1. the endpoint file points the services at it (``reason``; not fenced: on PostgreSQL a
       lost primary is fenced by stopping it, which the caller has done if it had to), so each
       service moves over between two queries;
    2. the registry names it the primary (no upstream, not a sync standby; ``note`` replaces
       its note when given);
    3. ``replaced`` (the former primary), if given: stopped if it still runs (after the
       services moved, so none of their queries is refused; a stop that fails is ignored, as
       its data is kept) and marked ``replaced_role`` with ``replaced_note``, so the listener
       URL leaves it out;
    4. pgBackRest is configured for it (its data directory and port: what its WAL archiving
       and the next backup use);
    5. ``databases.ledger.url`` in the environment file is the listener URL of the registry
       (what runbooks' sql steps query)."""
    from opsbook.sandbox.config import set_ledger_url  # noqa: PLC0415

    endpoint.write(cfg.data_path, port=cluster.port, cluster=cluster.name, reason=reason)
    reg.primary = cluster.name
    changes: dict[str, Any] = {"role": "primary", "upstream": None, "sync": False}
    if note is not None:
        changes["note"] = note
    reg.update(cluster.name, **changes)
    if replaced is not None:
        with contextlib.suppress(pgcluster.PgError):
            pgcluster.stop(reg, replaced)
        reg.update(replaced.name, role=replaced_role, note=replaced_note)
    configure_backrest(workspace, cfg)
    set_ledger_url(Path(cfg.env_path), pgcluster.listener_url(reg))


def up(workspace: Workspace, config: SandboxConfig) -> SandboxConfig:
    """Start (making them the first time) the clusters; the config with the primary's URL."""
    data_dir = config.data_path
    pgcluster.ensure_traversable(data_dir, inside=workspace.root)
    repo = pg_repo(workspace, config.env_name)
    repo.mkdir(parents=True, exist_ok=True)
    pgcluster.ensure_traversable(repo, inside=workspace.root)
    key = backup_key(workspace)
    env = server_env(key)
    reg = pgcluster.load_registry(data_dir)
    archive = pgbackrest.archive_command(data_dir)
    if not reg.clusters:
        reg.base.mkdir(parents=True, exist_ok=True)
        reg.base.chmod(0o711)
        pgbackrest.write_config(  # archive_command needs it from the first WAL segment
            data_dir=data_dir,
            repo=repo,
            pg_path=reg.path_of(pgcluster.PRIMARY_NAME),
            port=config.postgres_port,
        )
        pgcluster.init_primary(reg, port=config.postgres_port, archive_command=archive, env=env)
    else:
        configure_backrest(workspace, config)
        pgcluster.start_all(reg, env=env)
    primary = reg.current()
    pgcluster.wait_ready(primary)
    pgbackrest.ensure_stanza(data_dir, key)
    current = endpoint.read(data_dir)
    if not current or current.get("port") != primary.port:
        endpoint.write(data_dir, port=primary.port, cluster=primary.name, reason="sandbox up")
    return replace(config, database_url=primary.url(), postgres_port=primary.port)


def down(config: SandboxConfig) -> list[str]:
    """Stop every cluster (fast shutdown); their names."""
    return pgcluster.stop_all(pgcluster.load_registry(config.data_path))


def is_managed(data_dir: Path) -> bool:
    return bool(pgcluster.load_registry(data_dir).clusters)
