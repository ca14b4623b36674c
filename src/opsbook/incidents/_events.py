"""Timeline events: one row per thing that happened to an incident, with who and when
(:func:`opsbook.timeline.add_event`, below both incidents and notification delivery)."""

from __future__ import annotations

from opsbook.timeline import add_event as add_event  # noqa: PLC0414 - explicit re-export
