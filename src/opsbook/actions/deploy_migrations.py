"""Runbook actions of deployments (issue 11)."""

from __future__ import annotations

from collections.abc import Mapping

from opsbook.actions._registry import ActionSpec

ACTIONS: Mapping[str, ActionSpec] = {}
