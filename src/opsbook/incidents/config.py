"""Everything incident response reads from the workspace, loaded and checked together."""

from __future__ import annotations

from dataclasses import dataclass

from opsbook.incidents.contacts import Contacts, load_contacts
from opsbook.incidents.policy import Policy, load_policy
from opsbook.notify.keys import webhook_key, workspace_key
from opsbook.workspace import Workspace


@dataclass(frozen=True)
class IncidentConfig:
    policy: Policy
    contacts: Contacts
    key: bytes  # signs acknowledgement links
    webhook_key: bytes  # signs webhooks (OPSBOOK_WEBHOOK_SECRET or the workspace key)


def load_config(workspace: Workspace) -> IncidentConfig:
    """``incident_policy.yaml`` + ``contacts.yaml``; errors name the file and line. Every level
    a severity pages must exist in contacts.yaml."""
    policy = load_policy(workspace)
    contacts = load_contacts(workspace, policy.notify)
    names = {lv.name for lv in contacts.levels}
    for sev in policy.severities.values():
        for level in sev.page:
            if level not in names:
                from opsbook.errors import Location, ValidationError  # noqa: PLC0415

                raise ValidationError(
                    f"severities.{sev.name}.page names level {level!r}, which contacts.yaml"
                    " does not define",
                    location=Location(str(policy.path)),
                    hint=f"use one of: {', '.join(sorted(names))}",
                )
    state = workspace.state_dir
    return IncidentConfig(
        policy=policy,
        contacts=contacts,
        key=workspace_key(state),
        webhook_key=webhook_key(env_var=policy.notify.webhook_secret_env, state_dir=state),
    )
