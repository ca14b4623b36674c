"""The Platform interface and its adapters: ``local`` (the sandbox) and ``kubernetes``.

``platform_for(...)`` picks the adapter named by the environment's ``platform`` key; runbooks
reach it through the ``platform.*`` actions (:mod:`opsbook.actions.platform`).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from opsbook.errors import ValidationError
from opsbook.platforms.base import Platform

__all__ = ["PLATFORMS", "Platform", "platform_for"]

PLATFORMS = ("local", "kubernetes")


def platform_for(
    *,
    environment: Mapping[str, Any],
    workspace: Path,
    env_name: str,
    actor: str = "operator",
    dry_run: bool = False,
) -> Platform:
    """The adapter for ``environment["platform"]`` (default ``local``)."""
    kind = str(environment.get("platform") or "local")
    if kind == "local":
        from opsbook.platforms.local import LocalPlatform  # noqa: PLC0415

        return LocalPlatform(
            environment=environment,
            workspace=workspace,
            env_name=env_name,
            actor=actor,
            dry_run=dry_run,
        )
    if kind == "kubernetes":
        from opsbook.platforms.kubernetes import KubernetesPlatform  # noqa: PLC0415

        return KubernetesPlatform(environment=environment, dry_run=dry_run)
    raise ValidationError(
        f"unknown platform {kind!r} in environment {env_name!r}",
        field="platform",
        hint=f"use one of: {', '.join(PLATFORMS)}",
    )
