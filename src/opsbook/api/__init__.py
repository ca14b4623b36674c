"""The REST API (``/api/v1``) and the service layer the console shares with it.

Framework-free modules (safe to import anywhere): :mod:`opsbook.api.settings`,
:mod:`opsbook.api.catalogue`,
:mod:`opsbook.api.context`, :mod:`opsbook.api.operations`, :mod:`opsbook.api.queries`,
:mod:`opsbook.api.problems`, :mod:`opsbook.api.auth` (Starlette request objects only).
FastAPI modules (imported by ``opsbook serve`` only): :mod:`opsbook.api.router` and the
``routes_*`` modules it includes.
"""
