"""The fault catalogue, the active-faults file the services read, and the chaos log.

The supervisor is the only writer of ``faults.json`` (replaced atomically) and of
``chaos.jsonl`` (append-only, one JSON object per line: injected, cleared, expired). Every
service process reads ``faults.json`` when its modification time changes, so a fault takes
effect on the next request.

Faults fall in three groups by what ends them (see docs/sandbox.md):

- *process* faults (``crash``, ``hang``, ``memory-leak``) live in the service processes: a
  restart (``platform.restart``) ends them, as it would a deadlock or a leak in production;
- *environment* faults (``latency``, ``error-rate``, ``db-down``, ``db-connections-exhausted``,
  ``dependency-slow``, ``disk-full``, ``cert-expiring``, ``suspicious-logins``) survive restarts
  and end with ``chaos clear`` or their ``--duration``, as do the backup faults for drills
  (``backup-job-stopped``, ``corrupted-backup``, ``lagging-replica``; a corrupted backup stays
  corrupted: clear ends only its record);
- ``bad-deploy`` is a release: a rollback (``platform.rollback``) ends it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from opsbook.durations import DURATION_HINT, duration_seconds
from opsbook.errors import NotFoundError, UsageError
from opsbook.sandbox.config import SERVICES, check_service

FAULTS_FILE = "faults.json"
#: the security faults for drills (issue 14; :mod:`opsbook.sandbox.security_faults` does them)
SECURITY_FAULTS = ("pan-in-log", "weak-tls", "expired-cert", "dormant-admin", "leaked-token")
#: the backup and DR faults for drills (issue 13; :mod:`opsbook.backup.faults` does them)
BACKUP_FAULTS = ("backup-job-stopped", "corrupted-backup", "lagging-replica")
CHAOS_LOG = "chaos.jsonl"


class AuditSink(Protocol):
    """Where fault injections are audited (the lead wires the hash-chained audit log in)."""

    def record(
        self, *, actor: str, action: str, subject: str, payload: Mapping[str, Any]
    ) -> None: ...


@dataclass(frozen=True)
class FaultSpec:
    name: str
    #: ``service``: one service, required; ``services``: one service or all of them;
    #: anything else names the one thing it acts on (``payment-network``, ``data-dir``, ...).
    target: str
    ended_by: str  # "restart", "rollback" or "clear"
    description: str
    symptom: str
    params: Mapping[str, float] = field(default_factory=dict)

    @property
    def security(self) -> bool:
        """A security fault for drills (issue 14): the daily security check catches it, and
        diagnosis is not the path to it."""
        return self.name in SECURITY_FAULTS

    @property
    def backup(self) -> bool:
        """A backup/DR fault for drills (issue 13): the backup checks and verification catch
        it, and diagnosis is not the path to it."""
        return self.name in BACKUP_FAULTS

    @property
    def takes_service(self) -> bool:
        return self.target in ("service", "services")


def _spec(
    name: str, target: str, ended_by: str, description: str, symptom: str, **params: float
) -> FaultSpec:
    return FaultSpec(name, target, ended_by, description, symptom, params)


FAULTS: dict[str, FaultSpec] = {
    s.name: s
    for s in (
        _spec(
            "crash",
            "service",
            "restart",
            "the service's processes die (exit 70); nothing restarts them until an operator does",
            "health 503 'no healthy upstream', status crashed, ready 0/N, fatal log line",
        ),
        _spec(
            "hang",
            "service",
            "restart",
            "requests are accepted but never answered (a deadlocked worker)",
            "health probes time out, ready 0/N, no access logs",
        ),
        _spec(
            "latency",
            "services",
            "clear",
            "every request is delayed",
            "latency_ms and http_request_duration_seconds rise; slow-request log lines",
            delay_ms=1200,
        ),
        _spec(
            "error-rate",
            "services",
            "clear",
            "half of the API requests fail with HTTP 500",
            'http_requests_total{status="500"} rises; error log lines; health stays UP',
            rate=0.5,
        ),
        _spec(
            "db-down",
            "services",
            "clear",
            "the services lose their connection to the ledger database (a network partition)",
            "health 503 with checks.database DOWN; API 503; db errors in logs and metrics",
        ),
        _spec(
            "db-connections-exhausted",
            "services",
            "clear",
            "every connection of the services' database pool is held by a leaked transaction",
            "requests wait for a connection then fail (503 pool timeout); db_pool gauges full",
            pool_timeout_s=1.0,
        ),
        _spec(
            "dependency-slow",
            "payment-network",
            "clear",
            "the external payment network answers slowly",
            "payments time out and fail; payment health DEGRADED "
            "(dependencies); payment_network latency histogram rises",
            delay_ms=2500,
        ),
        _spec(
            "memory-leak",
            "service",
            "restart",
            "the service's heap grows until it is restarted (or OOM-killed at 512 MiB)",
            "memory in status/top and process_resident_memory_bytes climb; warnings; "
            "health DEGRADED above 256 MiB",
            mb_per_second=48,
        ),
        _spec(
            "disk-full",
            "data-dir",
            "clear",
            "the sandbox data volume (its quota) is full",
            "health 503 with checks.disk DOWN; writes fail with 'No space left on device'",
        ),
        _spec(
            "cert-expiring",
            "tls-certificate",
            "clear",
            "the sandbox TLS certificate (payment network) is re-issued to expire in 5 days",
            "payment health checks.tls WARN; tls_certificate_expiry_seconds falls; warnings",
            days=5,
        ),
        _spec(
            "suspicious-logins",
            "account",
            "clear",
            "a credential-stuffing burst of failed "
            "logins against the account service from a few addresses",
            "security log events auth.login_failed; auth_login_failures_total rises",
            per_second=15,
        ),
        _spec(
            "pan-in-log",
            "service",
            "clear",
            "a debug line of a buggy release writes a full card number into the service's log",
            "a payment.authorize.request log line with card_number; the daily security check's"
            " data.pan-in-logs fails (clear masks it in place)",
        ),
        _spec(
            "weak-tls",
            "payment-network",
            "clear",
            "the payment network is restarted accepting TLS 1.0/1.1 and weak cipher suites",
            "tls.protocols and tls.weak-ciphers fail in the security check; nothing else changes",
        ),
        _spec(
            "expired-cert",
            "tls-certificate",
            "clear",
            "the payment network's certificate has expired (re-issued with dates in the past)",
            "payments fail certificate verification; payment health checks.tls DOWN;"
            " tls.cert-expired fails",
            days_ago=2,
        ),
        _spec(
            "dormant-admin",
            "iam",
            "clear",
            "an admin database account nobody has used for 200 days is still enabled",
            "accounts.dormant fails naming admin-legacy; the access review lists it",
            days=200,
        ),
        _spec(
            "leaked-token",
            "account",
            "clear",
            "ops-batch's bearer token is used from an address it was never used from",
            "auth.token_used warnings with new_address=true from 198.51.100.77;"
            " auth.token-new-address fails",
        ),
        _spec(
            "backup-job-stopped",
            "backup-job",
            "clear",
            "the daily backup of `opsbook serve` silently stops running (a cron job that died:"
            " no log line, no catalogue row, no error); for drills on backup freshness",
            "nothing at first; `opsbook backups check` fails 'backup maximum age' once the last"
            " good backup is older than [backups] max_age (a BackupCheckFailed alert)",
        ),
        _spec(
            "corrupted-backup",
            "backup",
            "clear",
            "bytes flipped in the newest good backup in its primary location (the .obk file;"
            " on PostgreSQL a data file of the newest pgBackRest set); for restore drills."
            " Clear ends the record only: the backup stays corrupted",
            "`opsbook backups verify` names the damaged primary copy (checksum) and marks the"
            " backup bad; the DR copy still restores",
        ),
        _spec(
            "lagging-replica",
            "dr-replica",
            "clear",
            "WAL replay paused on the DR replica (PostgreSQL ledger, `opsbook dr setup`); for"
            " failover drills: what a lagging replica would lose (RPO)",
            "`opsbook backups check` fails 'DR replica lag' once the lag passes [backups]"
            " replica_max_lag; pg_stat_replication replay_lag grows",
        ),
        _spec(
            "bad-deploy",
            "service",
            "rollback",
            "a new release with a bug: a third of "
            "the requests fail while the health check catches it only now and then",
            "new revision; 5xx and stack traces; health flaps DEGRADED/UP; rollback fixes",
        ),
    )
}


def get_spec(name: str) -> FaultSpec:
    spec = FAULTS.get(name)
    if spec is None:
        raise NotFoundError(
            f"unknown fault {name!r}",
            hint=f"use one of: {', '.join(FAULTS)} (`opsbook sandbox chaos list --all`)",
        )
    return spec


def parse_duration(text: str | float | None) -> float | None:
    """A fault's ``duration`` (:func:`opsbook.durations.duration_seconds`) in seconds; None
    stays None."""
    if text is None or text == "":
        return None
    try:
        seconds = duration_seconds(text)
    except ValueError:
        raise UsageError(
            f"not a duration: {text!r}", field="duration", hint=DURATION_HINT
        ) from None
    if seconds <= 0:
        raise UsageError("the duration must be positive", field="duration", hint="e.g. 30s")
    return seconds


def check_request(fault: str, service: str | None) -> tuple[FaultSpec, str | None]:
    """Validate a fault and its target service; the spec and the service (None = all)."""
    spec = get_spec(fault)
    if spec.target == "service" and not service:
        raise UsageError(
            f"{fault} needs --service",
            field="service",
            hint=f"e.g. opsbook sandbox chaos inject {fault} --service payment "
            f"(services: {', '.join(SERVICES)})",
        )
    if service and not spec.takes_service:
        raise UsageError(
            f"{fault} acts on the {spec.target}, not on one service: drop --service",
            field="service",
        )
    return spec, check_service(service) if service else None


@dataclass(frozen=True)
class ActiveFault:
    id: str
    fault: str
    service: str | None  # None: every service (or the fault's own target)
    injected_at: float
    until: float | None
    by: str
    params: Mapping[str, float] = field(default_factory=dict)

    def applies_to(self, who: str) -> bool:
        """Whether the process ``who`` (a service or ``payment-network``) feels this fault."""
        target = FAULTS[self.fault].target if self.fault in FAULTS else "services"
        if target in ("service", "services"):
            return who in SERVICES and (self.service is None or self.service == who)
        if target == "payment-network":
            return who == "payment-network"
        return True  # the data volume, the certificate, the account service: seen by all

    def expired(self, at: float | None = None) -> bool:
        return self.until is not None and (at or time.time()) >= self.until

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["params"] = dict(self.params)
        out["target"] = self.service or FAULTS[self.fault].target
        return out


def faults_path(data_dir: Path) -> Path:
    return data_dir / FAULTS_FILE


def read_faults(data_dir: Path) -> list[ActiveFault]:
    try:
        raw = json.loads(faults_path(data_dir).read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return []
    fields = ("id", "fault", "service", "injected_at", "until", "by", "params")
    return [ActiveFault(**{k: item.get(k) for k in fields}) for item in raw.get("faults", [])]


def write_faults(data_dir: Path, faults: list[ActiveFault]) -> None:
    path = faults_path(data_dir)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    body = {"updated_at": time.time(), "faults": [asdict(f) for f in faults]}
    tmp.write_text(json.dumps(body, indent=1), encoding="utf-8")
    tmp.replace(path)


def append_chaos_log(data_dir: Path, entry: Mapping[str, Any]) -> None:
    """One line in the append-only chaos log (O_APPEND: concurrent lines do not interleave)."""
    line = json.dumps({"ts": time.time(), **entry}, sort_keys=True, default=str) + "\n"
    fd = os.open(data_dir / CHAOS_LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode("utf-8"))
    finally:
        os.close(fd)


def read_chaos_log(data_dir: Path) -> list[dict[str, Any]]:
    path = data_dir / CHAOS_LOG
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


class FaultView:
    """The faults that apply to one process, re-read when ``faults.json`` changes."""

    def __init__(self, data_dir: Path, service: str) -> None:
        self._path = faults_path(data_dir)
        self._data_dir = data_dir
        self._service = service
        self._key: tuple[int, int, int] = (-1, -1, -1)
        self._all: list[ActiveFault] = []

    def active(self) -> dict[str, ActiveFault]:
        try:  # a stat per request (~2 µs): the file is replaced, so its inode changes
            st = self._path.stat()
            key = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            key = (0, 0, 0)
        if key != self._key:
            self._key = key
            self._all = read_faults(self._data_dir)
        at = time.time()
        return {f.fault: f for f in self._all if f.applies_to(self._service) and not f.expired(at)}
