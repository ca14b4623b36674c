"""Settings of ``opsbook serve``: bind address, TLS, sessions, lockout, single sign-on.

Built once at start-up from the environment (``OPSBOOK_SERVE_*``, ``OPSBOOK_OIDC_*``) and the
command line, then passed in; nothing reads the environment later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from opsbook.errors import UsageError


def _doc(text: str, *, secret: bool = False) -> dict[str, Any]:
    return {"doc": text, "secret": secret}


@dataclass(frozen=True)
class ServerSettings:
    host: str = field(default="127.0.0.1", metadata=_doc("Address to listen on"))
    port: int = field(default=8080, metadata=_doc("TCP port"))
    tls_certfile: str | None = field(default=None, metadata=_doc("PEM certificate for HTTPS"))
    tls_keyfile: str | None = field(default=None, metadata=_doc("PEM private key for HTTPS"))
    public_url: str | None = field(
        default=None,
        metadata=_doc(
            "URL people reach the console at (behind a reverse proxy); https:// makes the"
            " session cookie Secure and is the base of the single sign-on redirect URL"
        ),
    )
    forwarded_allow_ips: str = field(
        default="127.0.0.1",
        metadata=_doc("Proxies trusted for X-Forwarded-For/-Proto (comma-separated)"),
    )
    session_hours: float = field(default=12.0, metadata=_doc("Absolute console session lifetime"))
    idle_minutes: float = field(default=60.0, metadata=_doc("Sign out after this long unused"))
    lockout_failures: int = field(
        default=5, metadata=_doc("Failed sign-ins in a row that lock an account")
    )
    lockout_minutes: float = field(default=15.0, metadata=_doc("How long a lockout lasts"))
    schedules: bool = field(
        default=True, metadata=_doc("Start procedures with a schedule: at their times")
    )
    oidc_issuer: str | None = field(
        default=None,
        metadata=_doc(
            "OpenID Connect issuer URL (Entra ID: https://login.microsoftonline.com/TENANT/v2.0)"
        ),
    )
    oidc_client_id: str | None = field(default=None, metadata=_doc("OIDC client (app) id"))
    oidc_client_secret: str | None = field(
        default=None, metadata=_doc("OIDC client secret", secret=True)
    )
    oidc_scopes: str = field(default="openid profile email", metadata=_doc("OIDC scopes"))
    oidc_username_claim: str = field(
        default="preferred_username", metadata=_doc("ID token claim that names the account")
    )
    oidc_roles_claim: str = field(
        default="roles", metadata=_doc("ID token claim with roles or groups (a list)")
    )
    oidc_role_map: str = field(
        default="",
        metadata=_doc(
            "claim value=opsbook role pairs, comma-separated (e.g. Ops.L1=operator);"
            " values that are already role names map to themselves"
        ),
    )
    oidc_default_roles: str = field(
        default="viewer", metadata=_doc("Roles of a new single sign-on account without roles")
    )
    oidc_label: str = field(default="single sign-on", metadata=_doc("Sign-in button text"))

    @property
    def oidc_enabled(self) -> bool:
        return bool(self.oidc_issuer and self.oidc_client_id)

    @property
    def secure_cookies(self) -> bool:
        return bool(self.tls_certfile) or (self.public_url or "").startswith("https://")

    def role_map(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for pair in self.oidc_role_map.split(","):
            key, sep, value = pair.partition("=")
            if sep and key.strip() and value.strip():
                out[key.strip()] = value.strip()
        return out

    def with_overrides(self, **values: Any) -> ServerSettings:
        return replace(self, **{k: v for k, v in values.items() if v is not None})

    @staticmethod
    def env_name(name: str) -> str:
        return "OPSBOOK_" + ("" if name.startswith("oidc_") else "SERVE_") + name.upper()

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ServerSettings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(cls.env_name(f.name))
            if raw is None or raw == "":
                continue
            default = f.default
            try:
                if isinstance(default, bool):
                    if raw.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                        raise ValueError(raw)
                    values[f.name] = raw.lower() in ("1", "true", "yes", "on")
                elif isinstance(default, int):
                    values[f.name] = int(raw)
                elif isinstance(default, float):
                    values[f.name] = float(raw)
                else:
                    values[f.name] = raw
            except ValueError as exc:
                raise UsageError(
                    f"{cls.env_name(f.name)}={raw!r} is not valid",
                    field=cls.env_name(f.name),
                    hint=f"expected {type(default).__name__}: {f.metadata.get('doc', '')}",
                ) from exc
        return cls(**values)

    @staticmethod
    def describe() -> dict[str, str]:
        return {
            ServerSettings.env_name(f.name): str(f.metadata.get("doc", ""))
            for f in fields(ServerSettings)
        }
