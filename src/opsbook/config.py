"""The one settings object. Built at start-up by the adapter (CLI, server) and passed in.

Every field can be set from the environment with the ``OPSBOOK_`` prefix
(``OPSBOOK_DATABASE_URL``, ``OPSBOOK_USER``, …). A plain frozen dataclass in the manner of
Starlette's ``Config`` rather than pydantic-settings: importing pydantic-settings costs ~200 ms,
more than the whole CLI start-up budget (docs/adr/0003-settings-without-pydantic.md).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from opsbook.errors import UsageError

#: Largest value of one procedure parameter, in bytes, unless configured.
DEFAULT_PARAM_MAX_BYTES = 65_536
#: Largest request body the server reads (API and console), in bytes, unless configured.
DEFAULT_MAX_BODY_BYTES = 1_048_576


def _doc(text: str) -> dict[str, str]:
    return {"doc": text}


@dataclass(frozen=True)
class Settings:
    workspace: Path | None = field(
        default=None,
        metadata=_doc("Workspace root; default: found upward from the current directory"),
    )
    database_url: str | None = field(
        default=None,
        metadata=_doc(
            "URL of the state database; default: SQLite at .opsbook/opsbook.db in the workspace."
            " postgresql://USER@HOST:PORT/DB selects PostgreSQL (psycopg 3)."
        ),
    )
    user: str | None = field(
        default=None, metadata=_doc("Who is acting; default: the OS user (overridden by --as)")
    )
    secrets_dir: Path | None = field(
        default=None,
        metadata=_doc("Directory of file secrets (one file per secret); default: .opsbook/secrets"),
    )
    output_limit: int = field(
        default=1_048_576, metadata=_doc("Bytes of stdout/stderr kept per step and stream")
    )
    param_max_bytes: int | None = field(
        default=None,
        metadata=_doc(
            "Largest value of one procedure parameter, in bytes; default: [limits]"
            " param_max_bytes in opsbook.toml, else 65536"
        ),
    )
    max_body_bytes: int | None = field(
        default=None,
        metadata=_doc(
            "Largest request body opsbook serve reads (API and console forms), in bytes;"
            " default: [limits] max_body_bytes in opsbook.toml, else 1048576 (1 MiB)"
        ),
    )
    audit_witness: Path | None = field(
        default=None,
        metadata=_doc(
            "Append-only file of signed audit checkpoints; default:"
            " .opsbook-audit/witness.jsonl beside .opsbook/ (put it on another host or mount)"
        ),
    )
    audit_key_file: Path | None = field(
        default=None,
        metadata=_doc(
            "Ed25519 key (PEM, mode 0600) that signs audit checkpoints, created on first use,"
            " unless the secret audit-signing-key holds it; default: beside the witness"
        ),
    )
    broker_url: str | None = field(
        default=None,
        metadata=_doc(
            "Broker of the execution workers (scale-out, docs/scale-out.md):"
            " redis://HOST:6379/0 or amqp://USER@HOST//; unset: every run is driven in the"
            " process that starts it. Timings: OPSBOOK_WORKER_* (opsbook.cluster.settings)"
        ),
    )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"OPSBOOK_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if f.name in ("workspace", "secrets_dir", "audit_witness", "audit_key_file"):
                values[f.name] = Path(raw)
            elif f.name in ("output_limit", "param_max_bytes", "max_body_bytes"):
                name = f"OPSBOOK_{f.name.upper()}"
                try:
                    values[f.name] = int(raw)
                except ValueError as exc:
                    raise UsageError(
                        f"{name} must be a number of bytes, not {raw!r}", field=name
                    ) from exc
            elif f.name == "broker_url":
                values[f.name] = _broker_url(raw)
            else:
                values[f.name] = raw
        return cls(**values)  # type: ignore[arg-type]  # values are typed per field above

    def database_url_for(self, state_dir: Path) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{state_dir / 'opsbook.db'}"

    def secrets_dir_for(self, state_dir: Path) -> Path:
        return self.secrets_dir or state_dir / "secrets"

    def param_max_bytes_for(self, workspace_config: Mapping[str, Any]) -> int:
        """The per-parameter size limit: this setting, else ``[limits] param_max_bytes`` in
        the workspace's opsbook.toml, else 64 KiB."""
        if self.param_max_bytes is not None:
            return self.param_max_bytes
        return _workspace_limit(workspace_config, "param_max_bytes", DEFAULT_PARAM_MAX_BYTES)

    def max_body_bytes_for(self, workspace_config: Mapping[str, Any]) -> int:
        """The request body limit of ``opsbook serve``: this setting, else ``[limits]
        max_body_bytes`` in the workspace's opsbook.toml, else 1 MiB."""
        if self.max_body_bytes is not None:
            if self.max_body_bytes < 1:
                raise UsageError(
                    f"OPSBOOK_MAX_BODY_BYTES must be a positive number of bytes, not "
                    f"{self.max_body_bytes}",
                    field="OPSBOOK_MAX_BODY_BYTES",
                )
            return self.max_body_bytes
        return _workspace_limit(workspace_config, "max_body_bytes", DEFAULT_MAX_BODY_BYTES)

    @staticmethod
    def describe() -> dict[str, str]:
        return {
            f"OPSBOOK_{f.name.upper()}": str(f.metadata.get("doc", "")) for f in fields(Settings)
        }


def _broker_url(raw: str) -> str | None:
    """``OPSBOOK_BROKER_URL`` checked by the cluster's own settings (one parser): a redis://
    or amqp:// URL, else a :class:`UsageError` naming the variable."""
    from opsbook.cluster.settings import ClusterSettings  # noqa: PLC0415 - only when set

    return ClusterSettings.from_env({"OPSBOOK_BROKER_URL": raw}).broker_url


def _workspace_limit(workspace_config: Mapping[str, Any], key: str, default: int) -> int:
    """``[limits] <key>`` of opsbook.toml: a positive number of bytes, or ``default``."""
    limits = workspace_config.get("limits", {})
    value = limits.get(key) if isinstance(limits, Mapping) else None
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UsageError(
            f"[limits] {key} in opsbook.toml must be a positive number of bytes, not {value!r}",
            field=f"limits.{key}",
            hint=f"write e.g. {key} = {default}, or remove it for the default",
        )
    return value
