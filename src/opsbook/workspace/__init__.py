"""The workspace: the runbook directory a team versions in git.

Layout::

    opsbook.toml            workspace settings and (until real accounts) users -> roles
    runbooks/*.md           runbooks in format v1 (README.md is the index, not a runbook)
    environments/NAME.yaml  environments: platform, cluster, databases, services, ...
    contacts.yaml           escalation levels and external support
    .opsbook/               state: opsbook.db (SQLite, WAL), sandbox data, logs (git-ignored)
"""

from opsbook.workspace._workspace import (
    Environment,
    Workspace,
    find_workspace,
    load_environment,
)

__all__ = ["Environment", "Workspace", "find_workspace", "load_environment"]
