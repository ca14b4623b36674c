"""Secrets: providers that look them up, a resolver that asks them in order, a redactor.

A secret is resolved when a template reads it (``{{ secret("db-password") }}`` or a
``type: secret`` parameter) and never stored. The :class:`Redactor` (see
:mod:`opsbook.engine.redaction`) knows more than what a run resolved: the resolver registers
every value the listable providers can serve in this workspace when it is made and on
:meth:`SecretResolver.refresh`, so every output, log line, journal record and export shows
``***`` instead of any of them, in any of the forms the redactor knows.

Providers, first match wins (the CLI uses the first two):

- :class:`EnvSecretProvider` — ``OPSBOOK_SECRET_<NAME>`` (upper case, ``-`` and ``.`` → ``_``);
- :class:`FileSecretProvider` — one file per secret in a directory (trailing newline dropped);
- :class:`AzureKeyVaultProvider` — Azure Key Vault, when ``azure-keyvault-secrets`` is installed.
  A vault is not listed: only the values a run fetched from it are redacted.

The redactor ignores values shorter than :data:`MIN_REDACT_LENGTH` characters: replacing every
``a`` or ``42`` in the output would destroy it, and such a value is no secret anyway.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

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


class AzureKeyVaultProvider:
    """Secrets from an Azure Key Vault (``https://VAULT.vault.azure.net``).

    Needs the ``azure-keyvault-secrets`` and ``azure-identity`` packages and credentials that
    ``DefaultAzureCredential`` finds; without the packages every lookup is a :class:`SecretError`
    saying so (opsbook does not depend on the Azure SDK).
    """

    name = "azure-key-vault"

    def __init__(self, vault_name: str) -> None:
        self.vault_name = vault_name
        self._client: Any = None

    def _secret_client(self) -> Any:
        if self._client is not None:
            return self._client
        try:
            secrets_mod = importlib.import_module("azure.keyvault.secrets")
            identity_mod = importlib.import_module("azure.identity")
        except ImportError as exc:
            raise SecretError(
                f"Azure Key Vault {self.vault_name!r} is not reachable from here: "
                "the azure-keyvault-secrets package is not installed",
                hint="pip install azure-keyvault-secrets azure-identity, or provide the secret "
                "as OPSBOOK_SECRET_<NAME> or a file in the secrets directory",
            ) from exc
        self._client = secrets_mod.SecretClient(
            vault_url=f"https://{self.vault_name}.vault.azure.net",
            credential=identity_mod.DefaultAzureCredential(),
        )
        return self._client

    def get(self, name: str) -> str | None:
        client = self._secret_client()
        try:
            value = client.get_secret(name).value
        except Exception as exc:  # the SDK's own error tree; not-found means "not here"
            if type(exc).__name__ == "ResourceNotFoundError":
                return None
            raise SecretError(
                f"Azure Key Vault {self.vault_name!r} failed for secret {name!r}: {exc}",
                hint="check the vault name, network access and `az login` credentials",
                retryable=True,
            ) from exc
        return None if value is None else str(value)

    def where(self, name: str) -> str:
        return f"Azure Key Vault {self.vault_name} secret {name}"


class SecretResolver:
    """Resolves a secret by name from the first provider that has it, registering the value
    with the redactor before anyone sees it."""

    def __init__(self, providers: Sequence[SecretProvider], redactor: Redactor) -> None:
        self.providers = tuple(providers)
        self.redactor = redactor
        self.refresh()

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
        raise SecretError(
            f"secret {name!r} not found (looked in: {looked})",
            hint=f"export {env_var_name(name)}=... or put it in a file named {name} in the "
            "secrets directory",
        )


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
