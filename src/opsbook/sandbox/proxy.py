"""The per-service load balancer (L4, round robin over live replicas, like kube-proxy), the API
gateway (``/api/<service>/...`` -> that service, like the production ingress) and a tiny HTTP/1.1
client the supervisor uses for probes. Pure asyncio: the supervisor stays light."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
from ssl import SSLContext

from opsbook.sandbox.config import SERVICES

CONNECT_TIMEOUT = 1.0


def _reply(status: int, reason: str, body: dict[str, object]) -> bytes:
    data = json.dumps(body).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + data


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


class Balancer:
    """Accepts on the service's port and forwards each connection to the next live replica.
    With no replica to take it, answers 503 ``no healthy upstream`` (as Envoy/ingress do)."""

    def __init__(self, service: str) -> None:
        self.service = service
        self.upstreams: tuple[int, ...] = ()  # replaced whole: a switch is atomic
        self.canary: tuple[int, ...] = ()  # a second set taking ``weight`` % of connections
        self.weight = 0
        self.isolated: str | None = None  # why, when a containment isolates the service
        self._next = 0
        self._rng = random.Random()  # noqa: S311 - traffic split, not security
        self.server: asyncio.Server | None = None

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", port, backlog=1024)

    def set(self, ports: list[int], canary: list[int] | None = None, weight: int = 0) -> None:
        """The replicas taking traffic; with ``canary``, that set takes ``weight`` % of new
        connections (the traffic split of a canary release, as a service mesh does)."""
        self.upstreams, self.canary = tuple(ports), tuple(canary or ())
        self.weight = weight if self.canary else 0

    async def connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        ports, canary = self.upstreams, self.canary
        if canary and (not ports or self._rng.random() * 100 < self.weight):
            conn = await self._first(canary)
            if conn is not None:
                return conn
        return await self._first(ports) if ports else None

    async def _first(
        self, ports: tuple[int, ...]
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        for i in range(len(ports)):
            port = ports[(self._next + i) % len(ports)]
            try:
                conn = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), CONNECT_TIMEOUT
                )
            except (OSError, TimeoutError):
                continue
            self._next = (self._next + i + 1) % max(len(ports), 1)
            return conn
        return None

    async def refuse_isolated(self, writer: asyncio.StreamWriter) -> bool:
        """Answer 403 ``isolated`` (and close) when the service is isolated."""
        if self.isolated is None:
            return False
        body = {"status": "ISOLATED", "service": self.service, "error": "isolated"}
        writer.write(_reply(403, "Forbidden", {**body, "reason": self.isolated}))
        with contextlib.suppress(ConnectionError, OSError):
            await writer.drain()
        writer.close()
        return True

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if await self.refuse_isolated(writer):
            return
        upstream = await self.connect()
        if upstream is None:
            writer.write(
                _reply(
                    503,
                    "Service Unavailable",
                    {
                        "status": "DOWN",
                        "service": self.service,
                        "error": "no healthy upstream: no replica of the service is running",
                    },
                )
            )
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
            writer.close()
            return
        up_reader, up_writer = upstream
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


class Gateway:
    """``/api/<service>/<path>`` on the api_base port, forwarded as ``/<path>`` to the service.
    One request per connection (it adds ``Connection: close``), which keeps it tiny."""

    def __init__(self, balancers: dict[str, Balancer]) -> None:
        self.balancers = balancers
        self.server: asyncio.Server | None = None

    async def start(self, port: int) -> None:
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", port, backlog=1024)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError, OSError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        target = parts[1] if len(parts) == 3 else ""
        pieces = target.split("/", 3)  # ['', 'api', service, rest]
        balancer = (
            self.balancers.get(pieces[2]) if len(pieces) >= 3 and pieces[1] == "api" else None
        )
        if balancer is not None and await balancer.refuse_isolated(writer):
            return
        upstream = await balancer.connect() if balancer else None
        if upstream is None:
            status, reason = (503, "Service Unavailable") if balancer else (404, "Not Found")
            writer.write(
                _reply(
                    status,
                    reason,
                    {
                        "error": "no healthy upstream" if balancer else "no route",
                        "routes": [f"/api/{s}/..." for s in SERVICES],
                    },
                )
            )
            with contextlib.suppress(ConnectionError, OSError):
                await writer.drain()
            writer.close()
            return
        rest = "/" + (pieces[3] if len(pieces) == 4 else "")
        kept = [
            h for h in lines[1:] if h and not h.lower().startswith(("connection:", "keep-alive:"))
        ]
        new_head = "\r\n".join(
            [f"{parts[0]} {rest} {parts[2]}", *kept, "Connection: close", "", ""]
        ).encode("latin-1")
        up_reader, up_writer = upstream
        up_writer.write(new_head)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()


async def http_request(
    port: int,
    path: str,
    *,
    method: str = "GET",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    timeout: float = 1.0,
    ssl: SSLContext | None = None,
) -> tuple[int, bytes]:
    """One HTTP/1.1 request to 127.0.0.1:``port``; (status, body). Raises OSError/TimeoutError."""

    async def go() -> tuple[int, bytes]:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=ssl, server_hostname="127.0.0.1" if ssl else None
        )
        try:
            extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
            writer.write(
                f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n{extra}"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
            data = await reader.read()
        finally:
            writer.close()
        head, _, payload = data.partition(b"\r\n\r\n")
        status_line = head.split(b"\r\n", 1)[0].split(b" ")
        if len(status_line) < 2 or not status_line[1].isdigit():
            raise ConnectionError(f"not an HTTP answer from port {port}")
        return int(status_line[1]), payload

    return await asyncio.wait_for(go(), timeout)
