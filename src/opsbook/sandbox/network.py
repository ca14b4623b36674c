"""The external payment network, simulated: a TLS endpoint with configurable latency and
failure rate (the ``dependency-slow`` fault adds latency)."""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from opsbook.sandbox.faults import FaultView
from opsbook.sandbox.jsonlog import JsonLog

NAME = "payment-network"


def build_network_app(*, data_dir: Path, latency_ms: float, failure_rate: float) -> Starlette:
    faults = FaultView(data_dir, NAME)
    log = JsonLog(data_dir / "logs" / f"{NAME}.log", service=NAME)
    rng = random.Random()  # noqa: S311 - latency jitter, not security

    async def delay() -> None:
        extra = faults.active().get("dependency-slow")
        base = latency_ms * (0.5 + rng.random())
        if extra is not None:
            base += float(extra.params.get("delay_ms", 2500))
        await asyncio.sleep(base / 1000)

    async def health(request: Request) -> Response:
        await delay()
        return JSONResponse({"status": "UP", "service": NAME})

    async def authorize(request: Request) -> Response:
        body = await request.json()
        await delay()
        rid = request.headers.get("x-request-id", "")
        if rng.random() < failure_rate:
            log("info", "authorization declined", reference=rid, reason="do_not_honor")
            return JSONResponse({"status": "declined", "reason": "do_not_honor"})
        ref = f"PN-{uuid.uuid4().hex[:12].upper()}"
        log(
            "info",
            "authorization approved",
            reference=rid,
            network_ref=ref,
            amount_cents=body.get("amount_cents"),
        )
        return JSONResponse({"status": "approved", "network_ref": ref})

    app = Starlette(
        routes=[Route("/health", health), Route("/authorize", authorize, methods=["POST"])]
    )
    log("info", "started", pid=os.getpid(), latency_ms=latency_ms, failure_rate=failure_rate)
    return app
