"""Built-in ``http.*`` actions: ``http.wait_until``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Any

from opsbook.actions._registry import ActionContext, ActionSpec, action
from opsbook.actions.core import number_arg
from opsbook.errors import StepError, ValidationError

_MISSING = object()


def _field(data: Any, path: str) -> Any:
    """``data`` at a dotted path (``status``, ``components.db.status``, ``items.0.name``)."""
    for part in path.split("."):
        if isinstance(data, Mapping) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return _MISSING
    return data


def _check_args(args: Mapping[str, Any]) -> tuple[str, int, float, float]:
    url = args.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValidationError(
            f"http.wait_until: url must be an http:// or https:// URL, not {url!r}",
            field="url",
            hint="e.g. http.wait_until: {url: '{{ env.payment_url }}/actuator/health'}",
        )
    status = args.get("status", 200)
    if isinstance(status, bool) or not isinstance(status, int | str) or not str(status).isdigit():
        raise ValidationError(
            f"http.wait_until: status must be an HTTP status code, not {status!r}",
            field="status",
            hint="e.g. status: 200",
        )
    timeout = number_arg(args, "timeout", action_name="http.wait_until", default=30)
    interval = number_arg(args, "interval", action_name="http.wait_until", default=0.5)
    return url, int(status), timeout, max(interval, 0.01)


@action(
    "http.wait_until",
    description="Poll a URL until it answers with the expected status (and JSON field value).",
    args={
        "url": "the URL to GET",
        "status": "the status to wait for (default 200)",
        "timeout": "give up after this many seconds (default 30)",
        "interval": "seconds between attempts (default 0.5)",
        "json_field": "optional dotted path into the JSON body, e.g. status",
        "equals": "the value json_field must have (default: any true value)",
    },
    required=("url",),
    supports_dry_run=True,
)
async def wait_until(ctx: ActionContext, args: Mapping[str, Any]) -> Any:
    import httpx  # noqa: PLC0415 - deferred: import cost

    from opsbook.engine.runners.http import describe_error, ssl_context  # noqa: PLC0415

    url, want, timeout, interval = _check_args(args)
    json_field = args.get("json_field")
    if ctx.dry_run:
        return {"would_poll": url, "status": want, "timeout": timeout}
    started = time.monotonic()
    deadline = started + timeout
    attempts = 0
    last = "no answer yet"
    async with httpx.AsyncClient(
        verify=ssl_context(), timeout=max(min(timeout, 10.0), 0.1)
    ) as client:
        while True:
            attempts += 1
            status = 0
            try:
                response = await client.get(url)
                status = response.status_code
                last = f"HTTP {status}"
                if status == want and _matches(response, json_field, args):
                    return {
                        "attempts": attempts,
                        "status": status,
                        "elapsed": round(time.monotonic() - started, 3),
                    }
                if status == want and json_field:
                    last = f"HTTP {status} but {json_field} = {_shown(response, str(json_field))}"
            except httpx.HTTPError as exc:
                last = describe_error(exc, url)
            ctx.progress(f"attempt {attempts}: {last}")
            if time.monotonic() + interval > deadline:
                raise StepError(
                    f"{url} did not answer {want}"
                    + (f" with {json_field} = {args.get('equals', 'true')!r}" if json_field else "")
                    + f" within {timeout:g}s ({attempts} attempts; last: {last})",
                    hint="check the service is starting (logs, events) or raise the timeout",
                    retryable=True,
                )
            await asyncio.sleep(interval)


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError:
        return _MISSING


def _matches(response: Any, json_field: Any, args: Mapping[str, Any]) -> bool:
    if not json_field:
        return True
    value = _field(_json(response), str(json_field))
    if value is _MISSING:
        return False
    if "equals" in args:
        return bool(value == args["equals"] or str(value) == str(args["equals"]))
    return bool(value)


def _shown(response: Any, json_field: str) -> str:
    value = _field(_json(response), json_field)
    return "missing" if value is _MISSING else repr(value)


ACTIONS: Mapping[str, ActionSpec] = {spec.name: spec for spec in (wait_until,)}
