"""Secrets: providers that look them up, a resolver that asks them in order, a redactor.

A secret is resolved when a template reads it (``{{ secret("db-password") }}`` or a
``type: secret`` parameter) and never stored. The :class:`Redactor` (see
:mod:`opsbook.engine.redaction`) knows more than what a run resolved: the resolver registers
every value the listable providers can serve in this workspace when it is made and on
:meth:`SecretResolver.refresh`, so every output, log line, journal record and export shows
``***`` instead of any of them, in any of the forms the redactor knows.

Providers, first match wins:

- :class:`EnvSecretProvider` — ``OPSBOOK_SECRET_<NAME>`` (upper case, ``-`` and ``.`` → ``_``);
- :class:`FileSecretProvider` — one file per secret in a directory (trailing newline dropped);
- :class:`~opsbook.engine.keyvault.AzureKeyVaultProvider` — the Azure Key Vault of the
  environment a run targets (``key_vault:`` in its file), added last by
  :meth:`SecretResolver.for_environment`. A vault is not listed: only the values a run fetched
  from it are redacted.

The redactor ignores values shorter than :data:`MIN_REDACT_LENGTH` characters: replacing every
``a`` or ``42`` in the output would destroy it, and such a value is no secret anyway.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from opsbook.engine.keyvault import AzureKeyVaultProvider, vault_url
from opsbook.engine.redaction import MASK, MIN_REDACT_LENGTH, Redactor, SecretHit
from opsbook.errors import SecretError
from opsbook.runbooks.params import check_text

__all__ = [
    "MASK",
    "MIN_REDACT_LENGTH",
    "AzureKeyVaultProvider",
    "EnvSecretProvider",
    "FileSecretProvider",
    "ListableSecretProvider",
    "Redactor",
    "SecretHit",
    "SecretProvider",
    "SecretResolver",
    "env_var_name",
    "refuse_secret_params",
]

_PREFIX = "OPSBOOK_SECRET_"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


def env_var_name(name: str) -> str:
    """``db-password`` → ``OPSBOOK_SECRET_DB_PASSWORD``."""
    return "OPSBOOK_SECRET_" + name.upper().replace("-", "_").replace(".", "_")


@runtime_checkable
class SecretProvider(Protocol):
    """Somewhere secrets live. ``get`` returns None when this provider does not have it."""

    name: str

    def get(self, name: str) -> str | None: ...


@runtime_checkable
class ListableSecretProvider(SecretProvider, Protocol):
    """A provider that can say every value it holds (``{value: where it comes from}``), so the
    redactor knows them before any run reads them."""

    def values(self) -> dict[str, str]: ...


class EnvSecretProvider:
    """Secrets from environment variables ``OPSBOOK_SECRET_<NAME>``."""

    name = "environment"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ  # None: os.environ at the time of the lookup

    def get(self, name: str) -> str | None:
        environ = os.environ if self._environ is None else self._environ
        return environ.get(env_var_name(name))

    def where(self, name: str) -> str:
        return f"environment variable {env_var_name(name)}"

    def values(self) -> dict[str, str]:
        environ = os.environ if self._environ is None else self._environ
        return {
            value: f"environment variable {key}"
            for key, value in environ.items()
            if key.startswith(_PREFIX) and len(key) > len(_PREFIX)
        }


class FileSecretProvider:
    """Secrets from files: ``DIRECTORY/NAME`` holds the value (one trailing newline dropped)."""

    name = "file"

    def __init__(self, directory: Path | str) -> None:
        self.directory = Path(directory)

    def get(self, name: str) -> str | None:
        path = self.directory / name
        try:
            text = path.read_text(encoding="utf-8")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        except (OSError, UnicodeDecodeError) as exc:
            raise SecretError(
                f"secret file {path} cannot be read: {exc}",
                hint=f"make {path} a UTF-8 text file readable by this user",
            ) from exc
        if text.endswith("\r\n"):
            return text[:-2]
        return text[:-1] if text.endswith("\n") else text

    def where(self, name: str) -> str:
        return f"file {self.directory / name}"

    def values(self) -> dict[str, str]:
        """Every readable UTF-8 file in the directory (what ``get`` would serve for it);
        unreadable ones are skipped here and reported when a run asks for them."""
        out: dict[str, str] = {}
        try:
            entries = sorted(self.directory.iterdir())
        except OSError:
            return out
        for path in entries:
            try:
                if not path.is_file():
                    continue
                value = self.get(path.name)
            except (OSError, SecretError):
                continue
            if value is not None:
                out[value] = f"file {path}"
        return out


class SecretResolver:
    """Resolves a secret by name from the first provider that has it, registering the value
    with the redactor before anyone sees it."""

    def __init__(
        self,
        providers: Sequence[SecretProvider],
        redactor: Redactor,
        *,
        key_vault: Callable[[str], SecretProvider] = AzureKeyVaultProvider,
    ) -> None:
        self.providers = tuple(providers)
        self.redactor = redactor
        self._key_vault = key_vault  # vault URL -> provider (tests pass recorded transports)
        self._vaults: dict[str, SecretResolver] = {}
        self.refresh()

    def for_environment(self, environment: Mapping[str, Any], *, origin: str) -> SecretResolver:
        """The resolver for runs on ``environment``: this one, followed by the environment's
        Azure Key Vault when it sets ``key_vault:`` (a :class:`ValidationError` naming
        ``origin``, the environment file, when the setting is not a vault name or URL). One
        provider per vault, kept: its client and token are reused by later runs."""
        setting = environment.get("key_vault")
        if setting is None or setting == "":
            return self
        url = vault_url(setting, origin=origin)
        derived = self._vaults.get(url)
        if derived is None:
            derived = SecretResolver(
                [*self.providers, self._key_vault(url)], self.redactor, key_vault=self._key_vault
            )
            self._vaults[url] = derived
        return derived

    def refresh(self) -> None:
        """Register with the redactor every value the listable providers hold now (cheap when
        nothing changed: the pattern is rebuilt only for new values)."""
        found: dict[str, str] = {}
        for provider in reversed(self.providers):  # the first provider's source wins
            if isinstance(provider, ListableSecretProvider):
                found.update(provider.values())
        if found:
            self.redactor.add_many(found)

    def secret_in(self, text: str) -> SecretHit | None:
        """Which configured secret ``text`` holds (in any form the redactor knows), if any."""
        return self.redactor.find(text)

    def resolve(self, name: str) -> str:
        if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
            raise SecretError(
                f"invalid secret name {name!r}",
                hint="secret names are letters, digits, '-', '_' and '.', e.g. db-password",
            )
        for provider in self.providers:
            value = provider.get(name)
            if value is not None:
                self.redactor.add(value, source=_where(provider, name))
                return value
        looked = "; ".join(_where(p, name) for p in self.providers) or "no secret providers"
        vault = " (or add it to the environment's Key Vault)" if self._has_key_vault() else ""
        raise SecretError(
            f"secret {name!r} not found (looked in: {looked})",
            hint=f"export {env_var_name(name)}=... or put it in a file named {name} in the "
            f"secrets directory{vault}",
        )

    def _has_key_vault(self) -> bool:
        return any(isinstance(p, AzureKeyVaultProvider) for p in self.providers)


def _where(provider: SecretProvider, name: str) -> str:
    where = getattr(provider, "where", None)
    return str(where(name)) if callable(where) else provider.name


def refuse_secret_params(params: Mapping[str, Any], resolver: SecretResolver) -> None:
    """Refuse parameters that hold a configured secret (``ParameterError`` naming the first).

    The engine's own check before it stores a run's parameters, for every way a run starts
    (the CLI and the API check earlier, with their own field names); the resolver looks at its
    providers again first, so a secret added since it was made counts."""
    resolver.refresh()
    for name, value in params.items():
        text = value if isinstance(value, str) else json.dumps(value, default=str)
        check_text(name, text, max_bytes=None, secret_in=resolver.secret_in)
