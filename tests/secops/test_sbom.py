"""The CycloneDX SBOM of what runs (issue 14, PCI DSS 6.3.2): the real sandbox's services with
the versions they run, each depending on the opsbook distribution it runs as, and every Python
distribution of their interpreter with its package URL; the document validates against the
CycloneDX 1.5 JSON schema (cyclonedx-python-lib's own validator)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from opsbook import __version__
from opsbook.sandbox import lifecycle
from opsbook.secops.sbom import build_sbom
from opsbook.secops.vulns import what_runs
from tests.sandbox.harness import Sandbox


@pytest.fixture(scope="module")
def services(sandbox: Sandbox) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = lifecycle.status(workspace=sandbox.ws)["services"]
    return found


@pytest.mark.slow
def test_sbom_lists_the_sandbox_services_and_what_they_run_on(
    services: list[dict[str, Any]],
) -> None:
    doc = build_sbom(services=services, version=__version__)
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    assert doc["metadata"]["component"]["version"] == __version__
    by_ref = {c["bom-ref"]: c for c in doc["components"]}
    assert len(services) >= 4
    for s in services:  # each service with the version the sandbox runs
        app = by_ref[f"service:{s['name']}"]
        assert app["type"] == "application" and app["version"] == s["version"]
        props = {p["name"]: p["value"] for p in app.get("properties", [])}
        assert props["opsbook:replicas"] == str(s["replicas"])
    libs = {c["name"]: c for c in doc["components"] if c["type"] == "library"}
    assert {n for n, _ in what_runs()} == set(libs)
    opsbook = libs["opsbook"]
    assert opsbook["purl"] == f"pkg:pypi/opsbook@{opsbook['version']}"
    deps = {d["ref"]: set(d.get("dependsOn", [])) for d in doc["dependencies"]}
    for s in services:
        assert deps[f"service:{s['name']}"] == {opsbook["bom-ref"]}
    assert set(by_ref) <= deps["banking-platform"]


@pytest.mark.slow
def test_sbom_validates_against_the_cyclonedx_schema(services: list[dict[str, Any]]) -> None:
    pytest.importorskip("jsonschema", reason="cyclonedx-python-lib[json-validation] not installed")
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    doc = build_sbom(services=services, version=__version__)
    error = JsonStrictValidator(SchemaVersion.V1_5).validate_str(json.dumps(doc))
    assert error is None, error


def test_sbom_without_services_still_lists_the_packages() -> None:
    doc = build_sbom(services=[], version=__version__)
    purls = {c.get("purl") for c in doc["components"]}
    assert all(p and p.startswith("pkg:pypi/") for p in purls)
    assert len(purls) == len(what_runs())
