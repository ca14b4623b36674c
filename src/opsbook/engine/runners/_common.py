"""Helpers shared by the runners: JSON-safe values, output caps, timeouts and cancellation."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import math
import uuid
from collections.abc import Awaitable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

T = TypeVar("T")


def json_safe(value: Any) -> Any:
    """Values that JSON and CEL take: Decimal → float, datetimes → ISO text, bytes → hex,
    timedelta → seconds, UUID → text, non-finite floats → None; containers recursively."""
    if value is None or isinstance(value, str | bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [json_safe(v) for v in value]
    if isinstance(value, Decimal):
        return json_safe(float(value))
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if isinstance(value, uuid.UUID):
        return str(value)
    return str(value)


def parse_json(text: str) -> Any:
    """``text`` parsed as JSON, or None when it is not JSON."""
    stripped = text.strip()
    if not stripped:
        return None
    try:
        return json.loads(stripped)
    except ValueError:
        return None


def truncation_note(dropped: int) -> str:
    return f"\n[... {dropped} bytes truncated]"


def seconds(value: float) -> str:
    """``30.0`` → ``30s``, ``0.5`` → ``0.5s``."""
    return f"{value:g}s"


async def bounded(
    work: Awaitable[T], *, timeout: float | None, cancel: asyncio.Event | None
) -> tuple[str, T | None]:
    """Await ``work`` until it finishes, ``timeout`` passes or ``cancel`` is set.

    Returns ``("done", result)``, ``("timeout", None)`` or ``("cancelled", None)``; the work is
    cancelled in the last two cases. Exceptions from the work propagate.
    """
    task = asyncio.ensure_future(work)
    if cancel is None:
        try:
            return "done", await asyncio.wait_for(task, timeout)
        except TimeoutError:
            return "timeout", None
    if cancel.is_set():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return "cancelled", None
    waiter = asyncio.ensure_future(cancel.wait())
    try:
        done, _ = await asyncio.wait({task, waiter}, timeout=timeout, return_when="FIRST_COMPLETED")
    except BaseException:
        task.cancel()
        raise
    finally:
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
    if task in done:
        return "done", task.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return ("cancelled" if cancel.is_set() else "timeout"), None
