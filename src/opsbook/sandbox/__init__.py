"""The sandbox banking platform: four real services, a real ledger, a supervisor, faults.

What runs (all on 127.0.0.1, all in one process group, see docs/sandbox.md):

- the supervisor (:mod:`~opsbook.sandbox.supervisor`): a detached process that owns everything
  below, a load balancer per service port, the API gateway, and a control port;
- ``account``, ``transaction``, ``payment``, ``notification``: Starlette apps under uvicorn, one
  process per replica (:mod:`~opsbook.sandbox.app`, :mod:`~opsbook.sandbox.routes`);
- the payment network: a simulated external partner over TLS (:mod:`~opsbook.sandbox.network`);
- the ledger: SQLite (WAL) in the data directory, or PostgreSQL (:mod:`~opsbook.sandbox.ledger`).

From the outside: :mod:`~opsbook.sandbox.lifecycle` (up, down, status),
:mod:`~opsbook.sandbox.chaos` (inject, clear: audited), :mod:`~opsbook.sandbox.load` (traffic).
Nothing happens at import time.
"""
