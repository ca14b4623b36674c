"""The web console: server-rendered pages (Jinja2) over the same services as the REST API.

Modules: :mod:`render` (templates, Markdown), :mod:`forms` (form bodies, CSRF),
:mod:`pages` (dashboard, runbooks, executions), :mod:`actions` (forms that change things),
:mod:`admin` (audit, users, tokens, quick reference), :mod:`signin` (passwords and OIDC),
:mod:`oidc` (the OpenID Connect client). Imported only by ``opsbook serve``.
"""
