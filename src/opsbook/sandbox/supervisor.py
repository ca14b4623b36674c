"""The sandbox supervisor: one detached process that owns every sandbox process.

It binds the service ports (a load balancer per service), the API gateway and the payment
network port; starts the replicas; answers ``opsbook sandbox`` and the ``platform.*`` actions on
a token-protected control port (one JSON line in, one out); probes readiness every second; and
records everything in ``state.json``.

Restart policy is *Never*: a replica that dies stays dead (``crashed``) until an operator
restarts it (``platform.restart``), so a crash is observable the way a CrashLoopBackOff is.

``python -m opsbook.sandbox.supervisor DATA_DIR [--daemon]``
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import socket
import ssl
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

from opsbook.errors import OpsbookError
from opsbook.sandbox.chaos_ops import expiry_loop, reset_faults
from opsbook.sandbox.commands import dispatch
from opsbook.sandbox.config import SERVICES, SandboxConfig
from opsbook.sandbox.faults import ActiveFault
from opsbook.sandbox.jsonlog import JsonLog
from opsbook.sandbox.procs import (
    Replica,
    bind_listener,
    replica_name,
    sample,
    spawn,
    stop,
    wait_answering,
)
from opsbook.sandbox.proxy import Balancer, Gateway, http_request
from opsbook.sandbox.releases import INITIAL_VERSION, PREVIOUS_VERSION
from opsbook.sandbox.shipping import shipping_loop
from opsbook.sandbox.state import CONFIG_FILE, write_state
from opsbook.sandbox.units import Revision, Unit

PROBE_INTERVAL = 1.0
EXIT_REASONS = {70: "Error", 137: "OOMKilled", -9: "Killed", -15: "Terminated"}

NETWORK_START_FLOOR = 15.0  # seconds the payment network may take to answer


class Supervisor:
    def __init__(self, config: SandboxConfig) -> None:
        import psutil  # noqa: PLC0415

        self.config = config
        self.data_dir = config.data_path
        self.logs = self.data_dir / "logs"
        self.log = JsonLog(self.logs / "supervisor.log", service="supervisor")
        self.service_log = {
            n: JsonLog(self.logs / f"{n}.log", service=n, source="supervisor") for n in SERVICES
        }
        self.token = secrets.token_hex(16)
        self.started_at = time.time()
        self.create_time = psutil.Process().create_time()
        self.phase = "starting"
        self.error: str | None = None
        self.units = {
            s.name: Unit(
                s.name,
                s.port,
                s.replicas,
                Balancer(s.name),
                split_flag=self.data_dir / "split" / s.name,
            )
            for s in config.services
        }
        for unit in self.units.values():
            unit.split_flag.unlink(missing_ok=True)  # type: ignore[union-attr]
        self.gateway = Gateway({n: u.balancer for n, u in self.units.items()})
        self.network: Replica | None = None
        self.network_sock: socket.socket | None = None
        self.control: asyncio.Server | None = None
        self.control_port = 0
        self.faults: list[ActiveFault] = []
        self.attacker: asyncio.Task[None] | None = None
        self.leaker: asyncio.Task[None] | None = None
        self.chaos_lock = asyncio.Lock()
        self.stopping = asyncio.Event()

    # -- the record ------------------------------------------------------------------------

    def all_replicas(self) -> list[Replica]:
        out = [r for u in self.units.values() for r in (*u.active, *u.standby)]
        return [*out, self.network] if self.network else out

    def save(self) -> None:
        if not self.data_dir.exists():  # deleted under us: nothing to record (see _orphan_watch)
            return
        running = [
            r.record()
            for r in self.all_replicas()
            if r.process is not None and r.process.returncode is None
        ]
        write_state(
            self.data_dir,
            {
                "phase": self.phase,
                "error": self.error,
                "supervisor": {
                    "pid": os.getpid(),
                    "create_time": self.create_time,
                    "pgid": os.getpgid(0),
                    "started_at": self.started_at,
                },
                "control": {"port": self.control_port, "token": self.token},
                "gateway_port": self.config.gateway_port,
                "network_port": self.config.network_port,
                "processes": running,
                "services": {
                    n: {
                        "port": u.port,
                        "state": u.state,
                        "version": u.current.version if u.revisions else None,
                    }
                    for n, u in self.units.items()
                },
                "updated_at": time.time(),
            },
        )

    # -- processes -------------------------------------------------------------------------

    def _exited(self, replica: Replica, code: int) -> None:
        replica.exit_code, replica.ready = code, False
        if replica.state in ("terminating", "stopped"):
            replica.state = "stopped"
        else:
            replica.state = "crashed"
            reason = EXIT_REASONS.get(code, "Error")
            message = (
                f"{replica.name} exited with code {code} ({reason}); restart policy "
                "Never: restart it with platform.restart"
            )
            unit = self.units.get(replica.role)
            if unit is not None:
                unit.route()
                unit.event("Warning", message)
                self.service_log[unit.name](
                    "error",
                    "replica exited",
                    replica=replica.name,
                    pid=replica.pid,
                    exit_code=code,
                    reason=reason,
                    restart_policy="Never",
                )
            self.log(
                "error",
                "process exited",
                name=replica.name,
                pid=replica.pid,
                exit_code=code,
                reason=reason,
            )
        if not self.stopping.is_set():
            self.save()

    def replica_spec(self, unit: Unit, rev: Revision) -> dict[str, Any]:
        from opsbook.sandbox.releases import RELEASES  # noqa: PLC0415

        c = self.config
        release = next((r for r in RELEASES if r.version == rev.version), None)
        behaviour: dict[str, Any] = (
            {}
            if release is None
            else {
                "latency_ms": release.latency_ms,
                "fail_rate": release.fail_rate,
                "requires": [list(pair) for pair in release.requires],
            }
        )
        return {
            **behaviour,
            "kind": "service",
            "service": unit.name,
            "version": rev.version,
            "revision": rev.revision,
            "bug": rev.bug,
            "data_dir": c.data_dir,
            "database_url": c.database_url,
            "network_port": c.network_port,
            "disk_quota_bytes": c.disk_quota_bytes,
        }

    async def start_replicas(self, unit: Unit, rev: Revision, count: int) -> list[Replica]:
        out = []
        for _ in range(count):
            sock = bind_listener()
            replica = Replica(
                replica_name(unit.name),
                unit.name,
                sock.getsockname()[1],
                rev.version,
                rev.revision,
                rev.bug,
            )
            spec = {**self.replica_spec(unit, rev), "replica": replica.name}
            try:
                await spawn(replica, spec, sock, log_dir=self.logs, on_exit=self._exited)
            finally:
                sock.close()
            out.append(replica)
        self.save()
        return out

    async def start_network(self, *, cert: Path | None = None, key: Path | None = None) -> Replica:
        """Start a payment network process on the network's socket (another may still be
        serving on it: certificate rotation overlaps the two); ``cert``/``key``: files other
        than the sandbox certificate's."""
        if self.network_sock is None:
            self.network_sock = bind_listener(self.config.network_port)
        replica = Replica("payment-network", "payment-network", self.config.network_port)
        spec = {
            "kind": "network",
            "cert": str(cert) if cert else None,
            "key": str(key) if key else None,
            "data_dir": self.config.data_dir,
            "latency_ms": 20,
            "failure_rate": 0.01,
            "weak_tls": any(f.fault == "weak-tls" for f in self.faults),
        }
        await spawn(replica, spec, self.network_sock, log_dir=self.logs, on_exit=self._exited)
        self.network = replica
        return replica

    async def network_answering(self, timeout: float) -> bool:
        from opsbook.sandbox.tls import cert_paths, client_context  # noqa: PLC0415

        ctx = client_context(cert_paths(self.data_dir)[0])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.network is None or not self.network.alive:
                return False
            try:
                status, _ = await http_request(
                    self.config.network_port, "/health", ssl=ctx, timeout=1.0
                )
                self.network.ready = status == 200
                self.network.state = "running"
                return True
            except ssl.SSLCertVerificationError:  # an expired certificate still answers
                self.network.state = "running"
                return True
            except (OSError, TimeoutError):
                await asyncio.sleep(0.05)
        return False

    async def restart_network(self) -> None:
        if self.network is not None:
            await stop(self.network)
        await self.start_network()
        await self.network_answering(10)
        self.save()

    async def stop_all(self, replicas: list[Replica]) -> None:
        await asyncio.gather(*(stop(r) for r in replicas))

    def log_tail(self, name: str, lines: int = 8) -> str:
        from opsbook.sandbox.logtail import tail_lines  # noqa: PLC0415

        found = []
        for path in (self.logs / f"{name}.log", self.logs / f"{name}.console.log"):
            found += [f"  {line}" for line in tail_lines(path, lines)]
        return "\n".join(found) or "  (no log lines)"

    # -- boot and teardown -----------------------------------------------------------------

    async def boot(self) -> None:
        from opsbook.sandbox.ledger import Ledger, seed_customers  # noqa: PLC0415

        def prepare_ledger() -> None:
            ledger = Ledger(self.config.database_url)
            ledger.init_schema()
            seed_customers(ledger)
            ledger.close()

        await asyncio.to_thread(prepare_ledger)
        from opsbook.sandbox import iam  # noqa: PLC0415

        await asyncio.to_thread(iam.ensure, self.data_dir)
        from opsbook.sandbox.containment import restore  # noqa: PLC0415

        restore(self)
        await reset_faults(self)
        self.control = await asyncio.start_server(self.serve_control, "127.0.0.1", 0)
        self.control_port = int(self.control.sockets[0].getsockname()[1])
        for unit in self.units.values():
            await self._listen(unit.balancer.start, unit.port, unit.name)
        await self._listen(self.gateway.start, self.config.gateway_port, "the API gateway")
        self.save()
        await self.start_network()
        # The simulated payment network is a dependency, not one of the services whose
        # health `startup_timeout` is about: give it a floor so a loaded machine does not fail.
        waits: list[Awaitable[bool]] = [
            self.network_answering(max(self.config.startup_timeout, NETWORK_START_FLOOR))
        ]
        starting: list[Replica] = []
        for unit in self.units.values():
            # a history: the release before (superseded), so a rollback has somewhere to go
            unit.revisions.append(
                Revision(
                    1,
                    PREVIOUS_VERSION,
                    False,
                    unit.desired,
                    time.time(),
                    "sandbox up",
                    "the release before the initial one",
                    "superseded",
                )
            )
            rev = Revision(
                2,
                INITIAL_VERSION,
                False,
                unit.desired,
                time.time(),
                "sandbox up",
                "initial release",
            )
            unit.revisions.append(rev)
            unit.active = await self.start_replicas(unit, rev, unit.desired)
            starting += unit.active
        waits += [
            wait_answering(r, timeout=self.config.startup_timeout, healthy=True) for r in starting
        ]
        results = await asyncio.gather(*waits)
        for replica, ok in zip(starting, results[1:], strict=True):
            if not ok:
                raise OpsbookError(
                    f"{replica.role} did not become healthy within "
                    f"{self.config.startup_timeout:g}s; its last log lines:\n"
                    + self.log_tail(replica.role),
                    hint=f"see {self.logs / (replica.role + '.log')}",
                )
        if not results[0]:
            raise OpsbookError(
                "the payment network did not start:\n" + self.log_tail("payment-network")
            )
        for unit in self.units.values():
            unit.route()
            unit.event(
                "Normal", f"started revision 2 ({INITIAL_VERSION}), {unit.desired} replica(s)"
            )

    async def _listen(self, start: Callable[[int], Awaitable[None]], port: int, what: str) -> None:
        try:
            await start(port)
        except OSError as exc:
            raise OpsbookError(
                f"cannot listen on port {port} for {what}: {exc.strerror}",
                hint="another process took the port; run `opsbook sandbox up` "
                "again to pick free ports",
            ) from None

    async def teardown(self) -> None:
        self.stopping.set()
        if self.attacker is not None:
            self.attacker.cancel()
        if self.leaker is not None:
            self.leaker.cancel()
        for unit in self.units.values():
            await unit.balancer.close()
        await self.gateway.close()
        await self.stop_all(self.all_replicas())
        if self.control is not None:
            self.control.close()

    # -- loops -----------------------------------------------------------------------------

    async def probe_loop(self) -> None:
        async def probe(replica: Replica) -> None:
            try:
                status, body = await http_request(replica.port, "/health", timeout=0.9)
                replica.ready = status == 200
                if replica.state == "starting":
                    replica.state = "running"
                replica.last_health = "UP" if status == 200 else _status_of(body, status)
            except (OSError, TimeoutError):
                replica.ready, replica.last_health = False, "TIMEOUT"

        while not self.stopping.is_set():
            replicas = [
                r
                for u in self.units.values()
                for r in (*u.active, *u.standby)
                if r.state in ("running", "starting")
            ]
            for r in self.all_replicas():
                sample(r)
            await asyncio.gather(*(probe(r) for r in replicas))
            await asyncio.sleep(PROBE_INTERVAL)

    # -- control ---------------------------------------------------------------------------

    async def serve_control(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        import hmac  # noqa: PLC0415
        import json  # noqa: PLC0415

        try:
            line = await reader.readline()
            request = json.loads(line or b"{}")
            if not hmac.compare_digest(str(request.get("token", "")), self.token):
                reply: dict[str, Any] = {
                    "ok": False,
                    "error": {"error": "permission_denied", "message": "bad control token"},
                }
            else:
                result = await dispatch(
                    self, str(request.get("op")), dict(request.get("args") or {})
                )
                reply = {"ok": True, "result": result}
        except OpsbookError as exc:
            reply = {"ok": False, "error": exc.to_dict()}
        except Exception as exc:  # reported to the caller, logged here
            self.log("error", "control request failed", error=f"{type(exc).__name__}: {exc}")
            reply = {
                "ok": False,
                "error": {
                    "error": "error",
                    "message": f"supervisor error: {type(exc).__name__}: {exc}",
                },
            }
        with contextlib.suppress(ConnectionError, OSError):
            writer.write(json.dumps(reply, default=str).encode() + b"\n")
            await writer.drain()
            writer.close()

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stopping.set)
        self.save()
        try:
            await self.boot()
        except Exception as exc:  # every boot failure is reported via state.json
            self.error = exc.render() if isinstance(exc, OpsbookError) else f"{exc!r}"
            self.phase = "failed"
            self.log("error", "boot failed", error=self.error)
            await self.teardown()
            self.save()
            return 1
        self.phase = "ready"
        self.save()
        self.log("info", "sandbox ready", pid=os.getpid(), control_port=self.control_port)
        tasks = [
            asyncio.create_task(self.probe_loop()),
            asyncio.create_task(expiry_loop(self)),
            asyncio.create_task(_orphan_watch(self)),
            asyncio.create_task(shipping_loop(self.data_dir)),
        ]
        await self.stopping.wait()
        self.phase = "stopping"
        self.save()
        for task in tasks:
            task.cancel()
        await self.teardown()
        self.phase = "stopped"
        self.save()
        self.log("info", "sandbox stopped")
        return 0


ORPHAN_CHECK = 5.0  # seconds between checks that the sandbox's data directory still exists


async def _orphan_watch(supervisor: Supervisor) -> None:
    """Its data directory deleted (the workspace removed without `sandbox down`): nobody can
    reach this sandbox any more, so it stops itself instead of running forever."""
    while not supervisor.stopping.is_set():
        await asyncio.sleep(ORPHAN_CHECK)
        if not supervisor.config.data_path.exists():
            supervisor.stopping.set()


def _status_of(body: bytes, code: int) -> str:
    import json  # noqa: PLC0415

    try:
        return str(json.loads(body).get("status", f"HTTP {code}"))
    except (ValueError, AttributeError):
        return f"HTTP {code}"


def main(argv: list[str]) -> int:
    data_dir = Path(argv[0])
    if "--daemon" in argv[1:]:
        if os.fork() > 0:  # the first child returns at once; the grandchild is the daemon
            os._exit(0)
        os.setpgid(0, 0)  # its own process group: `down` signals the whole group
    config = SandboxConfig.from_json((data_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    supervisor = Supervisor(config)
    supervisor.log("info", "supervisor starting", pid=os.getpid(), config=asdict(config))
    return asyncio.run(supervisor.run())


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
