"""The sandbox ledger on PostgreSQL clusters that the sandbox runs itself (issue 13):
``opsbook sandbox up --db postgres``.

The clusters live in ``<data_dir>/pg/<name>/`` and are listed in ``<data_dir>/pg/clusters.json``
(the registry): the primary (``eastus``, the seed's East US), and, once the DR region is set
up, its streaming replica (``westus2``), and any instance a point-in-time recovery made. Which
one is the primary is the registry's ``primary``; the services reach it through the endpoint
file (:mod:`opsbook.sandbox.endpoint`), standing for a failover group's listener.

PostgreSQL refuses to run as root: when opsbook runs as root its binaries run as ``postgres``
(or ``nobody``) through ``runuser``, and the directories they need are given to that user.
Every command is an argv list (no shell)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from opsbook.errors import OpsbookError, UsageError

PG_DIR = "pg"
REGISTRY = "clusters.json"
DATABASE = "ledger"
SUPERUSER = "opsbook"
PRIMARY_NAME = "eastus"
DR_NAME = "westus2"
REGIONS = {PRIMARY_NAME: "East US", DR_NAME: "West US 2"}


class PgError(OpsbookError):
    """A PostgreSQL command that failed (exit 1), with its output."""


def pg_bin(name: str) -> str:
    """The path of a PostgreSQL server binary (initdb, pg_ctl, pg_basebackup...)."""
    found = shutil.which(name)
    if found and name not in ("initdb", "pg_ctl"):
        return found
    for base in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (base / name).exists():
            return str(base / name)
    if found:
        return found
    raise UsageError(
        f"the PostgreSQL server binary {name!r} is not installed",
        field="--db",
        hint="apt-get install postgresql (the sandbox starts its own cluster), or use --db sqlite",
    )


def run_as_user() -> str | None:
    """The unprivileged user PostgreSQL runs as when opsbook runs as root (else None)."""
    if os.geteuid() != 0:
        return None
    for user in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(user)
            return user
    raise UsageError(
        "running as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as",
        hint="create a 'postgres' user, or run opsbook as an unprivileged user",
    )


def prefix() -> list[str]:
    user = run_as_user()
    return ["runuser", "-u", user, "--"] if user else []


def give(path: Path) -> None:
    """Make ``path`` (a directory or file opsbook made) the PostgreSQL user's."""
    user = run_as_user()
    if user:
        shutil.chown(path, user=user, group=pwd.getpwnam(user).pw_gid)


def ensure_traversable(path: Path, *, inside: Path) -> None:
    """The PostgreSQL user must reach ``path``: directories of the workspace get o+x (no
    listing); one outside the workspace that it cannot pass is a clear error."""
    user = run_as_user()
    if not user:
        return
    inside = inside.resolve()
    for parent in [path.resolve(), *path.resolve().parents]:
        if not parent.exists():
            continue
        mode = parent.stat().st_mode
        if mode & 0o001:
            continue
        if parent == inside or inside in parent.parents:
            parent.chmod(mode | 0o001)
            continue
        raise UsageError(
            f"PostgreSQL runs as {user!r} (opsbook runs as root) and cannot enter {parent}",
            field="--db",
            hint=f"chmod o+x {parent}, move the workspace, or run opsbook as another user",
        )


def socket_dir(data_dir: Path) -> Path:
    """A short directory for the Unix sockets (their path is limited to 107 bytes)."""
    digest = hashlib.sha1(str(data_dir.resolve()).encode(), usedforsecurity=False).hexdigest()
    path = Path(tempfile.gettempdir()) / f"opsbook-pg-{digest[:10]}"
    path.mkdir(mode=0o755, exist_ok=True)
    give(path)
    return path


@dataclass(frozen=True)
class Cluster:
    name: str
    port: int
    role: str  # primary | replica | recovered | retired
    region: str
    upstream: str | None = None  # a replica's primary
    sync: bool = False  # a synchronous replica
    created_at: float = field(default_factory=time.time)
    note: str = ""

    def url(self, *, db: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{db}"


@dataclass
class Registry:
    data_dir: Path
    primary: str = PRIMARY_NAME
    clusters: dict[str, Cluster] = field(default_factory=dict)

    @property
    def base(self) -> Path:
        return self.data_dir / PG_DIR

    def path_of(self, name: str) -> Path:
        return self.base / name

    def current(self) -> Cluster:
        return self.clusters[self.primary]

    def get(self, name: str) -> Cluster:
        try:
            return self.clusters[name]
        except KeyError:
            raise UsageError(
                f"no PostgreSQL cluster {name!r} in the sandbox",
                hint=f"clusters: {', '.join(self.clusters) or '(none)'}",
            ) from None

    def save(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        body = {
            "primary": self.primary,
            "clusters": {n: asdict(c) for n, c in self.clusters.items()},
        }
        tmp = self.base / (REGISTRY + ".tmp")
        tmp.write_text(json.dumps(body, indent=2), encoding="utf-8")
        tmp.replace(self.base / REGISTRY)

    def put(self, cluster: Cluster) -> None:
        self.clusters[cluster.name] = cluster
        self.save()

    def update(self, name: str, **changes: Any) -> Cluster:
        cluster = replace(self.get(name), **changes)
        self.put(cluster)
        return cluster


def load_registry(data_dir: Path) -> Registry:
    path = data_dir / PG_DIR / REGISTRY
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Registry(data_dir)
    except ValueError as exc:
        raise UsageError(f"{path}: not valid JSON ({exc})", hint="restore or remove it") from None
    clusters = {n: Cluster(**c) for n, c in (raw.get("clusters") or {}).items()}
    return Registry(data_dir, str(raw.get("primary") or PRIMARY_NAME), clusters)


def listener_url(reg: Registry) -> str:
    """A SQLAlchemy URL that reaches whichever cluster is the primary: every live cluster as a
    host, primary first, with ``target_session_attrs=read-write`` (libpq skips the ones that
    refuse or are read-only). What ``databases.ledger.url`` holds, so runbooks' sql steps
    follow a failover like a failover group's listener does."""
    live = [reg.current()] + [
        c
        for c in reg.clusters.values()
        if c.name != reg.primary and c.role in ("primary", "replica", "recovered")
    ]
    hosts = "&".join(f"host=127.0.0.1:{c.port}" for c in live)
    return f"postgresql+psycopg://{SUPERUSER}@/{DATABASE}?{hosts}&target_session_attrs=read-write"


def primary_url(data_dir: Path) -> str | None:
    reg = load_registry(data_dir)
    return reg.current().url() if reg.primary in reg.clusters else None


# -- commands --------------------------------------------------------------------------------


def run(argv: list[str], *, env: dict[str, str] | None = None, timeout: float = 120) -> str:
    """Run a PostgreSQL binary (as the PostgreSQL user when root); its output, or PgError."""
    full = [*prefix(), *argv]
    try:
        done = subprocess.run(
            full,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            cwd="/",
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise PgError(f"{Path(argv[0]).name} did not finish within {timeout:g}s") from None
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-6:]
        raise PgError(
            f"{Path(argv[0]).name} {' '.join(argv[1:3])} failed (exit {done.returncode}): "
            + " | ".join(tail)
        )
    return done.stdout


def _conf_lines(reg: Registry, cluster: Cluster, archive_command: str | None) -> str:
    sock = socket_dir(reg.data_dir)
    lines = [
        "# written by opsbook (the sandbox ledger's cluster)",
        f"port = {cluster.port}",
        "listen_addresses = '127.0.0.1'",
        f"unix_socket_directories = '{sock}'",
        "max_connections = 300",
        "shared_buffers = 64MB",
        "wal_level = replica",
        "max_wal_senders = 10",
        "wal_keep_size = 256MB",
        "hot_standby = on",
        "hot_standby_feedback = on",
        "wal_log_hints = on",
        f"cluster_name = '{cluster.name}'",
        "logging_collector = off",
    ]
    if archive_command:
        lines += [
            "archive_mode = on",
            f"archive_command = '{archive_command}'",
            "archive_timeout = 60",
        ]
    return "\n".join(lines) + "\n"


def write_conf(reg: Registry, cluster: Cluster, archive_command: str | None) -> None:
    """opsbook's settings for a cluster (port, sockets, replication, archiving), included by
    its postgresql.conf."""
    conf = reg.path_of(cluster.name) / "opsbook.conf"
    conf.write_text(_conf_lines(reg, cluster, archive_command), encoding="utf-8")
    give(conf)
    main = reg.path_of(cluster.name) / "postgresql.conf"
    text = main.read_text(encoding="utf-8")
    if "include_if_exists = 'opsbook.conf'" not in text:
        main.write_text(text + "\ninclude_if_exists = 'opsbook.conf'\n", encoding="utf-8")


def enable_archiving(reg: Registry, cluster: Cluster, *, archive_command: str) -> None:
    """Archive this cluster's WAL from its next start (a restore turned it off)."""
    write_conf(reg, cluster, archive_command)
    auto = reg.path_of(cluster.name) / "postgresql.auto.conf"
    if auto.exists():
        keep = [
            ln
            for ln in auto.read_text(encoding="utf-8").splitlines()
            if not ln.startswith(("archive_mode", "recovery_target", "restore_command"))
        ]
        auto.write_text("\n".join(keep) + "\n", encoding="utf-8")


def init_primary(
    reg: Registry, *, port: int, archive_command: str | None, env: dict[str, str]
) -> Cluster:
    """initdb, configure (WAL archiving on), start, create the ledger database."""
    cluster = Cluster(PRIMARY_NAME, port, "primary", REGIONS[PRIMARY_NAME])
    reg.base.mkdir(parents=True, exist_ok=True)
    reg.base.chmod(0o711)
    data = reg.path_of(cluster.name)
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(mode=0o700)
    give(data)
    run(
        [
            pg_bin("initdb"),
            "-D",
            str(data),
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        ]
    )
    write_conf(reg, cluster, archive_command)
    reg.primary = cluster.name
    reg.put(cluster)
    start(reg, cluster, env=env)
    run([pg_bin("createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", SUPERUSER, DATABASE])
    return cluster


def postmaster_alive(pgdata: Path) -> bool:
    """Whether the server of a data directory runs (its postmaster.pid names a live process)."""
    try:
        pid = int((pgdata / "postmaster.pid").read_text(encoding="utf-8").splitlines()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def running(reg: Registry, cluster: Cluster) -> bool:
    return postmaster_alive(reg.path_of(cluster.name))


def start(reg: Registry, cluster: Cluster, *, env: dict[str, str], timeout: float = 60) -> None:
    if running(reg, cluster):
        return
    data = reg.path_of(cluster.name)
    log = reg.base / f"{cluster.name}.log"
    if not log.exists():
        log.touch()
        give(log)
    run(
        [pg_bin("pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", str(int(timeout)), "start"],
        env=env,
        timeout=timeout + 10,
    )


def stop(reg: Registry, cluster: Cluster, *, mode: str = "fast") -> None:
    if not running(reg, cluster):
        return
    run([pg_bin("pg_ctl"), "-D", str(reg.path_of(cluster.name)), "-m", mode, "-w", "stop"])


def promote(reg: Registry, cluster: Cluster) -> None:
    run([pg_bin("pg_ctl"), "-D", str(reg.path_of(cluster.name)), "-w", "promote"])


def start_all(reg: Registry, *, env: dict[str, str]) -> None:
    order = sorted(
        (c for c in reg.clusters.values() if c.role not in ("retired", "fenced")),
        key=lambda c: (c.name != reg.primary, c.role == "replica"),
    )
    for cluster in order:
        start(reg, cluster, env=env)


def stop_all(reg: Registry) -> list[str]:
    stopped = []
    for cluster in sorted(reg.clusters.values(), key=lambda c: c.name == reg.primary):
        if running(reg, cluster):
            with contextlib.suppress(PgError):
                stop(reg, cluster)
            stopped.append(cluster.name)
    return stopped


def add_replica(
    reg: Registry,
    *,
    name: str,
    port: int,
    upstream: Cluster,
    sync: bool,
    archive_command: str | None,
    env: dict[str, str],
) -> Cluster:
    """A streaming replica of ``upstream`` (pg_basebackup -R), synchronous or not. A cluster
    of that name (an old replica, a fenced primary) is stopped and replaced."""
    data = reg.path_of(name)
    if name in reg.clusters:
        stop(reg, reg.clusters[name], mode="immediate")
    if data.exists():
        shutil.rmtree(data)
    data.mkdir(mode=0o700)
    give(data)
    run(
        [
            pg_bin("pg_basebackup"),
            "-h",
            "127.0.0.1",
            "-p",
            str(upstream.port),
            "-U",
            SUPERUSER,
            "-D",
            str(data),
            "-X",
            "stream",
            "-R",
            "-c",
            "fast",
        ],
        timeout=900,
    )
    cluster = Cluster(name, port, "replica", REGIONS.get(name, name), upstream.name, sync)
    write_conf(reg, cluster, archive_command)
    auto = data / "postgresql.auto.conf"
    text = auto.read_text(encoding="utf-8")
    conninfo = f"host=127.0.0.1 port={upstream.port} user={SUPERUSER} application_name={name}"
    lines = [ln for ln in text.splitlines() if not ln.startswith("primary_conninfo")]
    lines.append(f"primary_conninfo = '{conninfo}'")
    auto.write_text("\n".join(lines) + "\n", encoding="utf-8")
    reg.put(cluster)
    start(reg, cluster, env=env)
    set_sync(reg, upstream, name if sync else None)
    return cluster


def set_sync(reg: Registry, primary: Cluster, standby: str | None) -> None:
    """Make ``standby`` the primary's synchronous standby (None: asynchronous replication)."""
    value = f"'{standby}'" if standby else "''"
    sql(primary, f"ALTER SYSTEM SET synchronous_standby_names = {value}", db="postgres")
    sql(primary, "SELECT pg_reload_conf()", db="postgres")


def sql(
    cluster: Cluster,
    query: str,
    params: tuple[Any, ...] = (),
    *,
    db: str = DATABASE,
    timeout: float = 10,
) -> list[Any]:
    """One statement on a cluster (autocommit), values as parameters; the rows."""
    import psycopg  # noqa: PLC0415

    try:
        with psycopg.connect(cluster.url(db=db), autocommit=True, connect_timeout=5) as conn:
            conn.execute(f"SET statement_timeout = {int(timeout * 1000)}")
            cur = conn.execute(query, params or None)  # our statements
            return list(cur.fetchall()) if cur.description else []
    except psycopg.Error as exc:
        raise PgError(f"{cluster.name} (port {cluster.port}): {exc}".strip()) from None


def wait_ready(cluster: Cluster, *, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            sql(cluster, "SELECT 1", db="postgres")
            return
        except PgError as exc:
            last = str(exc)
            time.sleep(0.1)
    raise PgError(f"{cluster.name} did not accept connections within {timeout:g}s: {last}")
