"""Escalation levels and the people in them, from ``contacts.yaml``.

A level may name ``escalate_to`` (the level paged when nobody acknowledges); otherwise the next
level in the file is. A loop in those links is an error with the file and line. People and
levels are paged through their channels: ``email``, ``chat`` (Slack/Teams-compatible incoming
webhook URL), ``webhook`` (generic JSON, HMAC-signed) and ``phone`` (SMS, when a provider is set).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from opsbook.errors import NotFoundError
from opsbook.incidents._yamlfile import YamlDoc, duration, load_yaml
from opsbook.incidents.policy import NotifySettings
from opsbook.notify.model import Channel as Channel  # noqa: PLC0414 - explicit re-export
from opsbook.notify.model import Recipient as Recipient  # noqa: PLC0414 - explicit re-export
from opsbook.workspace import Workspace


@dataclass(frozen=True)
class Level:
    name: str
    title: str
    recipients: tuple[Recipient, ...]
    escalate_to: str | None


@dataclass(frozen=True)
class Contacts:
    levels: tuple[Level, ...]
    repeat: int  # how many times the last level is paged again before escalation stops
    #: severity (SEV1..SEV4) -> seconds: not resolved by then, the next level is paged once
    resolve_timeout: Mapping[str, float] = field(default_factory=dict)

    def level(self, name: str) -> Level:
        for lv in self.levels:
            if lv.name == name:
                return lv
        raise NotFoundError(
            f"unknown escalation level {name!r}",
            hint=f"contacts.yaml defines: {', '.join(lv.name for lv in self.levels)}",
        )

    def next_level(self, name: str) -> str | None:
        lv = self.level(name)
        if lv.escalate_to:
            return lv.escalate_to
        names = [x.name for x in self.levels]
        i = names.index(name)
        return names[i + 1] if i + 1 < len(names) else None

    def recipient(self, key: str) -> Recipient:
        wanted = slug(key)
        for lv in self.levels:
            for r in lv.recipients:
                if r.key == wanted or slug(r.name) == wanted:
                    return r
        known = [r.key for lv in self.levels for r in lv.recipients]
        raise NotFoundError(
            f"unknown contact {key!r}", hint=f"contacts.yaml has: {', '.join(known)}"
        )


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


def load_contacts(workspace: Workspace, notify: NotifySettings) -> Contacts:
    doc = load_yaml(workspace.contacts_path, what="the contacts file")
    return parse_contacts(doc, notify)


def parse_contacts(doc: YamlDoc, notify: NotifySettings) -> Contacts:
    data = doc.data
    raw_levels = data.get("levels") if isinstance(data, dict) else None
    if not isinstance(raw_levels, list) or not raw_levels:
        raise doc.error(
            "contacts.yaml must list escalation levels under levels:",
            "levels",
            hint="see the contacts.yaml `opsbook init` writes",
        )
    levels: list[Level] = []
    for i, raw in enumerate(raw_levels):
        if not isinstance(raw, dict) or not raw.get("name"):
            raise doc.error(f"levels[{i}] needs a name", "levels", i, hint="name: level-1")
        name = str(raw["name"])
        if any(lv.name == name for lv in levels):
            raise doc.error(f"level {name!r} is defined twice", "levels", i, hint="rename one")
        recipients = [
            _recipient(doc, i, j, c, name, notify) for j, c in enumerate(raw.get("contacts") or [])
        ]
        team = _channels(raw, notify, with_email=False)
        if team:
            recipients.append(
                Recipient(f"{name}-channel", f"{raw.get('title', name)} channel", name, team)
            )
        levels.append(
            Level(
                name,
                str(raw.get("title", name)),
                tuple(recipients),
                str(raw["escalate_to"]) if raw.get("escalate_to") else None,
            )
        )
    names = [lv.name for lv in levels]
    for i, lv in enumerate(levels):
        if lv.escalate_to and lv.escalate_to not in names:
            raise doc.error(
                f"level {lv.name}: escalate_to names unknown level {lv.escalate_to!r}",
                "levels",
                i,
                "escalate_to",
                hint=f"use one of {', '.join(names)}",
            )
    contacts = Contacts(tuple(levels), _repeat(doc, data), _resolve_timeout(doc, data))
    _check_loops(doc, contacts)
    return contacts


def _repeat(doc: YamlDoc, data: dict[str, Any]) -> int:
    policy = data.get("escalation_policy") or {}
    value = policy.get("repeat", 0) if isinstance(policy, dict) else 0
    if not isinstance(value, int) or not 0 <= value <= 10:
        raise doc.error(
            "escalation_policy.repeat must be a whole number from 0 to 10",
            "escalation_policy",
            "repeat",
            hint="repeat: 2",
        )
    return value


def _resolve_timeout(doc: YamlDoc, data: dict[str, Any]) -> dict[str, float]:
    """``escalation_policy.resolve_timeout: {SEV-1: 30m, …}`` (keys as ``SEV1``, ``SEV-1``
    or ``1``); severities left out have no resolve target."""
    from opsbook.errors import ValidationError  # noqa: PLC0415
    from opsbook.incidents.model import severity_of  # noqa: PLC0415

    policy = data.get("escalation_policy") or {}
    raw = policy.get("resolve_timeout") if isinstance(policy, dict) else None
    if raw is None:
        return {}
    where = ("escalation_policy", "resolve_timeout")
    if not isinstance(raw, dict):
        raise doc.error(
            "escalation_policy.resolve_timeout must map severities to durations",
            *where,
            hint="resolve_timeout: {SEV-1: 30m, SEV-2: 1h, SEV-3: 4h, SEV-4: 1d}",
        )
    out: dict[str, float] = {}
    for key, value in raw.items():
        try:
            sev = severity_of(str(key))
        except ValidationError as exc:
            raise doc.error(
                f"escalation_policy.resolve_timeout: unknown severity {key!r}",
                *where,
                str(key),
                hint="use SEV-1, SEV-2, SEV-3 or SEV-4",
            ) from exc
        seconds = duration(doc, value, *where, str(key))
        if seconds <= 0:
            raise doc.error(
                f"escalation_policy.resolve_timeout.{key} must be longer than 0",
                *where,
                str(key),
                hint="e.g. 1h",
            )
        out[sev] = seconds
    return out


def _check_loops(doc: YamlDoc, contacts: Contacts) -> None:
    for i, lv in enumerate(contacts.levels):
        seen = [lv.name]
        nxt = contacts.next_level(lv.name)
        while nxt is not None:
            if nxt in seen:
                path = " → ".join([*seen, nxt])
                raise doc.error(
                    f"escalation loop: {path}",
                    "levels",
                    i,
                    "escalate_to" if lv.escalate_to else "name",
                    hint="escalate_to must lead to a last level that escalates nowhere",
                )
            seen.append(nxt)
            nxt = contacts.next_level(nxt)


def _recipient(
    doc: YamlDoc, i: int, j: int, raw: Any, level: str, notify: NotifySettings
) -> Recipient:
    if not isinstance(raw, dict) or not (raw.get("role") or raw.get("name")):
        raise doc.error(
            f"levels[{i}].contacts[{j}] needs a role",
            "levels",
            i,
            "contacts",
            j,
            hint="{role: Operations Lead, email: ops@example.com}",
        )
    name = str(raw.get("name") or raw["role"])
    key = slug(str(raw.get("id") or raw.get("role") or name))
    return Recipient(key, name, level, _channels(raw, notify, with_email=True))


def _channels(
    raw: dict[str, Any], notify: NotifySettings, *, with_email: bool
) -> tuple[Channel, ...]:
    found: dict[str, str] = {}
    if with_email and raw.get("email"):
        found["email"] = str(raw["email"])
    if raw.get("chat"):
        found["chat"] = str(raw["chat"])
    if raw.get("webhook"):
        found["webhook"] = str(raw["webhook"])
    if with_email and raw.get("phone") and notify.sms_url:
        found["sms"] = str(raw["phone"])
    return tuple(Channel(k, found[k]) for k in notify.channels if k in found)
