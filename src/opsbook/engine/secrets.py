"""Secrets: providers that look them up, a resolver that asks them in order, a redactor.

A secret is resolved when a template reads it (``{{ secret("db-password") }}`` or a
``type: secret`` parameter), never stored, and registered with the :class:`Redactor` so every
output, log line, journal record and export shows ``***`` instead.

Providers, first match wins (the CLI uses the first two):

- :class:`EnvSecretProvider` — ``OPSBOOK_SECRET_<NAME>`` (upper case, ``-`` and ``.`` → ``_``);
- :class:`FileSecretProvider` — one file per secret in a directory (trailing newline dropped);
- :class:`AzureKeyVaultProvider` — Azure Key Vault, when ``azure-keyvault-secrets`` is installed.

The redactor ignores values shorter than :data:`MIN_REDACT_LENGTH` characters: replacing every
``a`` or ``42`` in the output would destroy it, and such a value is no secret anyway.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import threading
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from urllib.parse import quote, quote_plus

from opsbook.errors import SecretError

MASK = "***"
#: Values shorter than this are not redacted (see the module docstring).
MIN_REDACT_LENGTH = 3
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,199}")


def env_var_name(name: str) -> str:
    """``db-password`` → ``OPSBOOK_SECRET_DB_PASSWORD``."""
    return "OPSBOOK_SECRET_" + name.upper().replace("-", "_").replace(".", "_")


@runtime_checkable
class SecretProvider(Protocol):
    """Somewhere secrets live. ``get`` returns None when this provider does not have it."""

    name: str

    def get(self, name: str) -> str | None: ...


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


def _forms(value: str) -> set[str]:
    """The value and the ways it is commonly re-encoded in output: JSON, URL, shell, SQL."""
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote_plus(value),
        shlex.quote(value),
        value.replace("'", "'\\''"),
        re.sub(r'([$`"\\])', r"\\\1", value),
        re.sub(r"([$`\\])", r"\\\1", value),
        value.replace("'", "''"),
    }
    return {f for f in forms if len(f) >= MIN_REDACT_LENGTH}


class Redactor:
    """Replaces every registered secret (and its JSON-, URL-, shell- and SQL-escaped forms)
    with ``***``. Thread-safe; ``redact`` is a no-op when nothing is registered."""

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        for v in values:
            self.add(v)

    def add(self, value: str) -> None:
        """Register a secret value (values shorter than MIN_REDACT_LENGTH are ignored)."""
        if not isinstance(value, str) or len(value) < MIN_REDACT_LENGTH:
            return
        if value in self._values:
            return
        with self._lock:
            self._values.add(value)
            forms: set[str] = set()
            for v in self._values:
                forms |= _forms(v)
            # Longest first, so a form that contains another is replaced whole.
            ordered = sorted(forms, key=len, reverse=True)
            self._pattern = re.compile("|".join(re.escape(f) for f in ordered))

    @property
    def active(self) -> bool:
        """Whether any secret is registered (an empty redactor is still a shared object, so it
        deliberately does not define ``__bool__``)."""
        return self._pattern is not None

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def redact_obj(self, obj: Any) -> Any:
        """``redact`` over every string (and mapping key) inside dicts, lists and tuples."""
        if self._pattern is None:
            return obj
        return self._walk(obj)

    def _walk(self, obj: Any) -> Any:
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, Mapping):
            return {
                (self.redact(k) if isinstance(k, str) else k): self._walk(v) for k, v in obj.items()
            }
        if isinstance(obj, list | tuple):
            return [self._walk(v) for v in obj]
        return obj


class SecretResolver:
    """Resolves a secret by name from the first provider that has it, registering the value
    with the redactor before anyone sees it."""

    def __init__(self, providers: Sequence[SecretProvider], redactor: Redactor) -> None:
        self.providers = tuple(providers)
        self.redactor = redactor

    def resolve(self, name: str) -> str:
        if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
            raise SecretError(
                f"invalid secret name {name!r}",
                hint="secret names are letters, digits, '-', '_' and '.', e.g. db-password",
            )
        for provider in self.providers:
            value = provider.get(name)
            if value is not None:
                self.redactor.add(value)
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
