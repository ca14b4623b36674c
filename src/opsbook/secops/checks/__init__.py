"""The security checks of the catalogue (:mod:`opsbook.secops.catalogue`), run concurrently
against one environment: each returns an :class:`Outcome` (pass, fail with one failure per
subject, error, or skipped when it does not apply), and :func:`run_checks` turns the failures
into finding candidates carrying the check's severity and PCI DSS requirements."""

from __future__ import annotations

from opsbook.secops.checks._base import CheckContext, Failure, Outcome
from opsbook.secops.checks._run import CheckRun, run_checks

__all__ = ["CheckContext", "CheckRun", "Failure", "Outcome", "run_checks"]
