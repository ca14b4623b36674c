"""The Azure Key Vault provider: the real SDK code path (``SecretClient``, its challenge
policy, its error mapping) against recorded Key Vault answers (tests/engine/recordings),
replayed through an ``azure.core`` transport given to the provider, with a fake credential."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from azure.core.credentials import AccessToken
from azure.core.exceptions import ClientAuthenticationError, HttpResponseError
from azure.core.pipeline.transport import HttpTransport
from azure.core.rest import HttpRequest, HttpResponse
from azure.core.utils import CaseInsensitiveDict
from azure.keyvault.secrets._shared import http_challenge_cache

from opsbook.config import Settings
from opsbook.engine._executor import Engine
from opsbook.engine._journal import step_runs
from opsbook.engine.keyvault import AzureKeyVaultProvider, key_vault_check, key_vault_name
from opsbook.engine.secrets import EnvSecretProvider, Redactor, SecretProvider, SecretResolver
from opsbook.engine.states import State
from opsbook.errors import SecretError, ValidationError
from opsbook.runbooks.catalogue import load_catalogue
from opsbook.runbooks.parser import parse_file
from opsbook.workspace import Workspace, load_environment
from opsbook.workspace.doctor import run_checks
from tests.engine.conftest import Harness, make_workspace

RECORDINGS = Path(__file__).parent / "recordings"
VAULT = "https://banking-platform-prod-kv.vault.azure.net"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
DB_PASSWORD = "kv-Pr0d-db-Passw0rd-7f3e9a"  # the recorded secret's value


@pytest.fixture(autouse=True)
def _fresh_challenge_cache() -> Iterator[None]:
    """The SDK keeps each vault host's challenge for the process (as the SDK's own tests do,
    each test starts without one, so the recorded challenge is what the SDK meets first)."""
    http_challenge_cache.clear()
    yield
    http_challenge_cache.clear()


class RecordedResponse(HttpResponse):
    """One recorded Key Vault answer, as azure-core's ``HttpResponse``."""

    def __init__(self, request: HttpRequest, answer: dict[str, Any]) -> None:
        self._request = request
        self._status = int(answer["status"])
        self._headers = CaseInsensitiveDict(answer.get("headers", {}))
        self._content = json.dumps(answer.get("body", {})).encode()

    @property
    def request(self) -> HttpRequest:
        return self._request

    @property
    def status_code(self) -> int:
        return self._status

    @property
    def headers(self) -> Any:
        return self._headers

    @property
    def reason(self) -> str:
        return {200: "OK", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found"}[self._status]

    @property
    def content_type(self) -> str | None:
        return self._headers.get("Content-Type")

    @property
    def is_closed(self) -> bool:
        return True

    @property
    def is_stream_consumed(self) -> bool:
        return True

    @property
    def encoding(self) -> str | None:
        return "utf-8"

    @encoding.setter
    def encoding(self, value: str | None) -> None:
        pass

    @property
    def url(self) -> str:
        return str(self._request.url)

    @property
    def content(self) -> bytes:
        return self._content

    def text(self, encoding: str | None = None) -> str:
        return self._content.decode(encoding or "utf-8")

    def json(self) -> Any:
        return json.loads(self._content)

    def raise_for_status(self) -> None:
        if self._status >= 400:
            raise HttpResponseError(response=self)

    def read(self) -> bytes:
        return self._content

    def iter_raw(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def iter_bytes(self, **kwargs: Any) -> Iterator[bytes]:
        yield self._content

    def close(self) -> None:
        pass

    def __enter__(self) -> RecordedResponse:
        return self

    def __exit__(self, *args: object) -> None:
        pass


class RecordedTransport(HttpTransport[Any, RecordedResponse]):
    """Answers each request with the next recorded exchange; a request that does not match
    the recording fails the test. ``sent`` keeps what the SDK sent (method, URL, headers)."""

    def __init__(self, recording: str) -> None:
        data = json.loads((RECORDINGS / recording).read_text(encoding="utf-8"))
        self.vault = str(data["vault"])
        self.exchanges: list[dict[str, Any]] = list(data["interactions"])
        self.sent: list[tuple[str, str, dict[str, str]]] = []

    def __enter__(self) -> RecordedTransport:
        return self

    def __exit__(self, *args: object) -> None:
        pass

    def open(self) -> None:
        pass

    def close(self) -> None:
        pass

    def send(self, request: Any, **kwargs: Any) -> RecordedResponse:
        self.sent.append((request.method, request.url, dict(request.headers)))
        assert self.exchanges, f"no recording left for {request.method} {request.url}"
        exchange = self.exchanges.pop(0)
        url = urlsplit(request.url)
        assert f"{url.scheme}://{url.netloc}" == self.vault
        assert (request.method, url.path) == (
            exchange["request"]["method"],
            exchange["request"]["path"],
        )
        assert "api-version=" in url.query
        return RecordedResponse(request, exchange["response"])


class FakeCredential:
    """A credential that hands out a fixed token and remembers what it was asked for."""

    def __init__(self) -> None:
        self.asked: list[tuple[tuple[str, ...], str | None]] = []

    def get_token(
        self,
        *scopes: str,
        claims: str | None = None,
        tenant_id: str | None = None,
        **kwargs: Any,
    ) -> AccessToken:
        self.asked.append((scopes, tenant_id))
        return AccessToken("recorded-test-token", int(time.time()) + 3600)


def provider(recording: str) -> tuple[AzureKeyVaultProvider, RecordedTransport, FakeCredential]:
    transport, credential = RecordedTransport(recording), FakeCredential()
    kv = AzureKeyVaultProvider(
        "banking-platform-prod-kv", credential=credential, transport=transport
    )
    return kv, transport, credential


def test_a_secret_is_read_after_the_challenge() -> None:
    kv, transport, credential = provider("keyvault_found.json")
    assert kv.url == VAULT
    assert kv.get("db-password") == DB_PASSWORD
    assert transport.exchanges == []  # both recorded exchanges were used
    (first, second) = transport.sent
    assert "Authorization" not in first[2]  # the challenge: no token on the first request
    assert second[2]["Authorization"] == "Bearer recorded-test-token"
    # the token was asked for the tenant and resource the 401 named
    assert credential.asked == [(("https://vault.azure.net/.default",), TENANT)]


def test_a_secret_the_vault_does_not_have_is_not_there() -> None:
    kv, transport, _ = provider("keyvault_not_found.json")
    assert kv.get("missing-token") is None
    assert transport.exchanges == []


def test_a_forbidden_secret_names_the_vault_and_the_secret() -> None:
    kv, _, _ = provider("keyvault_forbidden.json")
    with pytest.raises(SecretError) as info:
        kv.get("db-password")
    err = info.value
    assert err.exit_code == 2
    assert VAULT in err.message and "'db-password'" in err.message
    assert "not authorized" in err.message and "HTTP 403 Forbidden" in err.message
    assert err.hint and "Key Vault Secrets User" in err.hint


class NoIdentity:
    """A credential that finds no identity, as DefaultAzureCredential does without one."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        raise ClientAuthenticationError(
            message="DefaultAzureCredential failed to retrieve a token from the included "
            "credentials.\nAttempted credentials: EnvironmentCredential: not configured"
        )


def test_no_identity_to_sign_in_with_is_said_plainly() -> None:
    transport = RecordedTransport("keyvault_found.json")
    kv = AzureKeyVaultProvider(VAULT, credential=NoIdentity(), transport=transport)
    with pytest.raises(SecretError) as info:
        kv.get("db-password")
    assert info.value.message == (
        f"cannot sign in to Azure Key Vault {VAULT} for secret 'db-password': "
        "DefaultAzureCredential failed to retrieve a token from the included credentials."
    )
    assert len(transport.sent) == 1  # the challenge only: no token, no second request


def test_names_map_to_key_vault_names_or_are_refused() -> None:
    assert key_vault_name("db-password") == "db-password"
    assert key_vault_name("db_password") == "db-password"
    assert key_vault_name("smtp.relay.password") == "smtp-relay-password"
    with pytest.raises(SecretError, match=r"secret 'x{128}' cannot be named in Azure Key Vault"):
        key_vault_name("x" * 128)


def test_the_vault_setting_is_a_name_or_an_https_url() -> None:
    kv = AzureKeyVaultProvider("https://ops.vault.usgovcloudapi.net/")
    assert kv.url == "https://ops.vault.usgovcloudapi.net"
    for bad in ("no", "has spaces in it", "http://plain.example", "-dash-first", 42):
        with pytest.raises(ValidationError, match="neither a Key Vault name"):
            SecretResolver([], Redactor()).for_environment(
                {"key_vault": bad}, origin="environments/production.yaml"
            )


def test_the_resolver_asks_the_vault_last_and_names_it_when_nothing_has_the_secret() -> None:
    kv, _, _ = provider("keyvault_not_found.json")
    base = SecretResolver(
        [EnvSecretProvider({"OPSBOOK_SECRET_MISSING_TOKEN_X": "from-env"})],
        Redactor(),
        key_vault=lambda url: kv,
    )
    assert base.for_environment({}, origin="sandbox.yaml") is base
    resolver = base.for_environment({"key_vault": "banking-platform-prod-kv"}, origin="p.yaml")
    assert resolver.providers[-1] is kv
    # kept: later runs on the environment share the client (and its token)
    assert base.for_environment({"key_vault": "banking-platform-prod-kv"}, origin="p") is resolver
    assert resolver.resolve("missing-token-x") == "from-env"  # env first, no vault request
    with pytest.raises(SecretError) as info:
        resolver.resolve("missing-token")
    assert f"Azure Key Vault {VAULT} secret missing-token" in info.value.message
    assert info.value.hint and "Key Vault" in info.value.hint


def test_doctor_reports_the_vault_reachable_and_authorized() -> None:
    kv, transport, _ = provider("keyvault_doctor_probe.json")
    assert key_vault_check(kv) == (
        "key vault",
        "ok",
        f"{VAULT} reachable, secrets readable",
        "",
    )
    assert transport.exchanges == []


def test_a_vault_that_cannot_be_reached_is_named() -> None:
    """The SDK's own transport, to a port where nothing listens."""
    kv = AzureKeyVaultProvider("https://127.0.0.1:9", credential=FakeCredential())
    with pytest.raises(SecretError) as info:
        kv.get("db-password")
    assert info.value.message.startswith(
        "Azure Key Vault https://127.0.0.1:9 is not reachable for secret 'db-password': "
        "ServiceRequestError"
    )
    assert info.value.retryable
    name, status, detail, _ = key_vault_check(kv)
    assert (name, status) == ("key vault", "failed") and "not reachable" in detail


def test_a_bad_key_vault_setting_is_refused_at_its_line(tmp_path: Path) -> None:
    """Loading the environment refuses it, so doctor fails its environment check and a run
    never starts."""
    ws = make_workspace(tmp_path / "ws")
    (ws.environments_dir / "prod.yaml").write_text(
        "name: prod\nplatform: local\nkey_vault: not a vault\n", encoding="utf-8"
    )
    with pytest.raises(ValidationError) as info:
        load_environment(ws, "prod")
    assert str(info.value.location) == f"{ws.environments_dir / 'prod.yaml'}:3"
    checks = run_checks(
        workspace=Workspace.load(ws.root), settings=Settings.from_env({}), env_name="prod"
    )
    (env,) = [c for c in checks if c.name == "environment prod"]
    assert env.status == "failed" and "neither a Key Vault name" in env.detail
    assert not [c for c in checks if c.name == "key vault"]


def test_doctor_checks_the_vault_of_the_environment(tmp_path: Path) -> None:
    """Wired from the environment file to the real SDK client: nothing listens there."""
    ws = make_workspace(tmp_path / "ws")
    (ws.environments_dir / "prod.yaml").write_text(
        "name: prod\nplatform: local\nkey_vault: https://127.0.0.1:9\n", encoding="utf-8"
    )
    checks = run_checks(
        workspace=Workspace.load(ws.root), settings=Settings.from_env({}), env_name="prod"
    )
    (kv,) = [c for c in checks if c.name == "key vault"]
    assert kv.status == "failed"
    assert "https://127.0.0.1:9 is not reachable" in kv.detail


def test_without_the_sdk_the_message_says_what_to_install(tmp_path: Path) -> None:
    """In a real child process where the Azure SDK cannot be imported."""
    script = (
        "import sys\n"
        "sys.modules['azure.keyvault.secrets'] = None\n"
        "from opsbook.engine.keyvault import AzureKeyVaultProvider\n"
        "from opsbook.errors import SecretError\n"
        "try:\n"
        "    AzureKeyVaultProvider('ops-vault').get('db-password')\n"
        "except SecretError as exc:\n"
        "    print(exc.message); print(exc.hint)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    ).stdout
    assert "https://ops-vault.vault.azure.net cannot be asked" in out
    assert "pip install azure-keyvault-secrets azure-identity" in out


SH_RUNBOOK = """
---
id: db
title: Database
---

# Database

## Show

```yaml procedure
permissions: [operator]
```

### Print

```sh
echo "password is {{ secret('db-password') }}"
```
"""


async def test_a_run_stores_only_the_redacted_form_of_a_key_vault_secret(
    harness: Harness,
) -> None:
    (harness.ws.environments_dir / "production.yaml").write_text(
        "name: production\nplatform: local\nkey_vault: banking-platform-prod-kv\n",
        encoding="utf-8",
    )
    harness.write("db.md", SH_RUNBOOK)
    kv, transport, _ = provider("keyvault_found.json")

    def vaults(url: str) -> SecretProvider:
        assert url == VAULT
        return kv

    redactor = Redactor()
    engine = Engine(
        db=harness.db,
        workspace=harness.ws,
        resolver=SecretResolver([EnvSecretProvider({})], redactor, key_vault=vaults),
        redactor=redactor,
        load_runbook=parse_file,
    )
    rb, proc = load_catalogue(harness.ws.runbooks_dir).resolve("db#show")
    out = await engine.start(
        runbook=rb,
        procedure=proc,
        environment=load_environment(harness.ws, "production"),
        params={},
        started_by="alice",
    )
    assert out.state is State.SUCCEEDED, out.reason
    assert transport.exchanges == []  # the secret came from the vault
    (run,) = step_runs(db=harness.db, execution_id=out.execution_id)
    assert "password is ***" in json.dumps(run.result)
    harness.db.close()
    stored = b"".join(
        p.read_bytes() for p in harness.ws.state_dir.iterdir() if p.name.startswith("opsbook.db")
    )
    assert DB_PASSWORD.encode() not in stored


async def test_a_secret_the_vault_does_not_have_fails_the_step(harness: Harness) -> None:
    (harness.ws.environments_dir / "production.yaml").write_text(
        "name: production\nplatform: local\nkey_vault: banking-platform-prod-kv\n",
        encoding="utf-8",
    )
    harness.write("db.md", SH_RUNBOOK.replace("db-password", "missing-token"))
    kv, transport, _ = provider("keyvault_not_found.json")
    redactor = Redactor()
    engine = Engine(
        db=harness.db,
        workspace=harness.ws,
        resolver=SecretResolver([EnvSecretProvider({})], redactor, key_vault=lambda url: kv),
        redactor=redactor,
        load_runbook=parse_file,
    )
    rb, proc = load_catalogue(harness.ws.runbooks_dir).resolve("db#show")
    out = await engine.start(
        runbook=rb,
        procedure=proc,
        environment=load_environment(harness.ws, "production"),
        params={},
        started_by="alice",
    )
    assert out.state is State.FAILED
    (run,) = step_runs(db=harness.db, execution_id=out.execution_id)
    assert run.state is State.FAILED
    assert f"Azure Key Vault {VAULT} secret missing-token" in json.dumps(run.result) + str(
        run.reason
    )
    assert transport.exchanges == []
