"""Everything incident response reads from the workspace, loaded and checked together."""

from __future__ import annotations

from dataclasses import dataclass

from opsbook.incidents.contacts import Contacts, load_contacts
from opsbook.incidents.policy import POLICY_FILE, Policy, load_policy
from opsbook.notify.keys import webhook_key, workspace_key
from opsbook.workspace import Workspace


@dataclass(frozen=True)
class IncidentConfig:
    policy: Policy
    contacts: Contacts
    key: bytes  # signs acknowledgement links
    webhook_key: bytes  # signs webhooks (OPSBOOK_WEBHOOK_SECRET or the workspace key)


_CACHE: dict[tuple[object, ...], IncidentConfig] = {}


def _fingerprint(workspace: Workspace) -> tuple[object, ...]:
    """What the config is read from: both files' sizes and modification times, and the
    environment the webhook key may come from."""
    import os  # noqa: PLC0415

    stamps: list[object] = [str(workspace.root)]
    for path in (workspace.root / POLICY_FILE, workspace.contacts_path):
        try:
            st = path.stat()
            stamps.append((st.st_mtime_ns, st.st_size))
        except OSError:
            stamps.append(None)
    stamps.append(tuple(sorted((k, v) for k, v in os.environ.items() if k.startswith("OPSBOOK_"))))
    return tuple(stamps)


def load_config(workspace: Workspace) -> IncidentConfig:
    """``incident_policy.yaml`` + ``contacts.yaml``; errors name the file and line. Every level
    a severity pages must exist in contacts.yaml. Read again only when a file changed: the
    server asks every second and on every request, and parsing costs milliseconds."""
    key = _fingerprint(workspace)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    config = _load(workspace)
    if len(_CACHE) > 32:
        _CACHE.clear()
    _CACHE[key] = config
    return config


def _load(workspace: Workspace) -> IncidentConfig:
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
