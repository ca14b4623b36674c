"""Templating: variables, errors with lines, secrets, and quoting per block type — values are
pushed through real shells to prove they can never add a command."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from opsbook.engine import templating
from opsbook.engine.runners.sh import ShRunner
from opsbook.engine.runners.text_quoting import BoundQuery
from opsbook.engine.secrets import EnvSecretProvider, Redactor, SecretResolver
from opsbook.engine.templating import TemplateError, render, render_value
from opsbook.errors import ExpressionError, SecretError
from opsbook.runbooks.model import StepKind

from .test_runners_sh import make_input

SH, SQL, HTTP, PROMQL = StepKind.SH, StepKind.SQL, StepKind.HTTP, StepKind.PROMQL


def ctx(**params: Any) -> dict[str, Any]:
    return {
        "params": params,
        "env": {"namespace": "banking", "services": [{"name": "account"}, {"name": "payment"}]},
        "item": None,
        "steps": {"check-pods": {"result": {"json": {"status": "UP"}}, "ok": True}},
        "execution": {"id": "e1", "started_by": "alice"},
    }


def sh(template: str, **params: Any) -> str:
    return render(template, context=ctx(**params), kind=SH, secrets=None)


# -- variables and errors --------------------------------------------------------------------


def test_text_without_markers_is_returned_untouched() -> None:
    body = "kubectl get pods -n x -o json | jq '.items | length'\n"
    assert render(body, context={}, kind=SH, secrets=None) is body


def test_the_documented_variables() -> None:
    template = (
        "{{ env.namespace }} {{ steps['check-pods'].result.json.status }} {{ execution.id }} "
        "{% for s in env.services %}{{ s.name }},{% endfor %}\n"
    )
    assert render(template, context=ctx(), kind=HTTP, secrets=None) == (
        "banking UP e1 account,payment,\n"
    )


def test_values_read_as_text() -> None:
    out = render(
        "{{ params.n }} {{ params.b }} {{ params.none }}|{{ params.obj }}",
        context=ctx(n=3, b=False, none=None, obj={"a": [1]}),
        kind=HTTP,
        secrets=None,
    )
    assert out == '3 false |{"a": [1]}'


def test_an_undefined_name_says_which_and_where() -> None:
    with pytest.raises(TemplateError) as info:
        sh("echo ok\necho {{ params.servce }}", service="x")
    assert info.value.line == 2
    assert "'servce' is undefined" in info.value.message
    assert "line 2 of the block" in info.value.message
    assert "service" in info.value.message  # what there is instead
    assert info.value.hint and "params" in info.value.hint
    with pytest.raises(ExpressionError, match="'nothing' is undefined"):
        sh("echo {{ nothing }}")


def test_a_syntax_error_gives_the_line_in_the_block() -> None:
    with pytest.raises(TemplateError) as info:
        sh("echo 1\necho 2\necho {{ params.x ")
    assert info.value.line == 3 and "syntax error" in info.value.message
    with pytest.raises(TemplateError):
        templating.check("{% for x in y %}")
    templating.check("{{ fine }}")


def test_the_sandbox_refuses_internals_and_mutation() -> None:
    with pytest.raises(TemplateError, match="unsafe"):
        sh("{{ params.x.__class__.__mro__ }}", x="a")
    with pytest.raises(TemplateError):
        sh("{{ env.services.append(1) }}")


def test_compiled_templates_are_cached() -> None:
    template = "echo {{ params.cache_probe }}"
    sh(template, cache_probe=1)
    before = templating._compiled.cache_info().hits
    assert sh(template, cache_probe=2) == "echo 2"
    assert templating._compiled.cache_info().hits == before + 1


# -- secrets -------------------------------------------------------------------------------


def test_secret_resolves_and_is_registered_with_the_redactor() -> None:
    redactor = Redactor()
    resolver = SecretResolver(
        [EnvSecretProvider({"OPSBOOK_SECRET_DB_PASSWORD": "s3cr3t!"})], redactor
    )
    out = render("psql -W {{ secret('db-password') }}", context=ctx(), kind=SH, secrets=resolver)
    assert out == "psql -W 's3cr3t!'"
    assert redactor.redact(out) == "psql -W ***"


def test_a_missing_secret_is_a_secret_error() -> None:
    resolver = SecretResolver([EnvSecretProvider({})], Redactor())
    with pytest.raises(SecretError, match="'nope' not found"):
        render("{{ secret('nope') }}", context=ctx(), kind=SH, secrets=resolver)
    with pytest.raises(ExpressionError, match="not available"):
        render("{{ secret('x') }}", context=ctx(), kind=SH, secrets=None)


# -- action arguments -----------------------------------------------------------------------


def test_render_value_renders_nested_strings_and_keeps_single_values_typed() -> None:
    args = {
        "service": "{{ params.service }}",
        "replicas": "{{ params.replicas }}",
        "note": "scale {{ params.service }} to {{ params.replicas }}",
        "list": ["{{ env.namespace }}", 5, {"deep": "{{- params.replicas -}}"}],
        "plain": "no template; $(not quoted)",
    }
    out = render_value(args, context=ctx(service="pay; rm", replicas=3), secrets=None)
    assert out == {
        "service": "pay; rm",
        "replicas": 3,
        "note": "scale pay; rm to 3",
        "list": ["banking", 5, {"deep": 3}],
        "plain": "no template; $(not quoted)",
    }
    with pytest.raises(TemplateError, match="'missing' is undefined"):
        render_value({"a": "{{ params.missing }}"}, context=ctx(), secrets=None)


# -- sh: quoting per shell context ---------------------------------------------------------

EVIL = "x'\"$(touch pwned)`touch pwned`; touch pwned\n$HOME \\"

CONTEXTS = [
    "printf '%s' {{ params.v }}",
    "printf '%s' \"{{ params.v }}\"",
    "printf '%s' '{{ params.v }}'",
    "printf '%s' pre{{ params.v }}post | cut -c4- | rev | cut -c5- | rev | tr -d '\\n'",
    "printf '%s' \"$(printf '%s' {{ params.v }})\"",
    "printf '%s' \"$(printf '%s' \"{{ params.v }}\")\"",
    "X={{ params.v }}; printf '%s' \"$X\"",
    "# comment {{ params.v }}\nprintf '%s' ok",
    "printf '%s' \"a{{ params.v }}b\" | sed 's/^a//; $ s/b$//'",
]


def _expected(template: str, value: str) -> str:
    if template.startswith("# comment"):
        return "ok"
    return value


def run_sh(body: str, cwd: Path, interpreter: str = "/bin/sh") -> str:
    done = subprocess.run([interpreter, "-c", body], cwd=cwd, capture_output=True, check=False)
    return done.stdout.decode()


@pytest.mark.parametrize("template", CONTEXTS)
@pytest.mark.parametrize("interpreter", ["/bin/sh", "bash"])
def test_a_value_is_data_in_every_context(template: str, interpreter: str, tmp_path: Path) -> None:
    value = "x'\"$(touch pwned)`touch pwned`; touch pwned $HOME \\ ! *"
    if "cut" in template or "sed" in template:
        value = value.replace("\n", "")
    out = run_sh(sh(template, v=value), tmp_path, interpreter)
    assert out == _expected(template, value)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize(
    "payload",
    [
        "$(touch pwned)",
        "`touch pwned`",
        "; touch pwned",
        "x; rm -rf ./victim",
        "'; touch pwned; '",
        '"; touch pwned; "',
        "a\ntouch pwned",
        "a\r\ntouch pwned",
        "$(touch pwned); rm -rf /",
        "\\",
        "' || touch pwned #",
    ],
)
async def test_injection_through_the_sh_runner_adds_no_command(
    payload: str, tmp_path: Path
) -> None:
    (tmp_path / "victim").mkdir()
    for template in ("echo {{ params.p }}", 'echo "{{ params.p }}"', "echo '{{ params.p }}'"):
        body = sh(template, p=payload)
        result = await ShRunner().run(make_input(body, tmp_path))
        assert result.ok, result.fields
        assert result.fields["stdout"] == payload + "\n"
        assert not (tmp_path / "pwned").exists()
        assert (tmp_path / "victim").is_dir()


def test_here_documents(tmp_path: Path) -> None:
    value = "it's $(touch pwned) `x` \\ $HOME\nline two"
    body = sh("cat <<EOF\nvalue: {{ params.v }}\nEOF\n", v=value)
    assert run_sh(body, tmp_path) == f"value: {value}\n"
    body = sh("cat <<-'END'\n\t{{ params.v }}\n\tEND\necho after", v=value)
    assert run_sh(body, tmp_path) == f"{value}\nafter\n"
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(ExpressionError, match="end it early"):
        sh("cat <<EOF\n{{ params.v }}\nEOF\n", v="a\nEOF\ntouch pwned")


def test_command_substitution_inside_a_here_document(tmp_path: Path) -> None:
    value = "a; touch pwned $(touch pwned) `touch pwned` ' \" \\ $HOME"
    template = (
        "cat <<EOF\nx $(printf '%s' {{ params.v }}) y\n{{ params.v }}\nEOF\necho {{ params.v }}"
    )
    out = run_sh(sh(template, v=value), tmp_path, "bash")
    assert out == f"x {value} y\n{value}\n{value}\n"
    assert not (tmp_path / "pwned").exists()


def test_bash_ending_a_here_document_at_eof_paren_is_refused(tmp_path: Path) -> None:
    # bash ends a here-document inside $(…) at a line `EOF)`: a value must not start a line
    # with the terminator, and a template line that does makes later values suspect.
    template = 'X=$(cat <<EOF\n{{ params.v }}\nEOF\n)\necho "$X"'
    with pytest.raises(ExpressionError, match="end it early"):
        sh(template, v="EOF) ; touch pwned ; (")
    with pytest.raises(ExpressionError, match="construct"):
        sh("X=$(cat <<EOF\nEOF)\necho {{ params.v }}", v="a; touch pwned")
    assert run_sh(sh(template, v="fine"), tmp_path, "bash") == "fine\n"


@pytest.mark.parametrize(
    ("template", "value", "fragment"),
    [
        ("echo ${{ params.v }}", "HOME", "after `$`"),
        ('echo "${{ params.v }}"', "(touch pwned)", "after `$`"),
        ("echo \\{{ params.v }}", "x", "backslash"),
        ("echo `echo {{ params.v }}`", "a;b", "backticks"),
        ("echo $(( {{ params.v }} + 1 ))", "a[$(touch pwned)]", "arithmetic"),
        ("(( {{ params.v }} ))", "x", "arithmetic"),
        ("echo ${X:-{{ params.v }}}", "a b", "${"),
        ("echo ${ {{- params.v }}}", "HOME", "name position"),
        ("cat <<{{ params.v }}\nx\n", "EOF", "terminator"),
        ("echo $(case a in a) echo;; esac) {{ params.v }}", "a b", "construct"),
    ],
)
def test_contexts_that_cannot_be_quoted_are_refused(
    template: str, value: str, fragment: str
) -> None:
    with pytest.raises(ExpressionError) as info:
        sh(template, v=value)
    assert fragment in info.value.message
    assert info.value.hint


def test_plain_words_are_allowed_in_restricted_contexts(tmp_path: Path) -> None:
    assert run_sh(sh("echo `echo {{ params.v }}`", v="payment-1.2"), tmp_path) == "payment-1.2\n"
    assert run_sh(sh("echo $(( {{ params.n }} + 1 ))", n=41), tmp_path) == "42\n"
    assert run_sh(sh("echo ${UNSET_X:-{{ params.v }}}", v="dflt"), tmp_path) == "dflt\n"


def test_a_nul_in_a_value_is_refused() -> None:
    with pytest.raises(ExpressionError, match="NUL"):
        sh("echo {{ params.v }}", v="a\x00b")


FRAGMENTS = st.sampled_from(
    [
        *("$(touch pwned)", "`touch pwned`", "'", '"', "\\", "\n", "EOF", ";", "$HOME", "${x}"),
        *("!", "#", " ", "\t", "*", "~", "&", "|", "<", ">", "(", ")", "{", "}", "\r", "é", "\\'"),
    ]
)
VALUES = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=["Cs"])) | (
    st.lists(FRAGMENTS | st.text(max_size=3).filter(lambda s: "\x00" not in s), max_size=8).map(
        "".join
    )
)
PROPERTY_TEMPLATES = [
    "printf '%s' {{ params.v }}",
    "printf '%s' \"{{ params.v }}\"",
    "printf '%s' '{{ params.v }}'",
    "printf '%s' \"$(printf '%s' {{ params.v }})\"",
    "cat <<EOF\n{{ params.v }}\nEOF\n",
    "cat <<'EOF'\n{{ params.v }}\nEOF\n",
    "X=$(cat <<EOF\n{{ params.v }}\nEOF\n)\nprintf '%s' \"$X\"",
]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(value=VALUES)
@example(value=EVIL)
@example(value="\nEOF\n")
def test_any_value_comes_out_exactly_as_given(value: str, tmp_path: Path) -> None:
    for template in PROPERTY_TEMPLATES:
        try:
            body = sh(template, v=value)
        except ExpressionError as exc:
            assert "here-document" in exc.message  # only a terminator line may be refused
            continue
        out = run_sh(body, tmp_path, "bash")
        expected = value + "\n" if template.startswith("cat") else value
        if template.startswith("X="):
            expected = value
        if "$(" in template:  # command substitution drops trailing newlines
            expected = expected.rstrip("\n")
        assert out == expected.replace("\r\n", "\r\n"), (template, body)
        assert not (tmp_path / "pwned").exists()


# -- other block types ---------------------------------------------------------------------


def test_sql_values_are_bind_parameters() -> None:
    def q(template: str, **params: Any) -> tuple[str, tuple[Any, ...]]:
        out = render(template, context=ctx(**params), kind=SQL, secrets=None)
        assert isinstance(out, BoundQuery)
        return str(out), out.params

    assert q("SELECT * FROM t WHERE name = {{ params.v }}", v="it's") == (
        "SELECT * FROM t WHERE name = ?",
        ("it's",),
    )
    assert q("WHERE name = '{{ params.v }}'", v="x' OR '1'='1") == (
        "WHERE name = (?)",
        ("x' OR '1'='1",),
    )
    assert q("LIMIT {{ params.n }} OFFSET {{ params.m }}", n=5, m=-1) == (
        "LIMIT ? OFFSET ?",
        (5, -1),
    )
    assert q("WHERE a = {{ params.b }} AND c IS {{ params.z }}", b=True, z=None) == (
        "WHERE a = ? AND c IS ?",
        (True, None),
    )
    assert q("WHERE j = {{ params.j }}", j={"a": [1]}) == ("WHERE j = ?", ('{"a": [1]}',))
    assert q("WHERE x LIKE '%{{ params.v }}%'", v="50%") == (
        "WHERE x LIKE ('%' || ? || '%')",
        ("50%",),
    )
    assert q("WHERE x = E'\\n{{ params.v }}'", v=7) == ("WHERE x = (E'\\n' || ?)", ("7",))
    assert q("WHERE a = {{ params.v }}", v="\\' OR 1=1 --") == ("WHERE a = ?", ("\\' OR 1=1 --",))
    # Names cannot be parameters: a quoted identifier is escaped; a comment stays one line.
    assert q('SELECT "{{ params.col }}" FROM t', col='a"b') == ('SELECT "a""b" FROM t', ())
    assert q("SELECT 1 -- {{ params.v }}\n", v="x\nDROP TABLE t") == (
        "SELECT 1 -- x DROP TABLE t\n",
        (),
    )
    with pytest.raises(ExpressionError, match="directly against a name"):
        q("SELECT E{{ params.v }}", v="a")
    with pytest.raises(ExpressionError, match="inside a X'…' literal"):
        q("SELECT X'{{ params.v }}'", v="00")


def test_http_head_values_cannot_add_headers_and_json_strings_are_escaped() -> None:
    template = (
        "POST {{ env.url }}/flush\nX-Reason: {{ params.r }}\nContent-Type: application/json\n\n"
        '{"reason": "{{ params.r }}", "n": {{ params.n }}}\n'
    )
    context = {**ctx(r='say "hi"\\', n=2), "env": {"url": "http://127.0.0.1:1"}}
    with pytest.raises(ExpressionError, match="line break"):
        render(
            template,
            context={**context, "params": {"r": "a\nX-Admin: 1", "n": 1}},
            kind=HTTP,
            secrets=None,
        )
    out = render(template, context=context, kind=HTTP, secrets=None)
    assert out.splitlines()[1] == 'X-Reason: say "hi"\\'
    assert out.splitlines()[4] == '{"reason": "say \\"hi\\"\\\\", "n": 2}'
    # Templates that are not requests (env values, cwd) are plain text.
    assert render("{{ params.r }}", context=ctx(r="a\nb"), kind=HTTP, secrets=None) == "a\nb"


def test_promql_values_are_escaped_in_strings_and_plain_outside() -> None:
    def p(template: str, **params: Any) -> str:
        return render(template, context=ctx(**params), kind=PROMQL, secrets=None)

    assert p('up{ns="{{ params.ns }}"}[{{ params.w }}]', ns='a"} or vector(1) #', w="5m") == (
        'up{ns="a\\"} or vector(1) #"}[5m]'
    )
    with pytest.raises(ExpressionError, match="outside a string"):
        p("rate(x[{{ params.w }}]) or vector(1)", w="5m]) or vector(1")
