"""The REST API (``/api/v1``): a thin adapter over :mod:`opsbook.executions` (the services
and read models it shares with the console, the scheduler and the alert-driven runs).

Framework-free modules (safe to import anywhere): :mod:`opsbook.api.catalogue`,
:mod:`opsbook.api.problems`, :mod:`opsbook.api.auth` (Starlette request objects only).
FastAPI modules (imported by ``opsbook serve`` only): :mod:`opsbook.api.router` and the
``routes_*`` modules it includes.
"""
