"""Runbook actions of troubleshooting (issue 12): ``troubleshoot.diagnose``."""

from __future__ import annotations

from collections.abc import Mapping

from opsbook.actions._registry import ActionSpec

ACTIONS: Mapping[str, ActionSpec] = {}
