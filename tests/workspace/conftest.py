"""A fresh banking workspace from `opsbook init`, and example parameters for its procedures."""

from __future__ import annotations

from pathlib import Path

import pytest

from opsbook.workspace.init import init_workspace

#: Example `--param` values for every procedure that needs some (as typed on the command line).
EXAMPLE_PARAMS: dict[str, dict[str, str]] = {
    "demo#smoke-test": {"service": "payment"},
    "system-monitoring#performance-troubleshooting": {"service": "payment"},
    "incident-response#incident-classification": {"impact": "significant", "urgency": "high"},
    "incident-response#response-team-activation": {
        "severity": "SEV-2",
        "incident": "INC-101",
        "summary": "Payments are slow",
    },
    "incident-response#investigation": {"service": "payment"},
    "incident-response#post-incident-review": {"incident": "INC-101"},
    "deployment-procedures#pre-deployment-checklist": {"service": "payment", "version": "1.5.0"},
    "deployment-procedures#blue-green-deployment": {
        "service": "payment",
        "version": "1.5.0",
        "ticket": "CHG-7",
    },
    "deployment-procedures#release": {
        "service": "payment",
        "version": "1.5.0",
        "ticket": "CHG-6",
        "reason": "new fee schedule",
    },
    "deployment-procedures#database-migration": {"ticket": "CHG-8"},
    "deployment-procedures#emergency-rollback": {"service": "payment", "ticket": "INC-9"},
    "troubleshooting#service-connectivity": {"service": "payment"},
    "troubleshooting#performance-investigation": {"service": "payment"},
    "troubleshooting#restart-service": {"service": "payment"},
    "troubleshooting#roll-back-release": {"service": "payment"},
    "troubleshooting#slow-service": {"service": "payment"},
    "troubleshooting#error-spike": {"service": "payment"},
    "backup-recovery#point-in-time-recovery": {
        "to_time": "2099-01-01T00:00:00Z",
        "ticket": "INC-3",
    },
    "backup-recovery#dr-activation": {"ticket": "INC-4"},
    "security-operations#incident-containment": {
        "service": "notification",
        "ticket": "INC-5",
        "username": "ops-batch",
        "ledger_account": "3",
    },
}


@pytest.fixture
def workspace_root(tmp_path: Path) -> Path:
    root = tmp_path / "bank"
    init_workspace(target=root)
    return root
