"""Secret providers, the resolver and the redactor."""

from __future__ import annotations

import base64
import json
import re
import shlex
import textwrap
from pathlib import Path
from urllib.parse import quote

import pytest

from opsbook.engine.redaction import StreamRedactor
from opsbook.engine.secrets import (
    EnvSecretProvider,
    FileSecretProvider,
    Redactor,
    SecretProvider,
    SecretResolver,
    env_var_name,
)
from opsbook.errors import ParameterError, SecretError
from tests.engine.conftest import Harness


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
    # Every value the providers hold is redacted, resolved or not: the file's shadowed one too.
    assert redactor.redact("from-env file-only-value from-file") == "*** *** ***"


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
    redactor = Redactor(["abc", ""])
    assert not redactor.active and redactor.redact("a cabc") == "a cabc"
    redactor.add("abcd")
    assert redactor.active and redactor.redact("a cabcd") == "a c***"


def test_longer_secrets_win_over_ones_they_contain() -> None:
    redactor = Redactor(["secret", "secret-long-value"])
    assert redactor.redact("x secret-long-value y secret") == "x *** y ***"


CANARY = "Kanarie/7f3a+9c1e-Zq"


def _b64_inside(prefix: bytes, value: str) -> str:
    return base64.b64encode(prefix + value.encode() + b"tail").decode()


@pytest.mark.parametrize(
    ("form", "text"),
    [
        ("raw", CANARY),
        ("base64", base64.b64encode(CANARY.encode()).decode()),
        ("base64 of a line", base64.b64encode(CANARY.encode() + b"\n").decode()),
        ("base64 unpadded", base64.b64encode(CANARY.encode()).decode().rstrip("=")),
        ("base64url", base64.urlsafe_b64encode(CANARY.encode()).decode()),
        ("base64 at offset 1", _b64_inside(b"x", CANARY)),
        ("base64 at offset 2", _b64_inside(b"xy", CANARY)),
        ("base64 at offset 3", _b64_inside(b"xyz", CANARY)),
        ("base64 wrapped", "\n".join(textwrap.wrap(base64.b64encode(CANARY.encode()).decode(), 8))),
        ("hex", CANARY.encode().hex()),
        ("HEX", CANARY.encode().hex().upper()),
        ("hex with colons", ":".join(f"{b:02x}" for b in CANARY.encode())),
        ("url", quote(CANARY, safe="")),
        ("url lower-case escapes", re.sub("%..", lambda m: m[0].lower(), quote(CANARY, safe=""))),
        ("reversed", CANARY[::-1]),
        ("spaced", " ".join(CANARY)),
        ("tabbed and broken", "\t".join(CANARY[:10]) + "\n" + CANARY[10:]),
    ],
)
def test_every_form_of_a_secret_is_redacted(form: str, text: str) -> None:
    redactor = Redactor([CANARY])
    out = redactor.redact(f"before [{text}] after")
    assert "***" in out and out.startswith("before [") and out.endswith("] after"), (form, out)
    # Left: at most the characters a longer base64 stream has around the secret.
    assert len(out.removeprefix("before [").removesuffix("] after").replace("***", "")) <= 12


def test_od_output_is_redacted_across_its_offset_column() -> None:
    out = Redactor([CANARY]).redact(_od(CANARY.encode()))
    assert "***" in out and "4b 61" not in out and "2d 5a 71" not in out, out


def test_text_rich_in_hex_and_base64_is_left_alone() -> None:
    redactor = Redactor([CANARY, "another-secret-value"])
    text = "sha256 " + "0123456789abcdef" * 64 + " token " + base64.b64encode(b"x" * 300).decode()
    assert redactor.redact(text) == text


def test_a_longer_secret_is_not_half_masked_by_a_shorter_one_inside_it() -> None:
    redactor = Redactor(["password", "password-for-the-vault"])
    assert redactor.redact("x password-for-the-vault y password z") == "x *** y *** z"


def test_long_values_are_redacted_as_written() -> None:
    key = "-----BEGIN KEY-----\n" + "A1b2C3d4" * 80 + "\n-----END KEY-----"
    redactor = Redactor([key])
    assert redactor.redact(f"key: {key}.") == "key: ***."
    assert redactor.redact(json.dumps({"k": key})) == '{"k": "***"}'


def test_text_that_is_not_utf8_is_still_redacted() -> None:
    redactor = Redactor([CANARY])
    assert redactor.redact(f"\ud800 {CANARY}") == "\ud800 ***"


def test_find_says_which_secret_and_whether_exactly(tmp_path: Path) -> None:
    (tmp_path / "vogel").write_text("Vogel-file-5e8d21b7\n")
    resolver = SecretResolver(
        [EnvSecretProvider({"OPSBOOK_SECRET_CANARY": CANARY}), FileSecretProvider(tmp_path)],
        Redactor(),
    )
    hit = resolver.secret_in(CANARY)
    assert (
        hit is not None and hit.exact and hit.source == "environment variable OPSBOOK_SECRET_CANARY"
    )
    hit = resolver.secret_in("https://u:" + base64.b64encode(b"Vogel-file-5e8d21b7").decode())
    assert hit is not None and not hit.exact and hit.source == f"file {tmp_path / 'vogel'}"
    assert resolver.secret_in("harmless") is None
    (tmp_path / "later").write_text("added-after-start")
    assert resolver.secret_in("added-after-start") is None
    resolver.refresh()
    assert resolver.secret_in("added-after-start") is not None


def test_unreadable_secret_files_are_skipped_when_listing(tmp_path: Path) -> None:
    (tmp_path / "binary").write_bytes(b"\xff\xfe\x00")
    (tmp_path / "sub").mkdir()
    (tmp_path / "good").write_text("good-secret-value")
    assert FileSecretProvider(tmp_path).values() == {
        "good-secret-value": f"file {tmp_path / 'good'}"
    }
    assert FileSecretProvider(tmp_path / "missing").values() == {}


LEAKING = """\
---
id: leaking
title: Leaking
---

# Leaking

## Go

```yaml procedure
params:
  note: {type: string, default: "-"}
```

### Fail loudly

```sh
printf %s '{{ secret("canary") }}' | base64 >&2; exit 3
```

```expect
stderr == ""
```
"""


async def test_the_engine_refuses_params_holding_a_secret_however_the_run_starts(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSBOOK_SECRET_CANARY", CANARY)
    harness.write("leaking.md", LEAKING)
    with pytest.raises(ParameterError, match="'note' contains the value of a configured"):
        await harness.run("leaking#go", params={"note": f"x{CANARY}x"})
    assert harness.db.query("SELECT id FROM executions") == []


async def test_failure_reasons_are_redacted_in_the_journal_and_the_reports(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPSBOOK_SECRET_CANARY", CANARY)
    harness.write("leaking.md", LEAKING)
    out = await harness.run("leaking#go")
    assert str(out.state) == "failed"
    rows = harness.db.query("SELECT reason FROM step_runs UNION ALL SELECT reason FROM executions")
    text = json.dumps(rows) + json.dumps(harness.db.query("SELECT payload FROM events"))
    assert "***" in text
    b64 = base64.b64encode(CANARY.encode()).decode()[:20]
    assert CANARY not in text and b64 not in text and CANARY not in str(out.reason)


def _od(data: bytes) -> str:
    lines = [
        f"{i:07o} " + " ".join(f"{b:02x}" for b in data[i : i + 16])
        for i in range(0, len(data), 16)
    ]
    return "\n".join(lines) + f"\n{len(data):07o}\n"


@pytest.mark.parametrize("size", [1, 3, 7, 16, 50, 4096])
def test_a_stream_in_pieces_is_redacted_like_the_whole(size: int) -> None:
    redactor = Redactor([CANARY])
    whole = (
        f"start\n{CANARY}\n"
        + _od(CANARY.encode())
        + textwrap.fill(base64.b64encode(CANARY.encode() * 4).decode(), 20)
        + "\n"
        + " ".join(CANARY)
        + "\nthe end\n"
    )
    stream = StreamRedactor(redactor)
    shown = "".join(stream.feed(whole[i : i + size]) for i in range(0, len(whole), size))
    shown += stream.flush()
    assert shown == redactor.redact(whole)
    assert shown.startswith("start\n***\n") and shown.endswith("the end\n")
    assert "4b 61" not in shown and CANARY[:6] not in shown


def test_a_stream_without_secrets_is_passed_through_at_once() -> None:
    stream = StreamRedactor(Redactor())
    assert stream.feed("partial li") == "partial li" and stream.flush() == ""
    held = StreamRedactor(Redactor([CANARY]))
    assert held.feed("short") == ""  # could be the start of a secret
    assert held.flush() == "short"
