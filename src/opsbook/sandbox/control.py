"""Talking to a running supervisor: one JSON line in, one JSON line out, on its control port."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsbook.errors import (
    ConflictError,
    NotFoundError,
    OpsbookError,
    PermissionDenied,
    UsageError,
    ValidationError,
)
from opsbook.sandbox.state import alive, read_state, recorded_processes, supervisor_alive

_ERRORS: dict[str, type[OpsbookError]] = {
    "usage": UsageError,
    "validation": ValidationError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "permission_denied": PermissionDenied,
}


def error_from(data: Mapping[str, Any]) -> OpsbookError:
    cls = _ERRORS.get(str(data.get("error")), OpsbookError)
    return cls(
        str(data.get("message", "the sandbox supervisor failed")),
        hint=data.get("hint"),
        field=data.get("field"),
    )


def not_up(data_dir: Path, state: dict[str, Any] | None) -> ConflictError:
    if state is None:
        return ConflictError("the sandbox is not up", hint="start it: opsbook sandbox up")
    alive_ones = [p for p in recorded_processes(state)[1:] if alive(p["pid"], p["create_time"])]
    pid = (state.get("supervisor") or {}).get("pid")
    return ConflictError(
        f"the sandbox supervisor (pid {pid}) is not running: the record in "
        f"{data_dir / 'state.json'} is stale ({len(alive_ones)} of its processes still run)",
        hint="clean up with `opsbook sandbox down`, then `opsbook sandbox up`",
    )


class Control:
    def __init__(self, port: int, token: str) -> None:
        self.port = port
        self.token = token

    @classmethod
    def for_data_dir(cls, data_dir: Path) -> Control:
        """The control channel of the supervisor recorded in ``data_dir`` (or a clear error)."""
        state = read_state(data_dir)
        if state is None or not supervisor_alive(state):
            raise not_up(data_dir, state)
        if state.get("phase") not in ("ready", "starting"):
            raise ConflictError(
                f"the sandbox is {state.get('phase')}",
                hint="wait for it, or run `opsbook sandbox up` again",
            )
        control = state.get("control") or {}
        return cls(int(control.get("port", 0)), str(control.get("token", "")))

    def _request(self, op: str, args: Mapping[str, Any] | None) -> bytes:
        body = {"token": self.token, "op": op, "args": dict(args or {})}
        return json.dumps(body, default=str).encode() + b"\n"

    @staticmethod
    def _result(raw: bytes) -> Any:
        if not raw:
            raise OpsbookError(
                "the sandbox supervisor closed the connection without answering",
                hint="see .opsbook/sandbox/logs/supervisor.log",
            )
        reply = json.loads(raw)
        if not reply.get("ok"):
            raise error_from(reply.get("error") or {})
        return reply.get("result")

    def call(
        self, op: str, args: Mapping[str, Any] | None = None, *, timeout: float = 120.0
    ) -> Any:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as sock:
                sock.settimeout(timeout)
                sock.sendall(self._request(op, args))
                chunks: list[bytes] = []
                while not chunks or not chunks[-1].endswith(b"\n"):
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    chunks.append(chunk)
        except TimeoutError:
            raise OpsbookError(
                f"the sandbox supervisor did not answer {op!r} within {timeout:g}s"
            ) from None
        except OSError as exc:
            raise OpsbookError(
                f"cannot reach the sandbox supervisor: {exc}",
                hint="is it up? opsbook sandbox status",
            ) from None
        return self._result(b"".join(chunks))

    async def acall(
        self, op: str, args: Mapping[str, Any] | None = None, *, timeout: float = 120.0
    ) -> Any:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection("127.0.0.1", self.port), 5
            )
        except (OSError, TimeoutError) as exc:
            raise OpsbookError(
                f"cannot reach the sandbox supervisor: {exc}",
                hint="is it up? opsbook sandbox status",
            ) from None
        try:
            writer.write(self._request(op, args))
            await writer.drain()
            raw = await asyncio.wait_for(reader.readline(), timeout)
        except TimeoutError:
            raise OpsbookError(
                f"the sandbox supervisor did not answer {op!r} within {timeout:g}s"
            ) from None
        finally:
            writer.close()
        return self._result(raw)
