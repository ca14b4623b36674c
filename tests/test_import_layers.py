"""Packages import only downward (issue 18 §7): the import circles and upward imports that were
untangled stay untangled. Every import counts, including ones inside functions and under
``TYPE_CHECKING`` (a hidden import is still a dependency)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "opsbook"


def imports_of(relative: str) -> set[str]:
    """Every module a source file imports, as dotted names (``from a import b`` gives a and
    a.b)."""
    path = SRC / relative
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = "opsbook." + ".".join(Path(relative).with_suffix("").parts[:-1])
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                parts = parts[: len(parts) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return found


def test_notify_imports_neither_incidents_nor_the_cli() -> None:
    for path in sorted((SRC / "notify").glob("*.py")):
        bad = {
            name
            for name in imports_of(str(path.relative_to(SRC)))
            if name.startswith(("opsbook.incidents", "opsbook.cli", "opsbook.api", "opsbook.web"))
        }
        assert not bad, f"{path.name} imports {sorted(bad)}"


@pytest.mark.parametrize(
    ("module", "must_not_import"),
    [
        ("sandbox/ops.py", ("opsbook.sandbox.supervisor", "opsbook.sandbox.chaos_ops")),
        ("sandbox/chaos_ops.py", ("opsbook.sandbox.supervisor", "opsbook.sandbox.commands")),
        ("sandbox/fault_book.py", ("opsbook.sandbox.ops", "opsbook.sandbox.chaos_ops")),
        ("monitoring/probe_specs.py", ("opsbook.monitoring.config",)),
        ("monitoring/slo_specs.py", ("opsbook.monitoring.config",)),
        ("monitoring/specs.py", ("opsbook.monitoring.config",)),
        ("incidents/overdue.py", ("opsbook.incidents.escalation",)),
        ("incidents/paging.py", ("opsbook.incidents.escalation", "opsbook.incidents.overdue")),
        ("timeline.py", ("opsbook.incidents", "opsbook.notify")),
    ],
)
def test_lower_modules_do_not_import_upper_ones(module: str, must_not_import: tuple[str]) -> None:
    bad = {n for n in imports_of(module) if n.startswith(must_not_import)}
    assert not bad, f"{module} imports {sorted(bad)}"


# The engine's step modules sit below the executor and call back into it through a protocol
# (engine/_protocol.py): the executor <-> _branching <-> _waiting <-> _recovery circle of
# issue 18 §7 must not come back, not even as a TYPE_CHECKING import.
ENGINE_LAYERS = [
    "engine/_protocol.py",
    "engine/_failure.py",
    "engine/_waiting.py",
    "engine/_recovery.py",
    "engine/_branching.py",
    "engine/_running.py",
    "engine/_executor.py",
]


@pytest.mark.parametrize("position", range(len(ENGINE_LAYERS)))
def test_engine_modules_import_only_downward(position: int) -> None:
    module = ENGINE_LAYERS[position]
    above = tuple(
        "opsbook." + name.removesuffix(".py").replace("/", ".")
        for name in ENGINE_LAYERS[position + 1 :]
    )
    bad = {n for n in imports_of(module) if n in above}
    assert not bad, f"{module} imports {sorted(bad)}, which sit above it"


def engine_graph() -> dict[str, set[str]]:
    """Which engine modules each engine module imports (the package ``__init__`` left out:
    it only names the public ones, lazily)."""
    modules = {
        "opsbook." + str(p.relative_to(SRC).with_suffix("")).replace("/", "."): p
        for p in (SRC / "engine").rglob("*.py")
        if p.name != "__init__.py"
    }
    return {
        name: {n for n in imports_of(str(path.relative_to(SRC))) if n in modules and n != name}
        for name, path in modules.items()
    }


def test_the_engine_package_has_no_import_circle() -> None:
    graph = engine_graph()
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            circle = [*path[path.index(name) :], name]
            raise AssertionError("import circle: " + " -> ".join(circle))
        if name in done:
            return
        for imported in sorted(graph[name]):
            visit(imported, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])


# Domain packages sit below the adapters (issue 18 §7): nothing in them imports the REST API,
# the console, the CLI or the server, not even inside a function or under TYPE_CHECKING. The
# execution services the adapters share live in opsbook.executions for that reason.
DOMAINS = (
    "engine",
    "monitoring",
    "incidents",
    "notify",
    "executions",
    "users",
    "audit",
    "runbooks",
    "sandbox",
    "platforms",
    "actions",
    "workspace",
    "db",
    "cluster",
)
ADAPTERS = ("opsbook.api", "opsbook.cli", "opsbook.server", "opsbook.web")

# Upward imports not untangled yet, each with what it imports (the list may only shrink; the
# last one, incidents/runs.py using the CLI's engine factory, moved to opsbook.executions.local).
KNOWN_UPWARD: dict[str, set[str]] = {}


def _is_adapter(name: str) -> bool:
    return any(name == a or name.startswith(a + ".") for a in ADAPTERS)


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_packages_never_import_an_adapter(domain: str) -> None:
    files = sorted((SRC / domain).rglob("*.py"))
    assert files, f"no package src/opsbook/{domain}"
    found = {}
    for path in files:
        module = str(path.relative_to(SRC))
        bad = {n for n in imports_of(module) if _is_adapter(n)}
        if bad != KNOWN_UPWARD.get(module, set()):
            found[module] = sorted(bad)
    assert not found, f"domain modules import adapters (api, cli, server, web): {found}"


def test_the_known_upward_imports_still_exist() -> None:
    """An entry of KNOWN_UPWARD that was fixed must leave the list, so it cannot come back."""
    for module, names in KNOWN_UPWARD.items():
        assert {n for n in imports_of(module) if _is_adapter(n)} == names, module


def test_the_api_no_longer_holds_the_shared_services() -> None:
    for moved in ("context", "operations", "queries", "readcache", "settings"):
        assert not (SRC / "api" / f"{moved}.py").exists(), f"api/{moved}.py is back"
