"""The small real API of each service.

- account: ``POST /accounts``, ``GET /accounts``, ``GET /accounts/{id}``, ``POST /login``
- transaction: ``POST /transfers``, ``GET /ledger/check``
- payment: ``POST /payments`` (calls the external payment network over TLS)
- notification: ``GET /notifications/queue``; a worker sends the outbox
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from opsbook.sandbox.checks import network_client
from opsbook.sandbox.ledger import InvalidRequest, LedgerError
from opsbook.sandbox.runtime import Runtime

DEMO_PASSWORD = "sandbox"  # every demo customer's password  # noqa: S105 - a sandbox fixture

Handler = Callable[[Request, Runtime], Awaitable[Response]]


def _rid(request: Request) -> str:
    return str(request.scope.get("state", {}).get("request_id", ""))


def endpoint(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """Map ledger errors to their HTTP status with a log line."""

    async def run(request: Request) -> Response:
        rt: Runtime = request.app.state.rt
        try:
            return await handler(request, rt)
        except LedgerError as exc:
            level = "error" if exc.status >= 500 else "warning"
            rt.log(level, exc.kind, request_id=_rid(request), path=request.url.path, error=str(exc))
            return JSONResponse({"error": exc.kind, "message": str(exc)}, exc.status)

    return run


async def _json(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object")
    return body


def _int(body: dict[str, Any], key: str, default: int | None = None) -> int:
    value = body.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{key} must be an integer")
    return value


# -- account ---------------------------------------------------------------------------------


async def open_account(request: Request, rt: Runtime) -> Response:
    body = await _json(request)
    account = await rt.db(
        rt.ledger.open_account,
        owner=str(body.get("owner", "")),
        currency=str(body.get("currency", "USD")),
        initial_cents=_int(body, "initial_cents", 0),
        request_id=_rid(request),
    )
    rt.metrics.accounts.inc()
    return JSONResponse(account, 201)


def _token_use(request: Request, rt: Runtime) -> Response | None:
    """A bearer token ``sbx.<account>.<secret>`` is logged as used, with whether its source
    address is new for it (the platform identities in iam.json know each token's addresses)."""
    auth = request.headers.get("authorization", "")
    if not auth.startswith("Bearer sbx."):
        return None
    token_id = auth[len("Bearer sbx.") :].split(".", 1)[0]
    source = request.headers.get("x-forwarded-for") or (
        request.client.host if request.client else "unknown"
    )
    known = rt.tokens.lookup(token_id)
    rt.log(
        "info" if known and source in known[1] else "warning",
        "auth.token_used",
        category="security",
        user=known[0] if known else token_id,
        token_id=token_id,
        src_ip=source,
        new_address=not (known and source in known[1]),
        known_token=known is not None,
        request_id=_rid(request),
    )
    if known is not None and known[2]:  # the account is disabled (revoked access)
        return JSONResponse({"error": "token_revoked", "account": known[0]}, 401)
    return None


async def get_account(request: Request, rt: Runtime) -> Response:
    refused = _token_use(request, rt)
    if refused is not None:
        return refused
    account = await rt.db(rt.ledger.account, int(request.path_params["id"]))
    hold = rt.containment.frozen(int(account["id"]))
    return JSONResponse({**account, "frozen": hold is not None, "hold": hold})


async def list_accounts(request: Request, rt: Runtime) -> Response:
    refused = _token_use(request, rt)
    if refused is not None:
        return refused
    limit = min(int(request.query_params.get("limit", "100")), 1000)
    return JSONResponse({"accounts": await rt.db(rt.ledger.customer_accounts, limit=limit)})


async def login(request: Request, rt: Runtime) -> Response:
    body = await _json(request)
    user, password = str(body.get("username", "")), str(body.get("password", ""))
    source = request.headers.get("x-forwarded-for") or (
        request.client.host if request.client else "unknown"
    )
    if hmac.compare_digest(password.encode(), DEMO_PASSWORD.encode()):
        rt.metrics.logins.labels("success").inc()
        rt.log("info", "auth.login_succeeded", category="security", user=user, src_ip=source)
        return JSONResponse({"user": user, "token": f"sandbox-{int(time.time())}"})
    rt.metrics.logins.labels("failure").inc()
    rt.metrics.login_failures.inc()
    rt.log(
        "warning",
        "auth.login_failed",
        category="security",
        user=user,
        src_ip=source,
        reason="bad password",
        request_id=_rid(request),
    )
    return JSONResponse({"error": "invalid_credentials"}, 401)


# -- transaction -----------------------------------------------------------------------------


async def transfer(request: Request, rt: Runtime) -> Response:
    body = await _json(request)
    rt.containment.refuse_frozen(_int(body, "from_account"), _int(body, "to_account"))
    try:
        done = await rt.db(
            rt.ledger.transfer,
            from_account=_int(body, "from_account"),
            to_account=_int(body, "to_account"),
            amount_cents=_int(body, "amount_cents"),
            reference=body.get("reference"),
            request_id=_rid(request),
        )
    except LedgerError as exc:
        rt.metrics.transfers.labels("rejected" if exc.status < 500 else "failed").inc()
        raise
    rt.metrics.transfers.labels("completed").inc()
    return JSONResponse(done, 201)


async def ledger_check(request: Request, rt: Runtime) -> Response:
    report = await rt.db(rt.ledger.check, timeout=5.0)
    rt.metrics.ledger_ok.set(1 if report.ok else 0)
    return JSONResponse(report.as_dict(), 200 if report.ok else 500)


# -- payment ---------------------------------------------------------------------------------


async def _authorize(rt: Runtime, *, amount: int, payee: str, rid: str) -> httpx.Response:
    """POST /authorize; once more on a fresh connection when a kept-alive one was closed by
    the network before it answered (a network process stopping, as in a certificate
    rotation, closes its idle connections: the request never reached it)."""
    body = {"amount_cents": amount, "payee": payee, "reference": rid}
    try:
        return await network_client(rt).post("/authorize", json=body, headers={"x-request-id": rid})
    except httpx.RemoteProtocolError:
        return await network_client(rt).post(
            "/authorize", json=body, headers={"x-request-id": rid, "connection": "close"}
        )


async def pay(request: Request, rt: Runtime) -> Response:
    body = await _json(request)
    account_id, amount = _int(body, "account_id"), _int(body, "amount_cents")
    payee, rid = str(body.get("payee") or "merchant"), _rid(request)
    if amount <= 0:
        raise InvalidRequest("amount_cents must be positive")
    rt.containment.refuse_frozen(account_id)
    account = await rt.db(rt.ledger.account, account_id)
    if account["kind"] == "customer" and int(account["balance_cents"]) < amount:
        await rt.db(
            rt.ledger.payment_failed,
            account_id=account_id,
            amount_cents=amount,
            payee=payee,
            error="insufficient funds",
            request_id=rid,
        )
        rt.metrics.payments.labels("failed").inc()
        return JSONResponse({"status": "failed", "error": "insufficient_funds"}, 422)
    started = time.perf_counter()
    outcome, error, status = "approved", "", 0
    try:
        reply = await _authorize(rt, amount=amount, payee=payee, rid=rid)
        data = reply.json()
        if reply.status_code != 200 or data.get("status") != "approved":
            outcome, error, status = "declined", str(data.get("reason", "declined")), 402
    except httpx.TimeoutException:
        outcome, error, status = "timeout", "payment network timed out after 2s", 504
    except (httpx.HTTPError, ValueError) as exc:
        outcome, error, status = "error", f"payment network error: {exc}", 502
    rt.metrics.network.labels(outcome).observe(time.perf_counter() - started)
    if outcome != "approved":
        rt.log(
            "error" if status >= 500 else "warning",
            "payment failed",
            request_id=rid,
            account_id=account_id,
            amount_cents=amount,
            network_outcome=outcome,
            error=error,
        )
        await rt.db(
            rt.ledger.payment_failed,
            account_id=account_id,
            amount_cents=amount,
            payee=payee,
            error=error,
            request_id=rid,
        )
        rt.metrics.payments.labels("failed").inc()
        return JSONResponse({"status": "failed", "error": error}, status)
    try:
        done = await rt.db(
            rt.ledger.pay,
            account_id=account_id,
            amount_cents=amount,
            payee=payee,
            network_ref=str(data.get("network_ref")),
            request_id=rid,
        )
    except LedgerError:
        rt.metrics.payments.labels("failed").inc()
        raise
    rt.metrics.payments.labels("succeeded").inc()
    return JSONResponse(done, 201)


# -- notification ----------------------------------------------------------------------------


async def queue(request: Request, rt: Runtime) -> Response:
    depth = await rt.db(rt.ledger.outbox_depth)
    rt.metrics.queue.set(depth)
    return JSONResponse({"pending": depth})


async def _outbox_worker(rt: Runtime) -> None:
    failing = False
    while True:
        await asyncio.sleep(0.2)
        try:
            sent = await rt.db(rt.ledger.claim_outbox, limit=200, timeout=1.0)
        except LedgerError as exc:
            if not failing:
                rt.log("error", "outbox worker cannot reach the database", error=str(exc))
            failing = True
            continue
        failing = False
        if sent:
            rt.metrics.sent.inc(len(sent))
            rt.log(
                "info",
                "notifications sent",
                count=len(sent),
                first_id=sent[0]["id"],
                last_id=sent[-1]["id"],
            )


def routes_for(service: str) -> list[Route]:
    table: dict[str, list[tuple[str, Handler, list[str]]]] = {
        "account": [
            ("/accounts", open_account, ["POST"]),
            ("/accounts", list_accounts, ["GET"]),
            ("/accounts/{id:int}", get_account, ["GET"]),
            ("/login", login, ["POST"]),
        ],
        "transaction": [
            ("/transfers", transfer, ["POST"]),
            ("/ledger/check", ledger_check, ["GET"]),
        ],
        "payment": [("/payments", pay, ["POST"])],
        "notification": [("/notifications/queue", queue, ["GET"])],
    }
    return [Route(p, endpoint(h), methods=m) for p, h, m in table[service]]


def background(rt: Runtime) -> list[Coroutine[Any, Any, None]]:
    return [_outbox_worker(rt)] if rt.settings.service == "notification" else []


async def shutdown(rt: Runtime) -> None:
    for client in [rt.extra.get("network"), *rt.extra.get("old_clients", [])]:
        if client is not None:
            await client.aclose()
    rt.executor.shutdown(wait=False, cancel_futures=True)
