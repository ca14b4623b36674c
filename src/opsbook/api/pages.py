"""The API's one pagination style (issue 18): ``limit`` and an opaque ``cursor`` in, a page
``{"items": [...], "next_cursor": "…" | null}`` out; ``next_cursor`` is passed back as
``cursor`` for the next page and is null on the last one. What a cursor holds (a position in
the list's order) is the server's business: callers never build one."""

from __future__ import annotations

import base64
import json
from typing import Annotated, Any

from fastapi import Query

from opsbook.errors import ValidationError

Cursor = Annotated[
    str | None,
    Query(max_length=300, description="next_cursor of the previous page; leave out for the first"),
]


def encode(*parts: str | int) -> str:
    """A cursor holding ``parts``."""
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode().rstrip("=")


def decode(cursor: str, *types: type) -> list[Any]:
    """The parts of a cursor made by :func:`encode`, of ``types``; a 422 naming ``cursor``
    for anything else."""
    try:
        parts = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        ok = (
            isinstance(parts, list)
            and len(parts) == len(types)
            and all(type(p) is t for p, t in zip(parts, types, strict=True))
        )
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise ValidationError(
            "the cursor is not one this server issued",
            field="cursor",
            hint="use next_cursor from the previous page, or leave it out for the first page",
        )
    return list(parts)


def page(items: list[Any], limit: int, last: Any) -> dict[str, Any]:
    """The answer for ``items`` fetched with ``limit + 1``: at most ``limit`` of them and the
    cursor after the last one (``last(item)`` makes it) when there were more."""
    more = len(items) > limit
    items = items[:limit]
    return {"items": items, "next_cursor": last(items[-1]) if more and items else None}
