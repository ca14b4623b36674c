"""Who is paged and how: the recipients and the channel settings delivery works with.

``opsbook.incidents`` reads them from ``contacts.yaml`` and ``incident_policy.yaml`` (and
re-exports them from :mod:`opsbook.incidents.contacts` and :mod:`opsbook.incidents.policy`);
they live here so that notification delivery never imports the incidents package.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CHANNELS = ("email", "chat", "webhook", "sms")


@dataclass(frozen=True)
class NotifySettings:
    channels: tuple[str, ...] = CHANNELS
    retries: int = 2
    retry_delay: float = 1.0
    timeout: float = 10.0
    smtp_host: str = "localhost"
    smtp_port: int = 25
    smtp_from: str = "opsbook@localhost"
    smtp_starttls: bool = False
    webhook_secret_env: str = "OPSBOOK_WEBHOOK_SECRET"  # noqa: S105 - a variable name
    public_url: str = "http://127.0.0.1:8000"
    sms_url: str = ""


@dataclass(frozen=True)
class Channel:
    kind: str  # email | chat | webhook | sms
    target: str


@dataclass(frozen=True)
class Recipient:
    key: str  # stable id: ``id:`` or the role, slugged
    name: str
    level: str
    channels: tuple[Channel, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "name": self.name,
            "level": self.level,
            "channels": [{"kind": c.kind, "target": c.target} for c in self.channels],
        }
