"""Secret providers, the resolver and the redactor."""

from __future__ import annotations

import importlib.util
import json
import shlex
from pathlib import Path
from urllib.parse import quote

import pytest

from opsbook.engine.secrets import (
    AzureKeyVaultProvider,
    EnvSecretProvider,
    FileSecretProvider,
    Redactor,
    SecretProvider,
    SecretResolver,
    env_var_name,
)
from opsbook.errors import SecretError


def test_env_provider_reads_opsbook_secret_variables() -> None:
    provider = EnvSecretProvider({"OPSBOOK_SECRET_DB_PASSWORD": "pw1", "DB_PASSWORD": "no"})
    assert env_var_name("db-password") == "OPSBOOK_SECRET_DB_PASSWORD"
    assert env_var_name("api.token") == "OPSBOOK_SECRET_API_TOKEN"
    assert provider.get("db-password") == "pw1"
    assert provider.get("other") is None
    assert isinstance(provider, SecretProvider)


def test_env_provider_defaults_to_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OPSBOOK_SECRET_FROM_PROCESS", "yes")
    assert EnvSecretProvider().get("from-process") == "yes"


def test_file_provider_strips_one_trailing_newline(tmp_path: Path) -> None:
    (tmp_path / "db-password").write_text("s3cret\n")
    (tmp_path / "crlf").write_bytes(b"v\r\n")
    (tmp_path / "multi").write_text("line1\nline2\n\n")
    provider = FileSecretProvider(tmp_path)
    assert provider.get("db-password") == "s3cret"
    assert provider.get("crlf") == "v"
    assert provider.get("multi") == "line1\nline2\n"
    assert provider.get("missing") is None
    assert FileSecretProvider(tmp_path / "no-such-dir").get("x") is None


def test_the_first_provider_that_has_it_wins_and_is_registered(tmp_path: Path) -> None:
    (tmp_path / "token").write_text("from-file\n")
    (tmp_path / "only-file").write_text("file-only-value")
    redactor = Redactor()
    resolver = SecretResolver(
        [EnvSecretProvider({"OPSBOOK_SECRET_TOKEN": "from-env"}), FileSecretProvider(tmp_path)],
        redactor,
    )
    assert resolver.resolve("token") == "from-env"
    assert resolver.resolve("only-file") == "file-only-value"
    assert redactor.redact("from-env file-only-value from-file") == "*** *** from-file"


def test_a_missing_secret_names_where_it_looked(tmp_path: Path) -> None:
    resolver = SecretResolver([EnvSecretProvider({}), FileSecretProvider(tmp_path)], Redactor())
    with pytest.raises(SecretError) as info:
        resolver.resolve("db-password")
    message = info.value.message
    assert "'db-password' not found" in message
    assert "OPSBOOK_SECRET_DB_PASSWORD" in message and str(tmp_path / "db-password") in message
    assert info.value.hint and "export OPSBOOK_SECRET_DB_PASSWORD=" in info.value.hint


@pytest.mark.parametrize("name", ["../etc/passwd", "a/b", ".hidden", "", "x" * 300, "a..b"])
def test_secret_names_cannot_walk_the_file_system(name: str, tmp_path: Path) -> None:
    resolver = SecretResolver([FileSecretProvider(tmp_path)], Redactor())
    with pytest.raises(SecretError, match="invalid secret name"):
        resolver.resolve(name)


def test_azure_key_vault_needs_its_sdk() -> None:
    if importlib.util.find_spec("azure") is not None:
        pytest.skip("the Azure SDK is installed here")
    provider = AzureKeyVaultProvider("ops-vault")
    with pytest.raises(SecretError, match="not reachable from here") as info:
        provider.get("db-password")
    assert info.value.hint and "azure-keyvault-secrets" in info.value.hint
    resolver = SecretResolver(
        [EnvSecretProvider({"OPSBOOK_SECRET_X": "1234"}), provider], Redactor()
    )
    assert resolver.resolve("x") == "1234"  # providers before it still answer


SECRET = 'p@ss "w0rd"/&it\'s'


def test_the_redactor_hides_the_value_and_its_encoded_forms() -> None:
    redactor = Redactor([SECRET])
    for form in (
        SECRET,
        json.dumps(SECRET)[1:-1],
        quote(SECRET, safe=""),
        shlex.quote(SECRET),
        SECRET.replace("'", "''"),
    ):
        assert redactor.redact(f"before {form} after") == "before *** after", form
    assert redactor.redact(json.dumps({"password": SECRET})) == '{"password": "***"}'


def test_redact_obj_walks_nested_values_and_keys() -> None:
    redactor = Redactor(["hunter2"])
    obj = {
        "stdout": "login with hunter2",
        "json": {"items": [{"token": "hunter2"}, 42, None, True]},
        "hunter2": "as a key",
        "tuple": ("x", "hunter2"),
    }
    assert redactor.redact_obj(obj) == {
        "stdout": "login with ***",
        "json": {"items": [{"token": "***"}, 42, None, True]},
        "***": "as a key",
        "tuple": ["x", "***"],
    }


def test_short_values_are_not_redacted_and_nothing_registered_is_a_no_op() -> None:
    empty = Redactor()
    obj = {"a": ["b"]}
    assert not empty.active and empty.redact("text") == "text" and empty.redact_obj(obj) is obj
    redactor = Redactor(["ab", ""])
    assert not redactor.active and redactor.redact("a cab") == "a cab"
    redactor.add("abc")
    assert redactor.active and redactor.redact("a cabc") == "a c***"


def test_longer_secrets_win_over_ones_they_contain() -> None:
    redactor = Redactor(["secret", "secret-long-value"])
    assert redactor.redact("x secret-long-value y secret") == "x *** y ***"
