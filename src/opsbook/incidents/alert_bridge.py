"""Alerts open incidents: monitoring's escalation :class:`Notifier` backed by incidents.

When monitoring escalates an unacknowledged alert (``alerting.escalation`` in the environment
file), the alert opens an incident through :func:`declare_from_alert`, or joins the open incident
it already opened. From then on the incident's own escalation (``incident_policy.yaml``,
``contacts.yaml``) pages people, acknowledges and re-escalates: monitoring decides *when* an
alert becomes an incident, incidents decide *who* is paged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opsbook.incidents.config import load_config
from opsbook.incidents.service import declare_from_alert

if TYPE_CHECKING:
    from opsbook.db import Database
    from opsbook.monitoring.escalation import Contact
    from opsbook.workspace import Workspace

#: The incident severity for a monitoring severity class, unless the alert carries an
#: ``incident_severity`` label (SEV1..SEV4).
SEVERITY_FOR = {"page": "SEV2", "ticket": "SEV3", "info": "SEV4"}


class IncidentNotifier:
    def __init__(self, *, db: Database, workspace: Workspace) -> None:
        self.db = db
        self.workspace = workspace

    def notify(self, *, alert: Mapping[str, Any], level: Contact, reason: str) -> None:
        import json  # noqa: PLC0415

        from opsbook.monitoring.escalation import severity_class  # noqa: PLC0415

        labels = alert.get("labels") or {}
        if isinstance(labels, str):
            labels = json.loads(labels)
        labels = {str(k): str(v) for k, v in dict(labels).items()}
        severity = (
            labels.get("incident_severity")
            or SEVERITY_FOR[severity_class(str(alert.get("severity", "page")))]
        )
        declare_from_alert(
            db=self.db,
            config=load_config(self.workspace),
            alert_name=str(alert.get("alertname", "alert")),
            service=str(alert.get("service") or labels.get("service") or "unknown"),
            severity=severity,
            labels={**labels, "escalated_to": level.level, "reason": reason},
            summary=str(alert.get("summary") or ""),
            fingerprint=str(alert.get("fingerprint") or "") or None,
            starts_at=str(alert.get("starts_at") or "") or None,
            runbook=str(alert.get("runbook") or "") or None,
        )
