"""``[changes]`` in opsbook.toml: who reviews and approves runbook changes, where a change is
tested, whether production runs need a published runbook, overrides, drills and reminders.

Every key is optional; a workspace without the section gets the defaults below, with the
production gate off (``require_published = false``) so that existing workspaces keep
running. ``opsbook init`` writes ``require_published = true`` for new workspaces.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from opsbook.errors import Location, ValidationError

if TYPE_CHECKING:
    from opsbook.workspace import Workspace

DAY = 86400.0


@dataclass(frozen=True)
class ChangeSettings:
    #: Production-class runs only of published digests (or under an approved override).
    require_published: bool = False
    #: Roles of whoever gives the technical review (roles include lower ones: a manager is
    #: also an engineer, an admin holds every role).
    technical_roles: tuple[str, ...] = ("engineer",)
    #: Roles of whoever gives the operational review (a different person).
    operational_roles: tuple[str, ...] = ("manager", "approver")
    #: Roles that may approve a tested change and approve emergency overrides.
    approve_roles: tuple[str, ...] = ("manager", "approver")
    #: Environments a test run counts on, besides any whose file says ``class: sandbox`` or
    #: ``class: staging`` (production-class environments never count).
    test_environments: tuple[str, ...] = ("sandbox", "staging")
    #: How long an approved emergency override lets production run an unpublished digest.
    override_valid_for: float = 4 * 3600.0
    #: Emergency procedures are drilled this often (the seed: quarterly).
    drill_interval: float = 90 * DAY
    #: Runbook tags that make its reactive procedures emergency procedures.
    emergency_tags: tuple[str, ...] = ("emergency", "incident", "disaster-recovery")
    #: ``opsbook changes due`` lists reviews due within this window (and overdue ones).
    reminder_window: float = 14 * DAY
    #: Who is reminded for an owner named in runbook front matter: ``"owner=contact-key"``
    #: (contact keys as ``opsbook notify test`` takes them). An owner not listed is sent to
    #: the contact whose key is the owner's name, else to ``reminder_contacts``.
    owner_contacts: tuple[str, ...] = (  # the shipped runbooks' owners and contacts
        "operations=operations-lead",
        "platform-engineering=platform-engineering-lead",
        "database-administration=database-administrator",
        "security=security-engineer",
    )
    #: Contacts reminded for owners nobody else is listed for.
    reminder_contacts: tuple[str, ...] = ("operations-lead",)


def _where(ws: Workspace, key: str) -> Location:
    return ws.config_location("changes", key)


def load_settings(ws: Workspace) -> ChangeSettings:
    """The ``[changes]`` section; a wrong value is a ValidationError at its line."""
    from opsbook.durations import DURATION_HINT, duration_seconds  # noqa: PLC0415

    raw: Mapping[str, Any] = ws.config.get("changes", {}) or {}
    if not isinstance(raw, Mapping):
        raise ValidationError(
            "[changes] must be a table",
            location=_where(ws, "changes"),
            hint="see docs/lifecycle.md",
        )
    defaults = ChangeSettings()
    values: dict[str, Any] = {}
    known = set(ChangeSettings.__dataclass_fields__)
    for key, value in raw.items():
        if key not in known:
            raise ValidationError(
                f"[changes] has no setting {key!r}",
                location=_where(ws, key),
                hint=f"settings: {', '.join(sorted(known))}",
            )
        default = getattr(defaults, key)
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise ValidationError(
                    f"[changes] {key} must be true or false",
                    location=_where(ws, key),
                    hint=f"{key} = true",
                )
            values[key] = value
        elif isinstance(default, tuple):
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ValidationError(
                    f"[changes] {key} must be a list of names",
                    location=_where(ws, key),
                    hint=f'{key} = ["{default[0]}"]' if default else f"{key} = []",
                )
            if key == "owner_contacts":
                for pair in value:
                    owner, _, contact = pair.partition("=")
                    if not owner.strip() or not contact.strip():
                        raise ValidationError(
                            f"[changes] owner_contacts: {pair!r} is not owner=contact",
                            location=_where(ws, key),
                            hint='owner_contacts = ["security=security-engineer"]',
                        )
            values[key] = tuple(value)
        else:
            try:
                seconds = duration_seconds(value)
            except ValueError:
                raise ValidationError(
                    f"[changes] {key} = {value!r} is not a duration",
                    location=_where(ws, key),
                    hint=DURATION_HINT,
                ) from None
            if seconds <= 0:
                raise ValidationError(
                    f"[changes] {key} must be longer than zero",
                    location=_where(ws, key),
                    hint=DURATION_HINT,
                )
            values[key] = seconds
    return ChangeSettings(**values)
