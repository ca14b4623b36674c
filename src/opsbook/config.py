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

from opsbook.errors import UsageError


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

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, object] = {}
        for f in fields(cls):
            raw = env.get(f"OPSBOOK_{f.name.upper()}")
            if raw is None or raw == "":
                continue
            if f.name in ("workspace", "secrets_dir"):
                values[f.name] = Path(raw)
            elif f.name == "output_limit":
                try:
                    values[f.name] = int(raw)
                except ValueError as exc:
                    raise UsageError(
                        f"OPSBOOK_OUTPUT_LIMIT must be a number of bytes, not {raw!r}",
                        field="OPSBOOK_OUTPUT_LIMIT",
                    ) from exc
            else:
                values[f.name] = raw
        return cls(**values)  # type: ignore[arg-type]  # values are typed per field above

    def database_url_for(self, state_dir: Path) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{state_dir / 'opsbook.db'}"

    def secrets_dir_for(self, state_dir: Path) -> Path:
        return self.secrets_dir or state_dir / "secrets"

    @staticmethod
    def describe() -> dict[str, str]:
        return {
            f"OPSBOOK_{f.name.upper()}": str(f.metadata.get("doc", "")) for f in fields(Settings)
        }
