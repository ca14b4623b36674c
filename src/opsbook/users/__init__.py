"""Accounts, roles, API tokens, console sessions and permission checks.

Public modules (nothing is imported here, so importing the package stays cheap):

- :mod:`opsbook.users.roles` — roles, what they imply, permissions, token scopes
- :mod:`opsbook.users.accounts` — accounts: create, grant, revoke, disable, authenticate
- :mod:`opsbook.users.tokens` — API tokens: create (shown once), resolve, revoke
- :mod:`opsbook.users.sessions` — console sessions with CSRF tokens and expiry
- :mod:`opsbook.users.access` — ``Principal``, ``require`` (audited 403), ``roles_resolver``
- :mod:`opsbook.users.passwords` — Argon2id hashes
- :mod:`opsbook.users.bootstrap` — the first admin on an empty database
"""
