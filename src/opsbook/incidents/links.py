"""Signed acknowledgement links: ``/incidents/INC-7/ack?t=TOKEN`` in every page.

The token is ``base64url(json{i, w, e})`` + ``.`` + hex HMAC-SHA256 over that text with the
workspace key: the incident, who it was sent to and when it expires. Nothing is stored; a
forged or expired token is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from opsbook.errors import PermissionDenied

LINK_TTL = 7 * 86400.0


@dataclass(frozen=True)
class AckClaim:
    incident_id: int
    who: str  # the contact key the page went to
    expires: int


def make_token(*, key: bytes, incident_id: int, who: str, now: float | None = None) -> str:
    body = json.dumps(
        {"i": incident_id, "w": who, "e": int((now or time.time()) + LINK_TTL)},
        separators=(",", ":"),
    )
    text = base64.urlsafe_b64encode(body.encode()).decode().rstrip("=")
    mac = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    return f"{text}.{mac}"


def ack_url(*, base: str, key: bytes, incident_id: int, who: str) -> str:
    token = make_token(key=key, incident_id=incident_id, who=who)
    return f"{base.rstrip('/')}/incidents/INC-{incident_id}/ack?t={token}"


def verify_token(*, key: bytes, token: str, incident_id: int, now: float | None = None) -> AckClaim:
    bad = PermissionDenied(
        "this acknowledgement link is not valid",
        hint="use the newest page's link, or acknowledge with `opsbook incidents ack`",
    )
    text, _, mac = token.partition(".")
    want = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
    if not mac or not hmac.compare_digest(want, mac):
        raise bad
    try:
        data = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        claim = AckClaim(int(data["i"]), str(data["w"]), int(data["e"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise bad from exc
    if claim.incident_id != incident_id:
        raise bad
    if claim.expires < (now or time.time()):
        raise PermissionDenied(
            "this acknowledgement link has expired",
            hint="acknowledge with `opsbook incidents ack` or in the console",
        )
    return claim
