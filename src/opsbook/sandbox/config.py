"""What the sandbox runs, where: read from (and written back to) ``environments/sandbox.yaml``.

The environment file is owned by the workspace; the sandbox only rewrites the ports it had to
change (a port that was missing or taken), keeping every other key and the leading comment.
"""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from opsbook.errors import Location, UsageError, ValidationError

#: The four services of the banking platform, in start order.
SERVICES: tuple[str, ...] = ("account", "transaction", "payment", "notification")
DEFAULT_PORTS = {
    "gateway": 18100,
    "account": 18101,
    "transaction": 18102,
    "payment": 18103,
    "notification": 18104,
    "network": 18105,
}
DEFAULT_DISK_QUOTA_MB = 1024
DEFAULT_POSTGRES_PORT = 18110
MAX_REPLICAS = 8


@dataclass(frozen=True)
class ServiceConfig:
    name: str
    port: int
    replicas: int = 1


@dataclass(frozen=True)
class SandboxConfig:
    """Everything the supervisor needs, resolved to absolute paths and concrete ports."""

    workspace: str
    env_name: str
    env_path: str
    data_dir: str
    database_url: str
    gateway_port: int
    network_port: int
    services: tuple[ServiceConfig, ...]
    disk_quota_bytes: int = DEFAULT_DISK_QUOTA_MB * 1024 * 1024
    startup_timeout: float = 30.0
    #: the ledger on PostgreSQL clusters the sandbox runs itself (``sandbox.db: postgres``)
    managed_postgres: bool = False
    postgres_port: int = 0

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir)

    def service(self, name: str) -> ServiceConfig:
        for svc in self.services:
            if svc.name == name:
                return svc
        raise unknown_service(name)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> SandboxConfig:
        raw = json.loads(text)
        raw["services"] = tuple(ServiceConfig(**s) for s in raw["services"])
        return cls(**raw)


def unknown_service(name: object) -> UsageError:
    return UsageError(
        f"unknown service {name!r}",
        field="service",
        hint=f"use one of: {', '.join(SERVICES)}",
    )


def check_service(name: object) -> str:
    if not isinstance(name, str) or name not in SERVICES:
        raise unknown_service(name)
    return name


def config_from_environment(
    *, workspace: Path, env_name: str, env_path: Path, data: Mapping[str, Any]
) -> SandboxConfig:
    """Build the config from a parsed environment file; missing ports become 0 (pick one)."""
    where = Location(str(env_path))
    if str(data.get("platform", "local")) != "local":
        raise ValidationError(
            f"environment {env_name!r} has platform {data.get('platform')!r}, not 'local'",
            location=where,
            hint="the sandbox runs environments with `platform: local` (e.g. --env sandbox)",
        )
    sandbox = data.get("sandbox") or {}
    if not isinstance(sandbox, Mapping):
        raise ValidationError("`sandbox:` must be a mapping", location=where)
    data_dir = Path(str(sandbox.get("data_dir") or ".opsbook/sandbox"))
    if not data_dir.is_absolute():
        data_dir = workspace / data_dir
    db_url = sandbox.get("database_url")
    if db_url and not str(db_url).startswith(("postgresql://", "postgres://", "sqlite:///")):
        raise ValidationError(
            f"sandbox.database_url must be null, sqlite:///PATH or postgresql://…, not {db_url!r}",
            location=where,
            field="sandbox.database_url",
        )
    db = str(sandbox.get("db") or "sqlite")
    if db not in ("sqlite", "postgres"):
        raise ValidationError(
            f"sandbox.db must be sqlite or postgres, not {db!r}",
            location=where,
            field="sandbox.db",
        )
    managed = db == "postgres" and not db_url
    if managed:
        from opsbook.sandbox.pgcluster import primary_url  # noqa: PLC0415

        database_url = primary_url(data_dir.resolve()) or "postgresql://opsbook@127.0.0.1:0/ledger"
    elif db_url:
        database_url = str(db_url)
    else:
        from opsbook.sandbox.endpoint import read as read_endpoint  # noqa: PLC0415

        end = read_endpoint(data_dir.resolve())  # after a failover, the DR region's file
        home = data_dir / "ledger.db"
        database_url = f"sqlite:///{end['path'] if end and end.get('path') else home}"
    services = _services(data.get("services"), where)
    quota_mb = sandbox.get("disk_quota_mb", DEFAULT_DISK_QUOTA_MB)
    return SandboxConfig(
        workspace=str(workspace),
        env_name=env_name,
        env_path=str(env_path),
        data_dir=str(data_dir.resolve()),
        database_url=database_url,
        gateway_port=_port_of_url(data.get("api_base")),
        network_port=_int(sandbox.get("payment_network_port"), where, "payment_network_port"),
        services=services,
        disk_quota_bytes=int(quota_mb) * 1024 * 1024,
        startup_timeout=float(sandbox.get("startup_timeout", 30)),
        managed_postgres=managed,
        postgres_port=(
            _int(sandbox.get("postgres_port", DEFAULT_POSTGRES_PORT), where, "postgres_port")
            if managed
            else 0
        ),
    )


def _services(raw: Any, where: Location) -> tuple[ServiceConfig, ...]:
    by_name: dict[str, Mapping[str, Any]] = {}
    for item in raw or []:
        if not isinstance(item, Mapping) or "name" not in item:
            raise ValidationError(
                "each entry of `services:` must be a mapping with a name",
                location=where,
                hint="e.g. - {name: payment, port: 18103, replicas: 1}",
            )
        name = str(item["name"])
        if name not in SERVICES:
            raise ValidationError(
                f"unknown service {name!r} in services",
                location=where,
                hint=f"the sandbox runs: {', '.join(SERVICES)}",
            )
        by_name[name] = item
    out = []
    for name in SERVICES:
        item = by_name.get(name, {})
        replicas = _int(item.get("replicas", 1), where, f"{name}.replicas") or 1
        if not 1 <= replicas <= MAX_REPLICAS:
            raise ValidationError(
                f"{name}: replicas must be between 1 and {MAX_REPLICAS}, not {replicas}",
                location=where,
            )
        out.append(ServiceConfig(name, _int(item.get("port"), where, f"{name}.port"), replicas))
    return tuple(out)


def _int(value: Any, where: Location, what: str) -> int:
    if value is None or value == "":
        return 0
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError(
            f"{what} must be a number, not {value!r}", location=where, field=what
        ) from None
    if not 0 <= number <= 65535:
        raise ValidationError(f"{what} must be a TCP port, not {number}", location=where)
    return number


def _port_of_url(url: Any) -> int:
    if not isinstance(url, str) or not url.startswith("http://127.0.0.1:"):
        return 0
    tail = url.removeprefix("http://127.0.0.1:").split("/", 1)[0]
    return int(tail) if tail.isdigit() else 0


# -- ports ---------------------------------------------------------------------------------


_LISTEN_FLOOR = 20000  # ports picked for listeners start here (below the ephemeral range)


def port_is_free(port: int) -> bool:
    if port <= 0:
        return False
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default


def free_port(*, avoid: set[int] | frozenset[int] = frozenset()) -> int:
    """A free port for a listener that binds it later, outside the kernel's ephemeral range.

    A port the kernel hands out for ``bind(0)`` comes from the ephemeral range, and an outgoing
    connection (a PostgreSQL client, pgBackRest, httpx) may take the same number as its source
    port before the listener binds it: the listener then fails with "address already in use".
    Picking below (or above) that range leaves only other listeners to race with."""
    low, high = _ephemeral_range()
    if low - _LISTEN_FLOOR >= 1000:
        first, last = _LISTEN_FLOOR, low - 1
    elif 65535 - high >= 1000:
        first, last = high + 1, 65535
    else:
        first = last = 0
    if first:
        for _ in range(200):
            port = first + secrets.randbelow(last - first + 1)
            if port not in avoid and port_is_free(port):
                return port
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in avoid:
            return port


def free_ports(count: int) -> list[int]:
    """``count`` distinct free listener ports (see :func:`free_port`)."""
    ports: list[int] = []
    for _ in range(count):
        ports.append(free_port(avoid=set(ports)))
    return ports


@dataclass(frozen=True)
class PortChange:
    what: str
    old: int
    new: int
    reason: str  # "missing" or "in use"


def settle_ports(config: SandboxConfig, *, strict: bool) -> tuple[SandboxConfig, list[PortChange]]:
    """Free ports for everything: keep the configured ones that are free, pick others.

    With ``strict``, a configured port that is taken is an error naming who holds it.
    """
    changes: list[PortChange] = []
    taken: set[int] = set()

    def settle(what: str, port: int) -> int:
        if port and port not in taken and port_is_free(port):
            taken.add(port)
            return port
        if port and strict:
            raise UsageError(
                f"port {port} for {what} is in use{holder(port)}",
                field=what,
                hint="stop what holds it, change the port in "
                f"{Path(config.env_path).name}, or drop --strict-ports to pick a free one",
            )
        new = free_port(avoid=taken)
        taken.add(new)
        changes.append(PortChange(what, port, new, "in use" if port else "missing"))
        return new

    gateway = settle("gateway", config.gateway_port)
    network = settle("payment network", config.network_port)
    services = tuple(replace(s, port=settle(s.name, s.port)) for s in config.services)
    pg_port = config.postgres_port
    if config.managed_postgres and not _cluster_made(config):
        pg_port = settle("postgres", pg_port)
    return (
        replace(
            config,
            gateway_port=gateway,
            network_port=network,
            services=services,
            postgres_port=pg_port,
        ),
        changes,
    )


def _cluster_made(config: SandboxConfig) -> bool:
    """The managed cluster exists already: its port is its own (kept in its registry)."""
    from opsbook.sandbox.pgcluster import load_registry  # noqa: PLC0415

    return bool(load_registry(config.data_path).clusters)


def holder(port: int) -> str:
    """`` (held by pid N, NAME)`` when the owner of a listening port can be found."""
    try:
        import psutil  # noqa: PLC0415 - only on this error path

        for conn in psutil.net_connections(kind="tcp"):
            if conn.laddr and conn.laddr.port == port and conn.status == "LISTEN" and conn.pid:
                return f" (held by pid {conn.pid}, {psutil.Process(conn.pid).name()})"
    except Exception:  # noqa: S110 - best effort: the message is fine without it
        pass
    return ""


def write_back(config: SandboxConfig, changes: list[PortChange]) -> None:
    """Rewrite the ports that changed in the environment file, keeping the other keys."""
    if not changes:
        return
    import yaml  # noqa: PLC0415 - deferred: import cost

    from opsbook import yamlsafe  # noqa: PLC0415 - refuses YAML aliases (issue 16 §3)

    path = Path(config.env_path)
    text = path.read_text(encoding="utf-8")
    loaded = yamlsafe.load(
        text, source=str(path), what="environment file", kind="environment files"
    )
    data = loaded.data or {}
    data["api_base"] = f"http://127.0.0.1:{config.gateway_port}"
    sandbox = data.setdefault("sandbox", {}) or {}
    data["sandbox"] = sandbox
    sandbox["payment_network_port"] = config.network_port
    if config.managed_postgres:
        sandbox["db"] = "postgres"
        sandbox["postgres_port"] = config.postgres_port
    entries = data.get("services") or []
    by_name = {str(e.get("name")): e for e in entries if isinstance(e, dict)}
    for svc in config.services:
        entry = by_name.get(svc.name)
        if entry is None:
            entry = {"name": svc.name, "replicas": svc.replicas}
            entries.append(entry)
        entry["port"] = svc.port
        entry["health_url"] = f"http://127.0.0.1:{svc.port}/health"
        entry["metrics_url"] = f"http://127.0.0.1:{svc.port}/metrics"
    data["services"] = entries
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(_leading_comments(text) + body, encoding="utf-8")
    tmp.replace(path)


def _leading_comments(text: str) -> str:
    lines = []
    for line in text.splitlines(keepends=True):
        if not line.startswith("#"):
            break
        lines.append(line)
    return "".join(lines)


def set_database(env_path: Path, db: str) -> bool:
    """Write ``sandbox.db`` (sqlite or postgres) into the environment file; True if changed."""
    if db not in ("sqlite", "postgres"):
        raise UsageError(f"unknown ledger database {db!r}", field="--db", hint="sqlite or postgres")

    def change(data: dict[str, Any]) -> bool:
        sandbox = data.get("sandbox") or {}
        if str(sandbox.get("db") or "sqlite") == db:
            return False
        sandbox["db"] = db
        data["sandbox"] = sandbox
        if db == "sqlite":
            _databases(data)["ledger"] = {"url": "sqlite:///.opsbook/sandbox/ledger.db"}
        return True

    return _rewrite(env_path, change)


def set_ledger_url(env_path: Path, url: str) -> bool:
    """Point ``databases.ledger.url`` (what runbooks' sql steps query) at the ledger's primary."""

    def change(data: dict[str, Any]) -> bool:
        dbs = _databases(data)
        found = dbs.get("ledger")
        entry: dict[str, Any] = found if isinstance(found, dict) else {}
        if entry.get("url") == url:
            return False
        dbs["ledger"] = {**entry, "url": url}
        return True

    return _rewrite(env_path, change)


def _databases(data: dict[str, Any]) -> dict[str, Any]:
    dbs = data.get("databases")
    if not isinstance(dbs, dict):
        dbs = data["databases"] = {}
    return dbs


def _rewrite(env_path: Path, change: Any) -> bool:
    import yaml  # noqa: PLC0415 - deferred: import cost

    from opsbook import yamlsafe  # noqa: PLC0415

    text = env_path.read_text(encoding="utf-8")
    data = (
        yamlsafe.load(
            text, source=str(env_path), what="environment file", kind="environment files"
        ).data
        or {}
    )
    if not change(data):
        return False
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=None, width=120)
    tmp = env_path.with_suffix(".yaml.tmp")
    tmp.write_text(_leading_comments(text) + body, encoding="utf-8")
    tmp.replace(env_path)
    return True
