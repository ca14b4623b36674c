"""Runbook actions that fix what diagnosis finds (issue 12): the remediations of the
troubleshooting runbook's fixing procedures, on the sandbox and (as commands) on Kubernetes."""

from __future__ import annotations

from collections.abc import Mapping

from opsbook.actions._registry import ActionSpec

ACTIONS: Mapping[str, ActionSpec] = {}
