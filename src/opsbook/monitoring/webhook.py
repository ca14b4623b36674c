"""Checking Alertmanager's webhook payload (version 4) field by field, so a malformed
delivery is refused as a whole with the offending field named (``alerts[3].startsAt``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, NoReturn

from opsbook.errors import ValidationError
from opsbook.monitoring.alerts import IncomingAlert, iso, label_fingerprint

MAX_ALERTS = 1000  # per webhook delivery
_STR_MAX = 4096


def _str_map(value: Any, *, field: str) -> dict[str, str]:
    if not isinstance(value, dict):
        _fail(field, "must be an object of strings", 'e.g. {"alertname": "HighErrorRate"}')
    for k, v in value.items():
        if not isinstance(v, str) or len(v) > _STR_MAX:
            _fail(
                f"{field}.{k}",
                f"must be a string of at most {_STR_MAX} characters",
                "label and annotation values are strings",
            )
    return value


def _alert_map(value: Any, index: int, key: str) -> dict[str, str]:
    """An alert's labels or annotations: checked in one pass when valid (the usual case),
    else by ``_str_map``, which names the offending entry."""
    if type(value) is dict:
        for v in value.values():
            if type(v) is not str or len(v) > _STR_MAX:
                break
        else:
            return value
    return _str_map(value, field=f"alerts[{index}].{key}")


def _norm_time(
    obj: dict[str, Any], key: str, index: int, seen: dict[str, str], *, required: bool
) -> str | None:
    """The alert's time normalised (UTC, seconds, ``Z``), remembered in ``seen`` by its text.
    For ``endsAt`` (not required), Alertmanager's zero time ``0001-01-01T00:00:00Z`` means
    "no end yet": None (remembered as "")."""
    parsed = _time(obj, key, f"alerts[{index}].{key}", required)
    if parsed is None:
        return None
    norm = "" if not required and parsed.year <= 1 else iso(parsed)
    seen[obj[key]] = norm
    return norm or None


def _fail(field: str, message: str, hint: str = "see Alertmanager's webhook payload") -> NoReturn:
    raise ValidationError(f"{field}: {message}", field=field, hint=hint)


def _opt_str(obj: dict[str, Any], key: str, field: str, limit: int, required: bool) -> str | None:
    value = obj.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        _fail(field, "must be a string" + ("" if required else " or null"))
    if len(value) > limit:
        _fail(field, f"longer than {limit} characters")
    return value


def _time(obj: dict[str, Any], key: str, field: str, required: bool) -> datetime | None:
    text = obj.get(key)
    if text is None and not required:
        return None
    if not isinstance(text, str) or len(text) > 64:
        _fail(field, "must be an RFC 3339 time string", "e.g. 2026-11-26T07:00:00Z")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        _fail(field, f"{text[:40]!r} is not an RFC 3339 time", "e.g. 2026-11-26T07:00:00Z")
    if parsed.tzinfo is None or "T" not in text.upper():
        _fail(field, "needs a date, a time and a time zone (RFC 3339)", "e.g. 2026-11-26T07:00:00Z")
    return parsed


def parse_webhook(body: Any) -> tuple[dict[str, Any], list[IncomingAlert]]:
    """Check an Alertmanager webhook (version 4) payload field by field (no half-valid
    delivery is stored); ValidationError names the field, e.g. ``alerts[3].startsAt``."""
    if not isinstance(body, dict):
        _fail("body", "must be a JSON object")
    if body.get("version") != "4":
        _fail("version", f'must be "4" (got {body.get("version")!r})')
    group_key = _opt_str(body, "groupKey", "groupKey", 8192, True)
    receiver = _opt_str(body, "receiver", "receiver", 1024, True)
    if body.get("status") not in ("firing", "resolved"):
        _fail("status", "must be firing or resolved")
    truncated = body.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        _fail("truncatedAlerts", "must be a whole number >= 0")
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        if key in body:
            _str_map(body[key], field=key)
    _opt_str(body, "externalURL", "externalURL", 4096, False)
    raw = body.get("alerts")
    if not isinstance(raw, list):
        _fail("alerts", "must be a list")
    if len(raw) > MAX_ALERTS:
        _fail(
            "alerts",
            f"at most {MAX_ALERTS} alerts per delivery",
            "set max_alerts in the webhook_config",
        )
    out: list[IncomingAlert] = []
    # One delivery repeats its times (a group fires together; every firing alert's endsAt is
    # Alertmanager's zero time), so each distinct text is parsed and normalised once.
    starts_seen: dict[str, str] = {}
    ends_seen: dict[str, str] = {}
    for i, a in enumerate(raw):
        # The checks are written out (no helper calls) for the common, valid case: this loop
        # is most of the event loop's work for a delivery. Anything unusual goes through the
        # helpers, which name the offending field.
        if type(a) is not dict:
            _fail(f"alerts[{i}]", "must be an object")
        status = a.get("status")
        if status != "firing" and status != "resolved":  # noqa: PLR1714 - hot loop
            _fail(f"alerts[{i}].status", "must be firing or resolved")
        labels = _alert_map(a.get("labels"), i, "labels")
        if not labels.get("alertname"):
            _fail(f"alerts[{i}].labels.alertname", "is missing", "every alert has a name")
        annotations = _alert_map(a.get("annotations", {}), i, "annotations")
        text = a.get("startsAt")
        starts = starts_seen.get(text) if type(text) is str else None
        if starts is None:
            starts = _norm_time(a, "startsAt", i, starts_seen, required=True)
        text = a.get("endsAt")
        if text is None:
            ends = None
        elif type(text) is str and text in ends_seen:
            ends = ends_seen[text] or None
        else:
            ends = _norm_time(a, "endsAt", i, ends_seen, required=False)
        url = a.get("generatorURL")
        if url is not None and (type(url) is not str or len(url) > 4096):
            _opt_str(a, "generatorURL", f"alerts[{i}].generatorURL", 4096, False)
        fp = a.get("fingerprint")
        if fp is not None and (type(fp) is not str or not 0 < len(fp) <= 128):
            _fail(f"alerts[{i}].fingerprint", "must be a string of 1 to 128 characters")
        assert starts is not None
        out.append(
            IncomingAlert(
                fp or label_fingerprint(labels), status, labels, annotations, starts, ends
            )
        )
    meta = {"receiver": receiver, "groupKey": (group_key or "")[:512], "truncatedAlerts": truncated}
    return meta, out
