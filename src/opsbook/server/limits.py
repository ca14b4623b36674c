"""Request body limits: no request makes the server read more than ``max_body_bytes``.

A pure ASGI middleware (no per-request task or buffering, ADR 0008): a body whose
``Content-Length`` is over the limit is refused before any of it is read, and a chunked body
is counted while the app reads it and refused as soon as it passes the limit, so the app
never holds more than the limit. The answer is 413 with an RFC 9457 problem naming the limit
(``code: payload_too_large``, as the Alertmanager webhook has always answered) for the API,
and the console's error page elsewhere.

Some paths keep their own limit (the webhook: 1 MiB of Alertmanager deliveries, whatever the
general setting). What the app answers after a chunked body tripped the limit (FastAPI turns
the error into a 400) is replaced by the 413, unless the answer had already started.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import NamedTuple

import orjson
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from opsbook.api import problems

#: Renders the refusal for a path outside the API: (scope, status, message, hint) → app.
Page = Callable[[Scope, int, str, str], Awaitable[ASGIApp]]

HINT = (
    "send a smaller body; the server's limit is max_body_bytes ([limits] in opsbook.toml, or "
    "OPSBOOK_MAX_BODY_BYTES)"
)
_NO_BODY = frozenset(("GET", "HEAD", "OPTIONS"))


class Limit(NamedTuple):
    bytes: int
    hint: str = HINT


class BodyTooLarge(Exception):
    """Raised into the app when a chunked body passes the limit (the app never sees more)."""


class BodyLimit:
    """Refuses request bodies over ``limit`` bytes (``own`` gives some paths their own)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limit: int,
        own: Mapping[str, Limit] | None = None,
        page: Page | None = None,
    ) -> None:
        self.app = app
        self.limit = Limit(limit)
        self.own = dict(own or {})
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in _NO_BODY:
            await self.app(scope, receive, send)
            return
        limit = self.own.get(scope["path"], self.limit)
        declared = _content_length(scope)
        if declared is not None:
            if declared > limit.bytes:
                await self._refuse(scope, send, limit, f" (Content-Length: {declared})")
                return
            # The server reads exactly the declared length: nothing to count.
            await self.app(scope, receive, send)
            return
        await self._counted(scope, receive, send, limit)

    async def _counted(self, scope: Scope, receive: Receive, send: Send, limit: Limit) -> None:
        received = 0
        tripped = started = False

        async def limited() -> Message:
            nonlocal received, tripped
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit.bytes:
                    tripped = True
                    raise BodyTooLarge
            return message

        async def guarded(message: Message) -> None:
            nonlocal started
            if tripped and not started:
                return  # the app's answer to the interrupted read; the 413 follows
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited, guarded)
        except Exception:
            if not tripped:
                raise
        if tripped and not started:
            await self._refuse(scope, send, limit, "")

    async def _refuse(self, scope: Scope, send: Send, limit: Limit, size: str) -> None:
        message = f"the request body is larger than the limit of {limit.bytes} bytes{size}"
        path = str(scope.get("path", ""))
        if self.page is not None and not path.startswith("/api/"):
            respond = await self.page(scope, 413, message, limit.hint)
            await respond(scope, _nothing, send)
            return
        body = problems.problem(
            413, message, code="payload_too_large", instance=path, hint=limit.hint, field="body"
        )
        body["limit"] = limit.bytes
        data = orjson.dumps(body)
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", problems.MEDIA_TYPE.encode()),
                    (b"content-length", str(len(data)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": data})


def _content_length(scope: Scope) -> int | None:
    for key, value in scope["headers"]:
        if key == b"content-length":
            return int(value) if value.isdigit() else None
    return None


async def _nothing() -> Message:
    return {"type": "http.disconnect"}
