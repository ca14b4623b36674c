"""``opsbook lint`` on the workspace's own files: settings written in the wrong place.

OB201: acknowledgement, update and paging targets live in ``incident_policy.yaml``
(``severities.<SEV>.ack_target``, ``update_every``, ``page``). The same settings under
``escalation_policy`` in ``contacts.yaml`` are not read, so a change there would silently do
nothing: lint names the line and where the setting belongs. (``escalation_policy.repeat`` and
``resolve_timeout`` are read from contacts.yaml and stay there.)
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from opsbook.runbooks.lint import Finding

if TYPE_CHECKING:
    from opsbook.workspace import Workspace

#: contacts.yaml escalation_policy keys that incident_policy.yaml owns -> where they belong.
MOVED = {
    "ack_timeout": "severities.<SEV>.ack_target in incident_policy.yaml",
    "update_interval": "severities.<SEV>.update_every in incident_policy.yaml",
    "start_level": "severities.<SEV>.page in incident_policy.yaml (the levels paged first)",
    "also_page": "severities.<SEV>.page in incident_policy.yaml (the levels paged first)",
}


def lint_workspace_config(workspace: Workspace) -> list[Finding]:
    """Findings for the workspace's configuration files (none when they are clean)."""
    path = workspace.contacts_path
    try:
        lines = path.read_text(encoding="utf-8").split("\n")
    except OSError:
        return []
    out: list[Finding] = []
    inside = False
    for n, text in enumerate(lines, 1):
        if re.match(r"^escalation_policy\s*:", text):
            inside = True
            continue
        if inside and re.match(r"^\S", text) and not text.startswith("#"):
            inside = False
        m = re.match(r"^\s+([A-Za-z_]+)\s*:", text) if inside else None
        if m and m.group(1) in MOVED:
            key = m.group(1)
            out.append(
                Finding(
                    path,
                    n,
                    text.index(key) + 1,
                    "OB201",
                    f"escalation_policy.{key} is not read from contacts.yaml: it is set by "
                    f"{MOVED[key]}; delete this line and set it there",
                    "warning",
                )
            )
    return out
