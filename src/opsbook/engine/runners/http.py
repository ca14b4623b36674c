"""``http`` blocks: one request in the ``.http`` file convention of editor REST clients.

::

    POST https://payment.example/admin/cache/flush HTTP/1.1
    Content-Type: application/json

    {"reason": "INC-42"}

Lines starting with ``#`` or ``//`` before the request line are comments. Fields: ``status``
(0 when there was no answer), ``headers`` (lower-case names), ``body`` (text, capped at
``output_limit`` bytes), ``json`` (the body parsed, or None), ``duration``. ``ok`` is
``status < 400``. The default timeout is 30 s.
"""

from __future__ import annotations

import re
import ssl
import time
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar

from opsbook.engine.runners._common import bounded, parse_json, seconds, truncation_note
from opsbook.engine.runners.base import RunnerInput, RunnerResult
from opsbook.errors import ValidationError

DEFAULT_TIMEOUT = 30.0
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS")
_REQUEST_LINE = re.compile(r"(?P<method>[A-Za-z]+)\s+(?P<url>\S+)(?:\s+HTTP/\d(?:\.\d)?)?")
_HEADER = re.compile(r"(?P<name>[!#$%&'*+.^_`|~0-9A-Za-z-]+)\s*:\s*(?P<value>.*)")
_HINT = "write the request line as METHOD URL, e.g. GET {{ env.payment_url }}/actuator/health"


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: tuple[tuple[str, str], ...]
    body: str


def parse_request(text: str) -> Request:
    """Parse an ``.http`` request; a malformed one is a :class:`ValidationError`."""
    lines = text.replace("\r\n", "\n").split("\n")
    k = 0
    while k < len(lines) and (not lines[k].strip() or lines[k].lstrip().startswith(("#", "//"))):
        k += 1
    if k == len(lines):
        raise ValidationError("the http block has no request line", hint=_HINT)
    line = lines[k].strip()
    match = _REQUEST_LINE.fullmatch(line)
    if match is None or match["method"].upper() not in METHODS:
        raise ValidationError(
            f"malformed request line {line!r} (line {k + 1} of the block)",
            hint=f"{_HINT}; methods: {', '.join(METHODS)}",
        )
    url = match["url"]
    if not url.lower().startswith(("http://", "https://")):
        raise ValidationError(
            f"the request URL {url!r} is not an absolute http:// or https:// URL",
            hint="write the full URL, e.g. {{ env.payment_url }}/actuator/health",
        )
    headers: list[tuple[str, str]] = []
    k += 1
    while k < len(lines) and lines[k].strip():
        header = _HEADER.fullmatch(lines[k].strip())
        if header is None:
            raise ValidationError(
                f"malformed header line {lines[k].strip()!r} (line {k + 1} of the block)",
                hint="write headers as Name: value, then a blank line before the body",
            )
        headers.append((header["name"], header["value"].strip()))
        k += 1
    body = "\n".join(lines[k + 1 :]).strip("\n")
    return Request(match["method"].upper(), url, tuple(headers), body)


@lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    """One TLS context per process (building one loads the CA bundle, which is slow)."""
    import httpx  # noqa: PLC0415 - deferred: import cost

    return httpx.create_ssl_context()


def describe_error(exc: Exception, url: str) -> str:
    import httpx  # noqa: PLC0415

    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "refused" in text or _caused_by(exc, ConnectionRefusedError):
            return f"connection refused to {url}"
        if "name or service not known" in text or "nodename nor servname" in text:
            return f"cannot resolve the host of {url}"
        return f"cannot connect to {url}: {exc}"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out waiting for {url}"
    return f"request to {url} failed: {type(exc).__name__}: {exc}"


def _caused_by(exc: BaseException, kind: type[BaseException]) -> bool:
    seen: BaseException | None = exc
    for _ in range(10):  # the chain httpx → httpcore → anyio → OSError is short
        if seen is None:
            return False
        if isinstance(seen, kind):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def _send(request: Request, limit: int) -> dict[str, Any]:
    import httpx  # noqa: PLC0415

    async with (
        httpx.AsyncClient(verify=ssl_context(), timeout=None) as client,  # noqa: S113 - bounded() times out
        client.stream(
            request.method,
            request.url,
            headers=list(request.headers),
            content=request.body.encode("utf-8") if request.body else None,
        ) as response,
    ):
        chunks: list[bytes] = []
        kept = dropped = 0
        async for chunk in response.aiter_bytes():
            room = limit - kept
            if room > 0:
                chunks.append(chunk[:room])
                kept += min(room, len(chunk))
            dropped += max(0, len(chunk) - max(room, 0))
        text = b"".join(chunks).decode(response.charset_encoding or "utf-8", "replace")
        return {
            "status": response.status_code,
            "headers": _headers(response.headers),
            "body": text + truncation_note(dropped) if dropped else text,
            "json": None if dropped else parse_json(text),
        }


def _headers(headers: Any) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in headers.multi_items():
        key = name.lower()
        out[key] = f"{out[key]}, {value}" if key in out else value
    return out


class HttpRunner:
    kind: ClassVar[str] = "http"
    supports_dry_run: ClassVar[bool] = False

    async def run(self, inp: RunnerInput) -> RunnerResult:
        started = time.perf_counter()
        request = parse_request(inp.body)
        if inp.context.dry_run:
            return RunnerResult(True, {"would_send": inp.body, "dry_run": True}, 0.0)
        timeout = inp.timeout if inp.timeout is not None else DEFAULT_TIMEOUT
        try:
            state, fields = await bounded(
                _send(request, inp.context.output_limit), timeout=timeout, cancel=inp.cancel
            )
        except Exception as exc:  # httpx's error tree: a failed step, not a crash
            return _no_answer(started, describe_error(exc, request.url))
        if state == "timeout":
            return _no_answer(started, f"timed out after {seconds(timeout)}", timed_out=True)
        if state == "cancelled" or fields is None:
            return _no_answer(started, "cancelled")
        duration = time.perf_counter() - started
        fields["duration"] = duration
        status = int(fields["status"])
        error = None if status < 400 else f"HTTP {status}"
        return RunnerResult(status < 400, fields, duration, error=error)


def _no_answer(started: float, error: str, *, timed_out: bool = False) -> RunnerResult:
    duration = time.perf_counter() - started
    fields: Mapping[str, Any] = {
        "status": 0,
        "headers": {},
        "body": "",
        "json": None,
        "duration": duration,
    }
    return RunnerResult(False, fields, duration, error=error, timed_out=timed_out)
