"""opsbook.yamlsafe: anchors, aliases and merge keys are refused while composing, nesting,
values and size are bounded, and every error names the file's own line and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from opsbook import yamlsafe
from opsbook.errors import RunbookFormatError, ValidationError

FIX = "write the values out; YAML aliases are not allowed in contacts.yaml"


def bomb(levels: int = 8) -> str:
    """The billion-laughs document: each level is nine aliases of the one before."""
    lines = ["l0: &a0 [" + ",".join(["lol"] * 9) + "]"]
    for i in range(1, levels):
        lines.append(f"l{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


def refused(text: str, **kwargs: Any) -> ValidationError:
    with pytest.raises(ValidationError) as info:
        yamlsafe.load(
            text, source="contacts.yaml", what="the contacts file", kind="contacts.yaml", **kwargs
        )
    return info.value


def test_plain_yaml_loads_with_its_nodes() -> None:
    loaded = yamlsafe.load("a: 1\nb: [x, y]\n", source="f.yaml", what="f", kind="f files")
    assert loaded.data == {"a": 1, "b": ["x", "y"]}
    assert loaded.node is not None and loaded.node.value[1][0].start_mark.line == 1


def test_empty_text_is_none() -> None:
    loaded = yamlsafe.load("# only a comment\n", source="f.yaml", what="f", kind="f files")
    assert loaded.data is None and loaded.node is None


def test_the_bomb_is_refused_at_the_first_anchor() -> None:
    err = refused("owner: ops\n" + bomb())
    assert str(err.location) == "contacts.yaml:2:5"
    assert err.message == "the contacts file: YAML anchors (&a0) and aliases are not allowed"
    assert err.hint == FIX


@pytest.mark.parametrize(
    ("text", "line", "word"),
    [
        ("a: 1\nb: *x\n", 2, "aliases (*x)"),
        ("a: &x 1\n", 1, "anchors (&x)"),
        ("a:\n  <<: {b: 1}\n", 2, "merge keys"),
        ("a:\n  !!merge x: {b: 1}\n", 2, "merge keys"),
    ],
)
def test_aliases_anchors_and_merge_keys_are_refused(text: str, line: int, word: str) -> None:
    err = refused(text)
    assert word in err.message and err.hint == FIX
    assert err.location is not None and err.location.line == line


def test_a_quoted_merge_key_is_an_ordinary_key() -> None:
    loaded = yamlsafe.load('"<<": 1\n', source="f", what="f", kind="f")
    assert loaded.data == {"<<": 1}


def test_nesting_values_and_size_are_bounded() -> None:
    deep = refused("x: " + "[" * 100 + "]" * 100 + "\n")
    assert "nested too deeply" in deep.message and deep.location is not None
    many = refused("x: [" + "1," * 30_000 + "]\n")
    assert "too many values" in many.message
    big = refused("x: " + "y" * (yamlsafe.MAX_CHARS + 1))
    assert "too large" in big.message
    assert refused("x: [1, 2, 3]\n", max_nodes=3).message.endswith("(more than 3)")


def test_positions_are_shifted_to_the_file_and_the_error_class_is_the_callers() -> None:
    with pytest.raises(RunbookFormatError) as info:
        yamlsafe.load(
            "a: 1\nb: *x\n",
            source="rb.md",
            what="front matter",
            kind="runbooks",
            first_line=10,
            first_col=3,
            error=RunbookFormatError,
        )
    assert str(info.value.location) == "rb.md:11:6"


@pytest.mark.parametrize(
    ("text", "where", "message"),
    [
        ("a: [1\n", "f.yaml:2:1", "invalid YAML"),
        ("a: 2026-02-30\n", "f.yaml:1:4", "invalid YAML"),
        ("a: \x07\n", "f.yaml:1:4", "invalid YAML"),
    ],
)
def test_invalid_yaml_names_file_line_and_column(text: str, where: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        yamlsafe.load(text, source="f.yaml", what="f", kind="f")
    assert str(info.value.location) == where and message in info.value.message


class LineDict(dict[str, Any]):
    line: int = 0


def line_dict(data: dict[Any, Any], line: int) -> LineDict:
    out = LineDict({str(k): v for k, v in data.items()})
    out.line = line
    return out


def test_a_mapping_hook_builds_every_mapping_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "env.yaml"
    path.write_text("# c\nservices:\n  - name: a\n    port: 1\n", encoding="utf-8")
    data = yamlsafe.load_file(
        path, what="environment file", kind="environment files", mapping=line_dict
    ).data
    assert isinstance(data, LineDict) and data.line == 2
    item = data["services"][0]
    assert isinstance(item, LineDict) and item.line == 3 and item == {"name": "a", "port": 1}
    plain = yamlsafe.load_file(path, what="environment file", kind="environment files").data
    assert type(plain) is dict
