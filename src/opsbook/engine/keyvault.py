"""Azure Key Vault as a secret provider: an environment's ``key_vault:`` setting.

An environment file that says ``key_vault: NAME`` (or a full ``https://`` vault URL) makes the
runs on that environment, and ``opsbook doctor --env`` for it, read secrets from
``https://NAME.vault.azure.net`` after the environment variables and the secrets directory
(see docs/secrets.md). The Azure SDK (``azure-keyvault-secrets``, ``azure-identity``) is
imported only when a vault is first asked, so CLI start-up does not pay for it.

Secret names map to Key Vault names by turning ``_`` and ``.`` into ``-`` (Key Vault allows
letters, digits and dashes, at most 127 characters); a name longer than that cannot map and is
refused by name.

The provider takes ``credential`` and ``transport`` as constructor parameters (the SDK's own
injection points): tests replay recorded Key Vault answers through them; production uses
``DefaultAzureCredential`` and the SDK's HTTP transport.
"""

from __future__ import annotations

import importlib
import re
from typing import Any, Literal

from opsbook.errors import Location, SecretError, ValidationError

__all__ = [
    "PROBE_SECRET",
    "AzureKeyVaultProvider",
    "key_vault_check",
    "key_vault_name",
    "vault_url",
]

_VAULT_NAME = re.compile(r"[A-Za-z][A-Za-z0-9-]{1,22}[A-Za-z0-9]")
_VAULT_URL = re.compile(r"https://[A-Za-z0-9.-]+(:[0-9]{1,5})?/?")
_KV_SECRET = re.compile(r"[A-Za-z0-9-]{1,127}")

#: The secret ``opsbook doctor`` asks for: "not found" proves the vault answered and this
#: identity may read secrets in it (a vault that denies reading answers 403 instead).
PROBE_SECRET = "opsbook-doctor-probe"  # noqa: S105  # a name, never a value

_INSTALL = "pip install azure-keyvault-secrets azure-identity (or opsbook[azure])"


def vault_url(setting: object, *, origin: str, line: int = 0) -> str:
    """The vault URL of a ``key_vault:`` setting: a vault name (3-24 letters, digits and
    dashes) or an ``https://`` URL. ``origin`` (the environment file) and ``line`` are named
    when it is neither."""
    if isinstance(setting, str):
        text = setting.strip()
        if _VAULT_NAME.fullmatch(text) and "--" not in text:
            return f"https://{text.lower()}.vault.azure.net"
        if _VAULT_URL.fullmatch(text):
            return text.rstrip("/")
    raise ValidationError(
        f"key_vault: {setting!r} is neither a Key Vault name nor an https:// vault URL",
        location=Location(origin, line),
        hint="set key_vault to the vault's name (e.g. banking-platform-prod-kv) or its URL "
        "(https://NAME.vault.azure.net), or remove the setting",
    )


def key_vault_name(name: str) -> str:
    """The Key Vault secret name of an opsbook secret name (``db_password`` → ``db-password``);
    a :class:`SecretError` naming it when none exists."""
    mapped = name.replace("_", "-").replace(".", "-")
    if not _KV_SECRET.fullmatch(mapped):
        raise SecretError(
            f"secret {name!r} cannot be named in Azure Key Vault (letters, digits and '-', "
            "at most 127 characters)",
            hint=f"rename the secret, or provide {name!r} as an environment variable or a "
            "file in the secrets directory",
        )
    return mapped


class AzureKeyVaultProvider:
    """Secrets from one Azure Key Vault.

    ``vault`` is a vault name or URL; ``credential`` (an object with ``get_token``) defaults to
    ``azure.identity.DefaultAzureCredential()``; ``transport`` (an ``azure.core`` transport)
    defaults to the SDK's own. ``get`` returns None for a secret the vault does not have and
    raises :class:`SecretError` (naming the vault and the secret, never a value) when the
    vault cannot be asked.
    """

    name = "azure-key-vault"

    def __init__(self, vault: str, *, credential: Any = None, transport: Any = None) -> None:
        self.url = vault_url(vault, origin="key_vault")
        self._credential = credential
        self._transport = transport
        self._client: Any = None

    def _secret_client(self) -> Any:
        if self._client is not None:
            return self._client
        try:
            secrets_mod = importlib.import_module("azure.keyvault.secrets")
            credential = self._credential
            if credential is None:
                credential = importlib.import_module("azure.identity").DefaultAzureCredential()
        except ImportError as exc:
            raise SecretError(
                f"Azure Key Vault {self.url} cannot be asked: the Azure SDK is not installed "
                f"({exc.name} is missing)",
                hint=f"{_INSTALL}, or provide the secret as OPSBOOK_SECRET_<NAME> or a file in "
                "the secrets directory",
            ) from exc
        options: dict[str, Any] = {"retry_total": 2}
        if self._transport is not None:
            options["transport"] = self._transport
        self._client = secrets_mod.SecretClient(
            vault_url=self.url, credential=credential, **options
        )
        return self._client

    def get(self, name: str) -> str | None:
        kv_name = key_vault_name(name)
        client = self._secret_client()
        errors = importlib.import_module("azure.core.exceptions")
        try:
            value = client.get_secret(kv_name).value
        except errors.ResourceNotFoundError:
            return None
        except errors.ClientAuthenticationError as exc:
            if getattr(exc, "status_code", None) is None:  # the credential found no identity
                said = (str(exc.message or "").splitlines() or [type(exc).__name__])[0]
                raise SecretError(
                    f"cannot sign in to Azure Key Vault {self.url} for secret {kv_name!r}: "
                    f"{said[:300]}",
                    hint="sign in with `az login`, a managed identity or AZURE_CLIENT_ID/"
                    "AZURE_TENANT_ID/AZURE_CLIENT_SECRET",
                ) from exc
            raise SecretError(
                f"Azure Key Vault {self.url} refused secret {kv_name!r}: not authorized "
                f"({_status(exc)})",
                hint="sign in (`az login`, a managed identity or AZURE_CLIENT_ID/"
                "AZURE_TENANT_ID/AZURE_CLIENT_SECRET) as an identity allowed to get secrets "
                "in this vault (role Key Vault Secrets User, or an access policy with Get)",
            ) from exc
        except errors.ServiceRequestError as exc:
            raise SecretError(
                f"Azure Key Vault {self.url} is not reachable for secret {kv_name!r}: "
                f"{type(exc).__name__}: {str(exc.message)[:200]}",
                hint="check the vault name, DNS and network access (private endpoint, firewall, "
                "VPN) from this host",
                retryable=True,
            ) from exc
        except errors.HttpResponseError as exc:
            if exc.status_code == 403:
                raise SecretError(
                    f"Azure Key Vault {self.url} refused secret {kv_name!r}: this identity is "
                    f"not authorized ({_status(exc)})",
                    hint="grant it the Key Vault Secrets User role (or an access policy with "
                    "Get) on the vault, or check the vault's network rules",
                ) from exc
            raise SecretError(
                f"Azure Key Vault {self.url} failed for secret {kv_name!r}: {_status(exc)}",
                hint="try again; check the vault in the Azure portal",
                retryable=True,
            ) from exc
        return None if value is None else str(value)

    def where(self, name: str) -> str:
        try:
            return f"Azure Key Vault {self.url} secret {key_vault_name(name)}"
        except SecretError:
            return f"Azure Key Vault {self.url} (no valid Key Vault name for {name!r})"


def _status(exc: Any) -> str:
    """``HTTP 403 Forbidden`` from an azure-core error, without its message (which may quote
    the request)."""
    code = getattr(exc, "status_code", None)
    error = getattr(exc, "error", None)
    detail = getattr(error, "code", None) or getattr(exc, "reason", None) or type(exc).__name__
    return f"HTTP {code} {detail}" if code else str(detail)


def key_vault_check(
    provider: AzureKeyVaultProvider,
) -> tuple[str, Literal["ok", "failed"], str, str]:
    """``opsbook doctor``'s check of a vault: (name, status, detail, hint). Asks for
    :data:`PROBE_SECRET` with the provider's own client; "not found" means the vault answered
    and this identity may read its secrets."""
    try:
        provider.get(PROBE_SECRET)
    except SecretError as exc:
        return ("key vault", "failed", exc.message, exc.hint or "")
    return ("key vault", "ok", f"{provider.url} reachable, secrets readable", "")
