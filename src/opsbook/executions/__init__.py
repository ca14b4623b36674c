"""Executions as the server sees them: the services the REST API, the console, the scheduler
and alert-driven runs share (issue 18 §7: they used to live in the API adapter).

- :mod:`opsbook.executions.settings`: :class:`ServerSettings`, the settings of ``opsbook serve``.
- :mod:`opsbook.executions.context`: :class:`AppContext`, one per server process (settings,
  workspace, database, engine factory, runbook catalogue, background runs).
- :mod:`opsbook.executions.readcache`: answers reused until the database changes.
- :mod:`opsbook.executions.operations`: start, attest, approve or reject, recover, abort,
  resume; each checks the caller's permission first (audited 403).
- :mod:`opsbook.executions.queries`: read models (paged executions, one execution, audit log,
  dashboard, runbook summaries).
- :mod:`opsbook.executions.local`: running procedures in this process (the CLI's engine wiring,
  also used by domain services that start runs, such as an incident's procedure).

This package imports nothing from the adapters (``api``, ``web``, ``cli``, ``server``);
``tests/test_import_layers.py`` checks it. Errors are :mod:`opsbook.errors` exceptions, which
each adapter maps to its own answer (problem body, console flash, exit code).
"""
